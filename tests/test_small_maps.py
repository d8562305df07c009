"""Jobs of many small maps: a small map's output goes to its runner's pack file, not to files
of its own, and is served from there exactly as a map output file would be (issue 15)."""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import pairs, read_output, reference, run_hstream

from hstream import protocol
from hstream.errors import ProtocolError
from hstream.job import MapOutput
from hstream.task import shuffle

JOB = "job_1_0001"


Where = dict[str, tuple[int, list[int]]]


@pytest.fixture
def packed_server(tmp_path: Path) -> Iterator[tuple[int, protocol.Auth, Where]]:
    """A worker's shuffle server on loopback that knows the packed outputs put in its dict."""
    secret, stopping = protocol.new_secret(), threading.Event()
    where: Where = {}
    sock = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(
        target=shuffle.serve,
        args=(sock, secret, str(tmp_path / "w"), stopping, {JOB}.__contains__,
              lambda job, attempt: where.get(attempt) if job == JOB else None))
    server.start()
    try:
        yield sock.getsockname()[1], protocol.Auth(protocol.job_token(secret, JOB), JOB), where
    finally:
        stopping.set()
        sock.close()
        server.join(timeout=10)


def test_packed_map_outputs_are_served_partition_by_partition(
        packed_server: tuple[int, protocol.Auth, Where],
        tmp_path: Path) -> None:
    port, auth, where = packed_server
    job_dir = str(tmp_path / "w" / JOB)
    maps = {f"attempt_1_0001_m_{m:06d}_0": [b"a%d\t1\n" % m, b"", b"c%d\t3\nc%d\t4\n" % (m, m)]
            for m in range(3)}
    for attempt, parts in maps.items():
        where[attempt] = (os.getpid(), shuffle.append_pack(job_dir, parts))
    assert len(os.listdir(os.path.join(job_dir, "maps"))) == 1  # one pack, no file per map
    for m, (attempt, parts) in enumerate(maps.items()):
        for r, part in enumerate(parts):
            dest = tmp_path / f"got-{m}-{r}"
            got = shuffle.fetch_one(MapOutput(m, attempt, "127.0.0.1", port), JOB, r, str(dest),
                                    auth)
            assert got == (len(part), part.count(b"\n"), False)
            assert dest.read_bytes() == part
    with pytest.raises(FileNotFoundError):  # a partition the map does not have
        shuffle.fetch_one(MapOutput(0, "attempt_1_0001_m_000000_0", "127.0.0.1", port), JOB, 3,
                          str(tmp_path / "none"), auth)


def test_a_reducer_on_the_same_host_reads_packed_outputs_where_they_are(
        packed_server: tuple[int, protocol.Auth, Where],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On one host a packed map output is read from its pack by offset, not streamed: the
    same bytes, into memory for the reducer's own pack or into a file when packs are off."""
    port, auth, where = packed_server
    job_dir = str(tmp_path / "w" / JOB)
    parts = {f"attempt_1_0001_m_{m:06d}_0": [b"a%d\t1\n" % m, b"c%d\t3\nc%d\t4\n" % (m, m)]
             for m in range(3)}
    for attempt, p in parts.items():
        where[attempt] = (os.getpid(), shuffle.append_pack(job_dir, p))
    streamed: list[bytes] = []
    real = protocol.Channel.send_bytes
    monkeypatch.setattr(protocol.Channel, "send_bytes",
                        lambda self, data: streamed.append(bytes(data)) or real(self, data))
    conns = shuffle.Connections(auth, in_place=True)
    try:
        for m, (attempt, p) in enumerate(parts.items()):
            src = MapOutput(m, attempt, "127.0.0.1", port)
            seg = conns.fetch(src, JOB, 1, str(tmp_path / f"m{m}"), pack_limit=1 << 10)
            assert (seg.data, seg.records, seg.path) == (p[1], 2, None)
            seg = conns.fetch(src, JOB, 0, str(tmp_path / f"f{m}"), pack_limit=-1)
            assert seg.path == str(tmp_path / f"f{m}") and Path(seg.path).read_bytes() == p[0]
    finally:
        conns.close()
    assert streamed == []  # no byte went through the connection


def test_a_pack_cut_short_is_a_failed_fetch_not_short_data(
        packed_server: tuple[int, protocol.Auth, Where],
        tmp_path: Path) -> None:
    port, auth, where = packed_server
    job_dir = str(tmp_path / "w" / JOB)
    attempt = "attempt_1_0001_m_000000_0"
    where[attempt] = (os.getpid(), shuffle.append_pack(job_dir, [b"k\t" + b"v" * 5000 + b"\n"]))
    os.truncate(shuffle.pack_path(job_dir, os.getpid()), 100)  # its task cut it short
    with pytest.raises(ProtocolError, match="short fetch"):
        shuffle.fetch_one(MapOutput(0, attempt, "127.0.0.1", port), JOB, 0,
                          str(tmp_path / "got"), auth)
    assert not (tmp_path / "got").exists()
    conns = shuffle.Connections(auth, in_place=True)  # read in place: short too, so fetched
    try:
        with pytest.raises(ProtocolError, match="short fetch"):
            conns.fetch(MapOutput(0, attempt, "127.0.0.1", port), JOB, 0, str(tmp_path / "got"))
    finally:
        conns.close()
    assert not (tmp_path / "got").exists()


@pytest.mark.parametrize("reduces", [1, 3])
def test_a_job_of_small_maps_writes_no_file_per_map(tmp_path: Path, reduces: int) -> None:
    """Each map looks into its job's map output directory: earlier maps left their output in
    their runners' packs (one file each), not a directory and file each; the output equals
    the serial pipeline's."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    files = 24
    for i in range(files):
        (inputs / f"f{i:02d}.txt").write_bytes(b"".join(
            b"w%d\t%d\n" % ((i * 7 + j) % 11, j) for j in range(20)) + "é\n".encode())
    mapper = tmp_path / "probe.sh"
    # The last line has no newline: the map's output still ends with a whole line.
    mapper.write_text("#!/bin/sh\ncat\nprintf 'entries\\t%s' $(ls ../../../maps | wc -l)\n")
    mapper.chmod(0o755)
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-input", str(inputs), "-output", str(out), "-mapper",
                       str(mapper), "-reducer", "cat", "-numReduceTasks", str(reduces),
                       cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "_SUCCESS").exists()
    got = read_output(out)
    entries = [int(line.split(b"\t")[1]) for line in got.splitlines()
               if line.startswith(b"entries\t")]
    assert len(entries) == files and max(entries) <= 4, entries  # the kept runners' packs
    expected = reference(sorted(inputs.iterdir()), str(mapper), "cat", tmp_path)
    assert pairs(_without_probe(got)) == pairs(_without_probe(expected))


def _without_probe(data: bytes) -> bytes:
    return b"".join(line for line in data.splitlines(keepends=True)
                    if not line.startswith(b"entries\t"))


def test_pooled_work_runs_on_kept_threads_and_a_stuck_one_holds_only_its_own() -> None:
    """An attempt's background work (stderr, input, liveness) runs on threads kept from the
    last attempt's: no thread is made per attempt, and work that never ends (a pipe a
    background child holds) keeps only its own thread."""
    from hstream.task.pooled import Pooled

    stuck = threading.Event()
    blocker = Pooled(target=stuck.wait, name="stuck")
    blocker.start()
    carriers: list[threading.Thread] = []
    for _ in range(50):
        work = Pooled(target=lambda: carriers.append(threading.current_thread()))
        work.start()
        work.join(10)
        assert not work.is_alive()
    assert len(carriers) == 50 and len(set(carriers)) == 1  # one kept thread served all
    assert blocker.is_alive()
    failing = Pooled(target=lambda: 1 / 0, name="failing")
    failing.start()
    failing.join(10)
    assert not failing.is_alive()  # its failure is logged; it still ends
    stuck.set()
    blocker.join(10)
    assert not blocker.is_alive()


@pytest.mark.parametrize("job", [
    {},
    {"my.dir": "${hadoop.tmp.dir}/mine", "my.file": "in ${mapreduce.map.input.file}",
     "chain.a": "${chain.b}!", "chain.b": "${mapreduce.task.attempt.id}", "plain": "x",
     "loop.a": "${loop.b}", "loop.b": "${loop.a}${mapreduce.task.partition}",
     "mapred.task.id": "set by the job", "mapreduce.task.timeout": "${user.name}"},
    # two properties, one variable name: the later one's value, as Hadoop's export gives
    {"my_dir": "the job's", "my.dir": "${hadoop.tmp.dir}", "stream.x": "kept whole"},
    {"mapreduce_task_partition": "the job's", "mapreduce_map_input_file": "the job's too"},
])
def test_an_attempts_view_of_the_job_equals_the_whole_expansion(job: dict[str, str]) -> None:
    """A runner expands the job's ~1,800 properties once and only what leads to an attempt's
    own (its ids, directories, input file) per attempt: the result must be exactly Hadoop's
    expansion of all of them, attempt after attempt; and so must the environment made from
    it, whose job part is named once (`command.attempt_environment`)."""
    from hstream.hadoop import command, properties

    base = {"PATH": "/bin", "my_dir": "from the worker"}
    for n, path in enumerate(["/in/a ${x}.txt", "/in/b.txt", "/in/c.txt"]):
        own = {"mapreduce.task.attempt.id": f"attempt_1_0001_m_{n:06d}_0",
               "mapreduce.task.partition": str(n), "hadoop.tmp.dir": f"/w/a{n}/tmp",
               "mapreduce.job.local.dir": f"/w/a{n}/work", "mapreduce.map.input.file": path,
               "map.input.file": path}
        whole = properties.job_view({**job, **own})
        assert properties.attempt_view(job, own) == whole
        for truncate in (-1, 4):
            cmdenv = {"CMD": str(n)}
            assert command.attempt_environment(job, own, cmdenv, base, truncate) == \
                command.task_environment(whole, cmdenv, base, truncate), (n, truncate)



def test_finished_maps_reach_a_reduce_attempt_gathered_in_one_message(tmp_path: Path) -> None:
    """Maps that finish while a reduce attempt runs reach it gathered (one `sources` message
    for several maps, in the order they finished, not one per map) and the job's last map
    goes at once. The manager's own scheduler plays the job; its worker connections are
    real channels whose other ends this test reads."""
    from hstream.cluster.manager import Manager
    from hstream.job import JobSpec, Split, TaskResult

    key = b"k" * 32
    m = Manager("127.0.0.1", 0, 0, key)
    pair = socket.socketpair()
    worker = protocol.Channel(pair[1], key, False, "w1")
    m.workers = {"w1": protocol.Channel(pair[0], key, True, "w1")}
    sched, now = m.scheduler, 1.0
    try:
        m._execute(sched.add_worker("w1", "127.0.0.1", 9, 3, now, "w1-s"))
        spec = JobSpec(name="t", inputs=["in"], output=str(tmp_path / "out"), mapper="cat",
                       reducer="cat", num_reduces=1,
                       conf={"mapreduce.job.reduce.slowstart.completedmaps": "0"})
        splits = [Split(f"in/{i}", 0, 100) for i in range(5)]
        m._execute(sched.submit("job_1_0001", spec, splits, str(tmp_path / "stage"), now))
        assert any("_r_" in a for a in sched._attempt_index)  # the reduce runs from the start

        def finish(attempt: str) -> None:
            m._execute(sched.attempt_finished(attempt, TaskResult(ok=True), now, "w1"))

        def sources() -> list[list[int]]:
            got = []
            while select.select([pair[1]], [], [], 0.2)[0]:
                msg = worker.recv()
                if msg["op"] == "sources":
                    got.append([s["map_index"] for s in msg["sources"]])
            return got

        for _ in range(3):  # the next map starts as each one ends
            finish(next(a for a in sched._attempt_index if "_m_" in a))
        assert sources() == []  # held
        m._send_sources()  # as the loop does SOURCES_HOLD later
        assert sources() == [[0, 1, 2]]
        finish(next(a for a in sched._attempt_index if "_m_" in a))
        assert sources() == []
        finish(next(a for a in sched._attempt_index if "_m_" in a))  # the last map
        assert sources() == [[3, 4]] and not m.sources_due
    finally:
        worker.close()
        m.workers["w1"].close()
        m.tcp.close()
        m.udp.close()
