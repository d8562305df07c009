"""Unit tests of the pure parts: splitting, keys and partitioning, sorting runs, framing."""

from __future__ import annotations

import dataclasses
import logging
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from hstream import protocol
from hstream.errors import ProtocolError
from hstream.hadoop.command import env_name, resolve, split_command
from hstream.hadoop.keyfields import WHOLE_LINE, KeySpec
from hstream.job import MapOutput, ShipFile, Split, TaskResult, TaskSpec, to_dict
from hstream.task import shuffle, sorting
from hstream.task.partition import count_groups, partition_of, route_lines, route_sorted
from hstream.task.sorting import (
    BZIP2,
    GZIP,
    SortFailed,
    SortOrder,
    SpillCodec,
    Spiller,
    merge_command,
    merge_to_file,
    merged_runs,
    sort_env,
)
from hstream.task.splits import compute_splits, read_split


class Sink(list):
    def write(self, data: bytes) -> None:
        self.append(data)


# -- splits ----------------------------------------------------------------------------------


def test_splits_partition_every_line_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(3)
    path = tmp_path / "f"
    for _ in range(300):
        lines = [b"x" * rng.randint(0, 20) for _ in range(rng.randint(0, 30))]
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        path.write_bytes(data)
        n = len(data)
        cuts = sorted({0, n, *(rng.randint(0, n) for _ in range(rng.randint(1, 6)))})
        got = b"".join(b"".join(read_split(Split(str(path), a, b - a), chunk=rng.randint(1, 8)))
                       for a, b in zip(cuts, cuts[1:], strict=False))
        want = data if not data or data.endswith(b"\n") else data + b"\n"
        assert got == want, (data, cuts)


def test_compute_splits_cuts_big_files_and_keeps_compressed_whole(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x\n" * (4 << 20))  # 8 MiB
    gz = tmp_path / "small.gz"
    gz.write_bytes(b"\x1f\x8b" + b"0" * (3 << 20))
    splits = compute_splits([str(big), str(gz)], goal_maps=4,
                            conf={"fs.local.block.size": str(2 << 20)})
    plain = [s for s in splits if s.path == str(big)]
    assert len(plain) == 4 and sum(s.length for s in plain) == 8 << 20
    assert [s.start for s in plain] == [0, 2 << 20, 4 << 20, 6 << 20]
    st = gz.stat()
    assert [s for s in splits if s.path == str(gz)] == [
        Split(str(gz), 0, (3 << 20) + 2, "gz", st.st_size, st.st_mtime_ns)]


# -- keys and partitions --------------------------------------------------------------------


@pytest.mark.parametrize("spec,line,key", [
    (KeySpec(), b"a\tb\tc", b"a"),
    (KeySpec(), b"no tab", b"no tab"),
    (KeySpec(), b"\tv", b""),
    (KeySpec(b".", 2), b"1.2.3.4", b"1.2"),
    (KeySpec(b".", 4), b"11.12.1.2", b"11.12.1.2"),
    (KeySpec(b"::", 1), b"a::b", b"a"),
])
def test_key_extraction(spec: KeySpec, line: bytes, key: bytes) -> None:
    assert spec.key(line) == key


def test_partition_is_stable_across_runs() -> None:
    # CRC-32 is fixed by its definition, not by the Python build or a hash seed.
    assert partition_of(b"hello", 7) == 0x3610A686 % 7
    assert partition_of(b"", 3) == 0


def _runs_modes() -> list[str]:
    import hstream.task.partition as part

    return (["possessive"] if part._possessive_works() else []) + ["fallback"]


@pytest.fixture(params=_runs_modes())
def runs_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way of finding key runs this Python can use: possessive regex, and the
    backtracking fallback for Pythons whose possessive repeats are broken (Debian's 3.11.2)."""
    import hstream.task.partition as part

    monkeypatch.setattr(part, "POSSESSIVE", request.param == "possessive")
    monkeypatch.setattr(part, "_PATTERNS", {})
    return str(request.param)


def test_route_sorted_matches_line_by_line_routing(runs_mode: str) -> None:
    """Every line goes to its own key's partition, whatever the separator (one that can
    begin inside a key, like '::' after 'a:'; a newline, where the whole line is the key)
    and however long a key's run is (a run of hundreds of lines is crossed by searches)."""
    rng = random.Random(5)
    alphabet = [b"a", b"b", b"\t", b"\x01", b".", b"c", b"\r", b":"]
    specs = [KeySpec(), KeySpec(b".", 2), KeySpec(b"\t", 2), KeySpec(b"::", 1), WHOLE_LINE]
    for case in range(1500):
        spec = rng.choice(specs)
        keys = [b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
                for _ in range(rng.randint(1, 30))]
        most = 3000 if case % 100 == 0 else 40  # a few runs longer than the first search
        lines = sorted(key + rng.choice([b"", b"\t1", b"\t2\tx", b".v", b"::w"])
                       for key in keys for _ in range(rng.choice([1, 1, 3, 17, most])))
        buf = b"\n".join(lines) + b"\n"
        reduces = rng.randint(1, 4)
        fast, slow = [Sink() for _ in range(reduces)], [Sink() for _ in range(reduces)]
        named = [Sink() for _ in range(reduces)]
        route_sorted(buf, spec, fast, named)
        route_lines(buf, spec.key, slow)
        assert [b"".join(s) for s in fast] == [b"".join(s) for s in slow]
        # each partition's keys, in its order (a run split in two may name its key twice)
        for routed, names in zip(slow, named, strict=True):
            want = [spec.key(line) for line in b"".join(routed).split(b"\n")[:-1]]
            got = b"".join(names).split(b"\n")[:-1]
            assert _distinct_runs(got) == _distinct_runs(want)
        groups, _ = count_groups(buf, spec, None)
        assert groups == sum(1 for i, line in enumerate(lines)
                             if i == 0 or spec.key(line) != spec.key(lines[i - 1]))


def _distinct_runs(keys: list[bytes]) -> list[bytes]:
    return [k for i, k in enumerate(keys) if i == 0 or k != keys[i - 1]]


def test_count_groups_continues_across_buffers() -> None:
    spec = KeySpec()
    n1, last = count_groups(b"a\t1\na\t2\nb\t1\n", spec, None)
    n2, last = count_groups(b"b\t2\nc\t1\n", spec, last)
    assert (n1, n2, last) == (2, 1, b"c")


# -- sorting --------------------------------------------------------------------------------


def test_a_small_task_output_is_read_without_waiting_for_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that wrote a few lines and exited: its output is taken at once, not after a
    wait for more lines to gather (that wait would be paid by every small map)."""
    from hstream.task import attempt

    waits: list[float] = []
    monkeypatch.setattr(attempt.time, "sleep", waits.append)
    proc = subprocess.Popen(["printf", "a\\t1\\nb\\t2\\n"], stdout=subprocess.PIPE)
    proc.wait()
    got: list[bytes] = []
    attempt.pump(proc.stdout, got.append, False, proc, 3.0)  # type: ignore[arg-type]
    assert b"".join(got) == b"a\t1\nb\t2\n"
    assert waits == []


def test_a_small_map_output_is_sorted_without_a_sort_process_in_sorts_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Output under SMALL_RUN is sorted in the runner, exactly as `LC_ALL=C sort` would: bytes
    above 0x7f, empty lines, prefixes, tabs and duplicates included."""
    from hstream.task import sorting

    rng = random.Random(5)
    alphabet = [b"a", b"b", b"\t", b" ", b"\xc3", b"\xa9", b"\xff", b"0", b"~", b"\r"]
    lines = [b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) + b"\n"
             for _ in range(3000)]
    data = b"".join(lines)
    assert len(data) < sorting.SMALL_RUN
    expected = subprocess.run(["sort"], input=data, capture_output=True, env=sort_env(),
                              check=True).stdout

    def no_sort(*args: object, **kwargs: object) -> None:
        raise AssertionError("a sort process was started")

    monkeypatch.setattr(sorting.Team, "start", no_sort)
    runs = _spill(lines, tmp_path / "small", buffer=1 << 20)
    assert [r.records for r in runs] == [len(lines)]
    assert Path(runs[0].path).read_bytes() == expected


def test_output_that_outgrows_the_small_run_keeps_every_line_in_order(tmp_path: Path) -> None:
    """Held output leads the first sort run once the output is no longer small."""
    from hstream.task import sorting

    lines = [b"k%06d\t%d\n" % ((i * 7919) % 50000, i) for i in range(40000)]
    assert len(b"".join(lines)) > sorting.SMALL_RUN
    runs = _spill(lines, tmp_path / "big", buffer=1 << 20)
    assert sum(r.records for r in runs) == len(lines)
    assert _merged(runs, SortOrder(), tmp_path) == b"".join(sorted(lines))


def _merged(runs: list, order: SortOrder, tmp: Path) -> bytes:
    return subprocess.run(merge_command(order, runs, 1 << 20, str(tmp)), capture_output=True,
                          env=sort_env(), check=True).stdout


def test_spiller_bounds_runs_by_buffer_and_merges_in_key_order(tmp_path: Path) -> None:
    rng = random.Random(7)
    lines = [b"k%d\t%d\n" % (rng.randint(0, 500), i) for i in range(20000)]
    lines += [b"k1\x01\tlow\n", b"k1\tx\n"]  # a byte below TAB: must switch to key sorting
    spiller = Spiller(SortOrder(), buffer=32 << 10, workdir=str(tmp_path))
    data = b"".join(lines)
    for i in range(0, len(data), 5000):
        spiller.write(data[i:i + 5000])
    runs = spiller.close()
    assert len(runs) > 5
    assert sum(r.records for r in runs) == len(lines)
    assert all(Path(r.path).stat().st_size <= 32 << 10 for r in runs)
    assert runs[-1].keyed and not runs[0].keyed
    merged = _merged(runs, SortOrder(), tmp_path).splitlines(keepends=True)
    assert sorted(merged) == sorted(lines)
    keys = [KeySpec().key(line.rstrip(b"\n")) for line in merged]
    assert keys == sorted(keys)


def test_a_spill_larger_than_sorts_memory_is_still_one_sorted_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spill sort works in at most SORT_MEMORY (pieces that fit a CPU cache sort faster);
    sort merges its pieces itself, so the spill is still one run in byte order, and its
    temporary files are gone. Compressed temporary files would cost more: no cap there."""
    from hstream.task import sorting

    big = 64 << 20
    assert f"--buffer-size={sorting.SORT_MEMORY // 1024}K" in sorting.sort_command(
        SortOrder(), False, big, str(tmp_path))
    for uncapped in (sorting.sort_command(SortOrder(), False, big, str(tmp_path), merge=True),
                     sorting.sort_command(SortOrder(), False, big, str(tmp_path),
                                          compress="gzip")):
        assert f"--buffer-size={big // 1024}K" in uncapped
    monkeypatch.setattr(sorting, "SORT_MEMORY", 1 << 20)
    rng = random.Random(3)
    lines = [b"k%d\t%d\n" % (rng.randint(0, 99999), i) for i in range(300000)]
    runs = _spill(lines, tmp_path / "spills", buffer=8 << 20)
    assert len(runs) == 1 and runs[0].records == len(lines)
    assert Path(runs[0].path).read_bytes() == b"".join(sorted(lines))
    assert [p.name for p in (tmp_path / "spills").iterdir()] == [Path(runs[0].path).name]


def _spill(lines: list[bytes], tmp: Path, buffer: int, codec: SpillCodec | None = None,
           order: SortOrder | None = None) -> list:
    tmp.mkdir(exist_ok=True)
    spiller = Spiller(order or SortOrder(), buffer=buffer, workdir=str(tmp), codec=codec)
    data = b"".join(lines)
    for i in range(0, len(data), 5000):
        spiller.write(data[i:i + 5000])
    return spiller.close()


_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _children_before() -> None:
    """What already ran under pytest (another test's cluster, in a whole-suite run)."""
    _BEFORE.clear()
    _BEFORE.update(p.pid for p in psutil.Process().children(recursive=True))


def _new_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in _BEFORE]


def _no_children() -> bool:
    """Every process this test started was waited for (a zombie is a child too)."""
    return not _new_children()


@pytest.mark.parametrize("codec, magic", [(GZIP, b"\x1f\x8b"), (BZIP2, b"BZh")])
def test_compressed_spills_are_written_compressed_and_merge_like_plain_ones(
        tmp_path: Path, codec: SpillCodec, magic: bytes) -> None:
    """mapreduce.map.output.compress: each run is the compressor's output on disk, and both
    readers (the merge into a partition, the merged stream for routing) see the plain lines."""
    rng = random.Random(11)
    lines = [b"k%d\t%d\n" % (rng.randint(0, 300), i) for i in range(20000)]
    lines += [b"k1\x01\tlow\n"]  # a keyed run among plain ones
    plain = _spill(lines, tmp_path / "plain", 32 << 10)
    runs = _spill(lines, tmp_path / "zip", 32 << 10, codec)
    assert len(runs) == len(plain) > 5 and runs[-1].keyed
    assert [r.records for r in runs] == [r.records for r in plain]
    for run in runs:
        head = Path(run.path).read_bytes()
        assert run.path.endswith(codec.suffix) and head.startswith(magic)
        assert len(head) < Path(plain[0].path).stat().st_size // 2
    want = _merged(plain, SortOrder(), tmp_path)
    with merged_runs(SortOrder(), runs, 1 << 20, str(tmp_path), "merging") as stream:
        assert stream.read() == want
    merge_to_file(SortOrder(), runs[:1], 1 << 20, str(tmp_path), str(tmp_path / "one"), "m")
    assert (tmp_path / "one").read_bytes() == _merged(plain[:1], SortOrder(), tmp_path)
    assert _no_children()


def test_many_compressed_runs_merge_a_bounded_number_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More runs than FAN_IN are merged in consecutive groups into compressed runs first (one
    decompressor per run, so processes stay bounded); equal keys keep their spill order under
    a stable comparator, and no merged run is left on disk."""
    monkeypatch.setattr(sorting, "FAN_IN", 3)
    order = SortOrder(comparator=("-k1,1",))
    lines = [b"k%d\t%05d\n" % (i % 7, i) for i in range(4000)]
    runs = _spill(lines, tmp_path / "zip", 1 << 10, GZIP, order)
    assert len(runs) > 3 * 3 * 3
    live: list[int] = []
    start = sorting.Team.start

    def counting(team: sorting.Team, *args: object, **kwargs: object) -> object:
        live.append(len(_new_children()))
        return start(team, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sorting.Team, "start", counting)
    out = tmp_path / "part"
    merge_to_file(order, runs, 1 << 20, str(tmp_path / "zip"), str(out), "merging")
    assert out.read_bytes() == b"".join(sorted(lines, key=lambda line: line[:2]))
    assert max(live) <= 3 + 1  # a group's decompressors and its compressor, then the merge
    assert sorted(p.name for p in (tmp_path / "zip").iterdir()) == []
    assert _no_children()


def test_a_failing_compressor_fails_the_spill_in_one_line_and_leaves_no_process(
        tmp_path: Path) -> None:
    tool = tmp_path / "badzip"
    tool.write_text("#!/bin/sh\necho 'badzip: cannot compress today' >&2\nexit 3\n")
    tool.chmod(0o755)
    lines = [b"k%d\tv\n" % i for i in range(50000)]
    with pytest.raises(SortFailed) as failed:
        _spill(lines, tmp_path / "spills", 32 << 10, SpillCodec(str(tool), "-1", ".bad"))
    assert str(failed.value) == "spilling map output failed: badzip: cannot compress today"
    assert _no_children()


def test_a_corrupt_compressed_run_fails_the_merge_and_a_failed_reader_kills_it(
        tmp_path: Path) -> None:
    lines = [b"k%d\tv\n" % (i % 1000) for i in range(50000)]
    runs = _spill(lines, tmp_path / "zip", 64 << 10, GZIP)
    with pytest.raises(RuntimeError):
        with merged_runs(SortOrder(), runs, 1 << 20, str(tmp_path), "merging") as stream:
            stream.read(10)
            raise RuntimeError("the router failed")
    assert _no_children()
    with pytest.raises(SortFailed, match="^merging failed: sort was killed by signal 13$"):
        with merged_runs(SortOrder(), runs, 1 << 20, str(tmp_path), "merging") as stream:
            stream.read(10)  # a reader that stops early loses lines: that is an error
    assert _no_children()
    path = Path(runs[1].path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SortFailed, match="^merging map output failed: gzip: stdin: unexpected"):
        merge_to_file(SortOrder(), runs, 1 << 20, str(tmp_path), str(tmp_path / "p"),
                      "merging map output")
    assert _no_children()


# -- protocol -------------------------------------------------------------------------------


def _pair(secret_a: bytes, secret_b: bytes) -> tuple[protocol.Channel, protocol.Channel]:
    a, b = socket.socketpair()
    result: dict[str, object] = {}

    def serve() -> None:
        try:
            result["server"] = protocol.server_handshake(a, secret_a, "client")
        except ProtocolError as e:
            result["server"] = e
            a.close()  # as the manager does: a peer that fails the handshake is dropped

    t = threading.Thread(target=serve)
    t.start()
    try:
        client = protocol.client_handshake(b, secret_b, "server")
    finally:
        t.join()
    server = result["server"]
    if isinstance(server, Exception):
        raise server
    return server, client  # type: ignore[return-value]


def test_channel_round_trip_messages_and_data() -> None:
    secret = protocol.new_secret()
    server, client = _pair(secret, secret)
    client.send({"op": "hello", "n": 1})
    client.send_bytes(b"\x00" * 100000)
    assert server.recv() == {"op": "hello", "n": 1}
    assert server.recv_frame() == (b"B", b"\x00" * 100000)
    server.send({"op": "ok"})
    assert client.recv() == {"op": "ok"}


def test_wrong_secret_is_refused_before_any_message() -> None:
    with pytest.raises(ProtocolError):
        _pair(protocol.new_secret(), protocol.new_secret())


class Recorder:
    """Stands in for a socket to capture the exact bytes a channel sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def makefile(self, *_: object, **__: object) -> object:
        return None


def _frames(key: bytes, *msgs: dict) -> list[bytes]:
    rec = Recorder()
    chan = protocol.Channel(rec, key, is_server=False, peer="rec")  # type: ignore[arg-type]
    for msg in msgs:
        chan.send(msg)
    return rec.sent


def _server(key: bytes) -> tuple[protocol.Channel, socket.socket]:
    a, b = socket.socketpair()
    return protocol.Channel(a, key, is_server=True, peer="test"), b


def test_replayed_frame_is_rejected() -> None:
    key = protocol.new_secret()
    frame = _frames(key, {"op": "run", "cmd": "ls"})[0]
    server, wire = _server(key)
    wire.sendall(frame)
    assert server.recv() == {"op": "run", "cmd": "ls"}
    wire.sendall(frame)  # the same frame again: its sequence number is stale
    with pytest.raises(ProtocolError, match="authentication"):
        server.recv()


def test_tampered_frame_is_rejected() -> None:
    key = protocol.new_secret()
    frame = _frames(key, {"op": "run", "cmd": "ls"})[0]
    server, wire = _server(key)
    wire.sendall(frame.replace(b"ls", b"rm"))
    with pytest.raises(ProtocolError, match="authentication"):
        server.recv()


def test_frame_from_another_session_is_rejected() -> None:
    frame = _frames(protocol.new_secret(), {"op": "shutdown"})[0]
    server, wire = _server(protocol.new_secret())
    wire.sendall(frame)
    with pytest.raises(ProtocolError, match="authentication"):
        server.recv()


def test_heartbeats_are_authenticated() -> None:
    secret = protocol.new_secret()
    datagram = protocol.pack_heartbeat(secret, "w1", 42)
    assert protocol.unpack_heartbeat(secret, datagram)["s"] == 42
    with pytest.raises(ProtocolError):
        protocol.unpack_heartbeat(protocol.new_secret(), datagram)
    with pytest.raises(ProtocolError):
        protocol.unpack_heartbeat(secret, datagram[:16] + datagram[16:].replace(b"42", b"43"))


def test_secret_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    secret = protocol.new_secret()
    protocol.write_secret(str(path), secret)
    assert path.stat().st_mode & 0o777 == 0o600
    assert protocol.read_secret(str(path)) == secret


# -- commands -------------------------------------------------------------------------------


def test_command_splitting_like_hadoop() -> None:
    assert split_command("cut -f2") == ["cut", "-f2"]
    assert split_command("grep 'a b' \"c d\"") == ["grep", "a b", "c d"]
    assert split_command("sh -c 'cut -f1 | sort'") == ["sh", "-c", "cut -f1 | sort"]
    assert split_command("x ''") == ["x", ""]
    assert env_name("mapreduce.job.id") == "mapreduce_job_id"
    assert env_name("stream.map-output") == "stream_map_output"


def test_a_command_is_found_again_when_the_one_found_before_went_away(tmp_path: Path) -> None:
    """A runner remembers where a command is for map after map; a program that is gone from
    there (a package upgrade) is searched for along PATH again."""
    first, second = tmp_path / "a", tmp_path / "b"
    for d in (first, second):
        d.mkdir()
        (d / "tool").write_text("#!/bin/sh\n")
        (d / "tool").chmod(0o755)
    path = f"{first}:{second}"
    assert resolve("tool -x", str(tmp_path), path=path) == [str(first / "tool"), "-x"]
    (first / "tool").unlink()
    assert resolve("tool -x", str(tmp_path), path=path) == [str(second / "tool"), "-x"]
    (second / "tool").unlink()
    with pytest.raises(FileNotFoundError, match="command not found: tool"):
        resolve("tool", str(tmp_path), path=path)


def test_messages_as_dicts_are_asdicts_copies() -> None:
    """`to_dict` skips `asdict`'s deep copy of each leaf; it must still give the same dict,
    nested dataclasses included, and share no container with the object."""
    spec = TaskSpec(job_id="job_1_0001", kind="map", index=3, attempt=1, num_reduces=2,
                    command="cat", combiner=None, conf={"a.b": "1"}, env={"E": "x"},
                    files=[ShipFile("/p/f", "f", archive=True)], output_dir="/o",
                    split=Split("/in", 0, 9, parts=[Split("/in2", 1, 2)], reader={"r": "s"}),
                    sources=[MapOutput(0, "attempt_1_0001_m_000000_0", "h", 1)])
    result = TaskResult(ok=True, counters={"G": {"n": 1}}, stderr_tail=["e"], packed=[0, 5])
    for obj in (spec, result, TaskResult(ok=False)):
        assert to_dict(obj) == dataclasses.asdict(obj)
    copied = to_dict(spec)
    copied["conf"]["a.b"] = "changed"
    copied["split"]["parts"][0]["path"] = "changed"
    copied["files"].append({})
    assert spec.conf == {"a.b": "1"} and spec.split is not None
    assert spec.split.parts[0].path == "/in2" and len(spec.files) == 1


def test_a_runners_task_log_follows_it_from_attempt_to_attempt(tmp_path: Path) -> None:
    """A kept runner logs each attempt to that attempt's own task.log, made on its first
    record: nothing of one attempt's log in the next's directory, no file for a silent one."""
    from hstream.task.__main__ import _log_to

    top = logging.getLogger()
    saved = top.handlers[:], top.level
    try:
        roots = [tmp_path / name for name in ("a1", "a2", "a3")]
        for root in roots:
            root.mkdir()
        _log_to(str(roots[0]))
        logging.getLogger("hstream.test").info("first attempt")
        _log_to(str(roots[1]))  # a map that logs nothing
        _log_to(str(roots[2]))
        logging.getLogger("hstream.test").warning("third attempt")
        assert len(top.handlers) == 1
        top.handlers[0].flush()
        assert "first attempt" in (roots[0] / "task.log").read_text()
        assert not (roots[1] / "task.log").exists()
        third = (roots[2] / "task.log").read_text()
        assert "third attempt" in third and "first" not in third
    finally:
        for h in top.handlers:
            h.close()
        top.handlers[:] = saved[0]
        top.setLevel(saved[1])


# -- lines ----------------------------------------------------------------------------------


def test_chunks_are_recut_at_newlines_and_a_last_line_is_finished() -> None:
    from hstream.task.lines import whole_lines

    rng = random.Random(11)
    data = b"".join(b"x" * rng.randint(0, 9) + b"\n" for _ in range(500)) + b"no newline"
    cuts = sorted(rng.sample(range(len(data)), 60))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    out = list(whole_lines(chunks))
    assert all(c.endswith(b"\n") for c in out)
    assert b"".join(out) == data + b"\n"


@pytest.mark.parametrize("possessive", [True, False])
def test_key_runs_memory_does_not_grow_with_run_length(possessive: bool) -> None:
    """A backtracking regex keeps ~360 bytes per line of a run; 1M lines must stay flat."""
    code = ("import resource, sys; import hstream.task.partition as P; "
            f"P.POSSESSIVE = P.POSSESSIVE and {possessive}; "
            "from hstream.hadoop.keyfields import KeySpec; "
            "from hstream.task.partition import key_runs; "
            "buf = b'k\\t1\\n' * 1_000_000; "
            "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "assert {r[2] for r in key_runs(buf, KeySpec())} == {b'k'}; "
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) // 1024)")
    grown_mb = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True).stdout)
    assert grown_mb < 20


def test_a_command_that_flushes_every_line_is_read_in_large_batches(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapper under PYTHONUNBUFFERED (or Perl's `$| = 1`) writes a line at a time; the
    runner reads it in batches of many lines, not a wake-up and a Python step per line, and
    loses none of it."""
    from hstream.task import attempt

    reads = []
    real = attempt.os.read
    monkeypatch.setattr(attempt.os, "read", lambda fd, n: reads.append(n) or real(fd, n))
    lines = 50_000
    writer = f"import sys\nfor i in range({lines}): sys.stdout.write('line %d\\n' % i)"
    proc = subprocess.Popen([sys.executable, "-u", "-c", writer], stdout=subprocess.PIPE)
    got: list[bytes] = []
    attempt.pump(proc.stdout, got.append, False, proc, 3.0)  # type: ignore[arg-type]
    assert proc.wait() == 0
    assert b"".join(got) == b"".join(b"line %d\n" % i for i in range(lines))
    assert len(reads) < lines / 100, f"{len(reads)} reads for {lines} lines"


@pytest.fixture
def shuffle_server(tmp_path: Path) -> Iterator[tuple[int, protocol.Auth, Path]]:
    """A worker's shuffle server on loopback, serving job_1_0001's map outputs from `maps`."""
    from hstream.task import shuffle

    secret, stopping = protocol.new_secret(), threading.Event()
    job = "job_1_0001"
    sock = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(target=shuffle.serve, args=(sock, secret, str(tmp_path / "w"),
                                                          stopping, {job}.__contains__))
    server.start()
    try:
        yield (sock.getsockname()[1], protocol.Auth(protocol.job_token(secret, job), job),
               tmp_path / "w" / job / "maps")
    finally:
        stopping.set()
        sock.close()
        server.join(timeout=10)


def _map_outputs(maps: Path, count: int, port: int) -> list[MapOutput]:
    from hstream.task import shuffle

    sources = []
    for m in range(count):
        out = maps / f"attempt_1_0001_m_{m:06d}_0"
        out.mkdir(parents=True)
        (out / "part-00000").write_bytes(b"k%d\tv\n" % m)
        shuffle.write_meta(str(out), False)
        sources.append(MapOutput(m, out.name, "127.0.0.1", port))
    return sources


def test_a_reducer_fetches_many_maps_from_a_host_over_few_connections(
        shuffle_server: tuple[int, protocol.Auth, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of small maps must not cost a connection and a handshake each: each fetch
    thread keeps its channel to a host."""
    from hstream.task import shuffle

    port, auth, maps = shuffle_server
    sources = _map_outputs(maps, 60, port)
    connects: list[str] = []
    real = protocol.connect
    monkeypatch.setattr(protocol, "connect", lambda *a, **k: connects.append(a[0]) or real(*a, **k))
    spec = TaskSpec("job_1_0001", "reduce", 0, 0, 1, "cat", None, {}, {}, [], str(tmp_path),
                    sources=sources, num_maps=len(sources))
    dest = tmp_path / "inputs"
    dest.mkdir()
    fetched = shuffle.fetch_all(spec, str(dest), auth)
    assert fetched.failed_map is None and fetched.records == 60
    assert sorted(Path(p).read_bytes() for p in fetched.paths) == sorted(
        b"k%d\tv\n" % m for m in range(60))
    assert 1 <= len(connects) <= shuffle.FETCH_THREADS


def test_a_reducer_on_the_maps_host_merges_their_files_where_they_are(
        shuffle_server: tuple[int, protocol.Auth, Path], tmp_path: Path) -> None:
    """On one host (the embedded cluster) a map output file is read where it is, not copied
    through the worker and the reducer with an HMAC per frame: the merge gets the map's own
    file, in map order; small ones still go into packs; and the files stay as they were."""
    from hstream.task import shuffle
    from hstream.task.sorting import SortOrder

    port, auth, maps = shuffle_server
    sources = _map_outputs(maps, 12, port)
    big = maps / sources[5].attempt_id / "part-00000"
    lines = shuffle.PACK_SEGMENT // 10 + 1  # over the size that goes into a pack
    big.write_bytes(b"".join(b"k%06d\tv\n" % i for i in range(lines)))
    names = big.parent / "keys-00000"  # the keys the map's routing wrote beside it
    names.write_bytes(b"".join(b"k%06d\n" % i for i in range(lines)))
    small = sum((maps / s.attempt_id / "part-00000").stat().st_size for s in sources) - \
        (maps / sources[5].attempt_id / "part-00000").stat().st_size
    spec = TaskSpec("job_1_0001", "reduce", 0, 0, 1, "cat", None, {}, {}, [], str(tmp_path),
                    sources=sources, num_maps=len(sources))
    for in_place in (True, False):
        dest = tmp_path / f"inputs-{in_place}"
        dest.mkdir()
        plan = shuffle.PackPlan(SortOrder(), 1 << 20, str(tmp_path))
        fetched = shuffle.fetch_all(spec, str(dest), auth, pack=plan, in_place=in_place)
        assert fetched.failed_map is None and fetched.records == 11 + lines
        assert fetched.maps == 12 and fetched.bytes == small + big.stat().st_size
        first = fetched.paths[0]
        assert (first == str(big)) is in_place and Path(first).read_bytes() == big.read_bytes()
        assert fetched.keys == ({str(big): str(names)} if in_place else {})
        assert len(fetched.paths) == 2 and Path(fetched.paths[1]).parent == dest  # one pack
    assert (maps / sources[0].attempt_id / "part-00000").read_bytes() == b"k0\tv\n"


def test_reduce_groups_are_counted_from_keys_files_only_when_every_run_has_one() -> None:
    from hstream.task.reducetask import _group_runs
    from hstream.task.sorting import Run

    runs = [Run("/m0/part-00001", False), Run("/m1/part-00001", True)]
    keys = {"/m0/part-00001": "/m0/keys-00001", "/m1/part-00001": "/m1/keys-00001"}
    assert _group_runs(runs, keys) == [Run("/m0/keys-00001", True), Run("/m1/keys-00001", True)]
    pack = Run("/r/pack-0000", False)
    assert _group_runs([*runs, pack], keys) == [*runs, pack]
    assert _group_runs([], keys) == []


def test_a_map_file_announced_in_place_but_not_openable_as_such_is_fetched_instead(
        tmp_path: Path) -> None:
    """The `local` reply is the worker's guess that the reducer shares its files: a file that
    is not the one announced (another inode: a container sharing only the address) must not
    be read."""
    from hstream.task import shuffle

    path = tmp_path / "part-00000"
    path.write_bytes(b"a\t1\nb\t2\n")
    st = path.stat()
    src = MapOutput(0, "attempt_1_0001_m_000000_0", "127.0.0.1", 1)
    head = {"op": "local", "path": str(path), "size": st.st_size, "device": st.st_dev,
            "inode": st.st_ino, "keyed": False}
    dest = str(tmp_path / "fetched")
    whole = shuffle._read_in_place(head, src, -1, dest)
    assert whole is not None and (whole.path, whole.records, whole.size) == (str(path), 2, 8)
    small = shuffle._read_in_place(head, src, 1 << 10, dest)
    assert small is not None and small.data == path.read_bytes() and small.path is None
    # the map's own count of the lines spares reading them; a count of none for bytes is
    # not taken (the reducer would drop its output as if it had no input)
    counted = shuffle._read_in_place({**head, "records": 2}, src, -1, dest)
    assert counted is not None and counted.records == 2
    for bad in (0, -1, True, "2"):
        seg = shuffle._read_in_place({**head, "records": bad}, src, -1, dest)
        assert seg is not None and seg.records == 2, bad
    for wrong in ({"inode": st.st_ino + 1}, {"size": 7}, {"path": str(tmp_path / "gone")}):
        assert shuffle._read_in_place({**head, **wrong}, src, -1, dest) is None, wrong
    # the keys file beside it, only if it is the very file announced
    names = tmp_path / "keys-00000"
    names.write_bytes(b"a\nb\n")
    kst = names.stat()
    keys = {"keys": str(names), "keys_device": kst.st_dev, "keys_inode": kst.st_ino}
    seg = shuffle._read_in_place({**head, **keys}, src, -1, dest)
    assert seg is not None and seg.keys == str(names)
    for wrong in ({"keys_inode": kst.st_ino + 1}, {"keys": "keys-00000"}, {"keys": None},
                  {"keys": str(tmp_path / "gone")}):
        seg = shuffle._read_in_place({**head, **keys, **wrong}, src, -1, dest)
        assert seg is not None and seg.keys is None, wrong
    with pytest.raises(ProtocolError, match="malformed local reply"):
        shuffle._read_in_place({**head, "path": "relative/part"}, src, -1, dest)


def test_only_a_reducer_on_the_servers_own_address_is_told_to_read_in_place() -> None:
    """A reducer connecting from another address (another host) gets the bytes, never a path."""
    from hstream.task import shuffle

    server = socket.create_server(("127.0.0.1", 0))
    try:
        for source in ("127.0.0.1", "127.0.0.2"):
            client = socket.socket()
            client.bind((source, 0))
            client.connect(server.getsockname())
            conn, _ = server.accept()
            chan = protocol.Channel(conn, b"k" * 32, True, "peer")
            try:
                assert shuffle._same_host(chan) is (source == "127.0.0.1")
            finally:
                conn.close()
                client.close()
    finally:
        server.close()


def test_a_kept_shuffle_channel_that_broke_is_replaced_without_a_failure(
        shuffle_server: tuple[int, protocol.Auth, Path], tmp_path: Path) -> None:
    from hstream.task import shuffle

    port, auth, maps = shuffle_server
    first, second = _map_outputs(maps, 2, port)
    conns = shuffle.Connections(auth)
    try:
        got = conns.fetch(first, "job_1_0001", 0, str(tmp_path / "a"))
        assert (got.size, got.records) == (5, 1)
        for chan in conns.opened:  # the host dropped the connection meanwhile
            chan.sock.shutdown(socket.SHUT_RDWR)
        got = conns.fetch(second, "job_1_0001", 0, str(tmp_path / "b"))
        assert (got.size, got.records, got.path) == (5, 1, str(tmp_path / "b"))
        assert (tmp_path / "b").read_bytes() == b"k1\tv\n"
        assert len(conns.opened) == 2
    finally:
        conns.close()


# -- packs: a reducer's small segments sorted together ---------------------------------------


def _serve(maps: Path, port: int, outputs: list[tuple[bytes, bool]]) -> list[MapOutput]:
    """Map outputs (data, keyed) as a worker keeps them, served on `port`."""
    sources = []
    for m, (data, keyed) in enumerate(outputs):
        out = maps / f"attempt_1_0001_m_{m:06d}_0"
        out.mkdir(parents=True)
        (out / "part-00000").write_bytes(data)
        shuffle.write_meta(str(out), keyed)
        sources.append(MapOutput(m, out.name, "127.0.0.1", port))
    return sources


def _c_sort(data: bytes, *args: str) -> bytes:
    return subprocess.run(["sort", *args], input=data, env=sort_env(), capture_output=True,
                          check=True).stdout


def _small_output(rng: random.Random) -> bytes:
    """A map's sorted partition: bytes above 0x7f, duplicate lines, empty values, no value."""
    keys = [b"k", b"\xe9t\xe9", b"\xff", b"a b", b"", b"z\x80"]
    lines = [rng.choice(keys) + rng.choice([b"\t", b"\tv", b"\tv\xc3\xa9", b"", b"\t\t"])
             + b"\n" for _ in range(rng.randint(0, 30))]
    return _c_sort(b"".join(lines + lines[:3]))


def _fetch_merged(spec: TaskSpec, dest: Path, auth: protocol.Auth, order: SortOrder,
                  plan: shuffle.PackPlan | None) -> tuple[shuffle.Fetched, bytes]:
    """The fetch and the merge the reducer runs over what it fetched."""
    dest.mkdir()
    fetched = shuffle.fetch_all(spec, str(dest), auth, pack=plan)
    assert fetched.failed_map is None, fetched.error
    runs = [sorting.Run(p, fetched.keyed) for p in fetched.paths]
    merged = subprocess.run(merge_command(order, runs, 1 << 20, str(dest)), env=sort_env(),
                            capture_output=True, check=True).stdout
    return fetched, merged


@pytest.mark.parametrize("buffer, packs", [(64 << 20, 1), (4 << 10, (4, 30))])
def test_small_segments_are_packed_into_few_sorted_runs_and_merge_as_one_sort(
        shuffle_server: tuple[int, protocol.Auth, Path], tmp_path: Path, buffer: int,
        packs: int | tuple[int, int]) -> None:
    """300 small maps end in a few pack files, not a file each; a segment over PACK_SEGMENT
    keeps a file of its own. The merge is byte for byte `LC_ALL=C sort` of all map output."""
    port, auth, maps = shuffle_server
    rng = random.Random(7)
    outputs = [_small_output(rng) for _ in range(300)]
    outputs[5] = b""
    outputs[7] = _c_sort(b"".join(b"big%06d\t\xfe\n" % i for i in range(30000)))
    assert len(outputs[7]) > shuffle.PACK_SEGMENT
    sources = _serve(maps, port, [(o, False) for o in outputs])
    spec = TaskSpec("job_1_0001", "reduce", 0, 0, 1, "cat", None, {}, {}, [], str(tmp_path),
                    sources=sources, num_maps=len(sources))
    plan = shuffle.PackPlan(SortOrder(), buffer, str(tmp_path))
    fetched, merged = _fetch_merged(spec, tmp_path / "inputs", auth, SortOrder(), plan)
    files = sorted(p.name for p in (tmp_path / "inputs").iterdir())
    made = [f for f in files if f.startswith("pack-")]
    assert files == ["map-000007", *made]
    lo, hi = packs if isinstance(packs, tuple) else (packs, packs)
    assert lo <= len(made) <= hi, files
    everything = b"".join(outputs)
    assert merged == _c_sort(everything)
    assert (fetched.maps, fetched.bytes, fetched.records) == (
        300, len(everything), everything.count(b"\n"))
    assert _no_children()


def test_keyed_segments_pack_by_kind_and_merge_as_the_file_per_map_path_does(
        shuffle_server: tuple[int, protocol.Auth, Path], tmp_path: Path) -> None:
    """Output sorted by two key fields (bytes below the tab in some keys: those maps sorted by
    key field, the others whole lines): keyed and plain segments go to packs of their own,
    and the merge is the same bytes as with a file per map."""
    port, auth, maps = shuffle_server
    order = SortOrder(KeySpec(b"\t", 2))
    rng = random.Random(11)
    outputs = []
    for m in range(120):
        keyed = m % 3 == 0
        first = [b"a", b"a\x01", b"b\x02c"] if keyed else [b"a", b"b", b"\xe9"]
        lines = b"".join(rng.choice(first) + b"\t" + rng.choice([b"1", b"10", b"", b"x"])
                         + rng.choice([b"\tv", b"\t", b"", b"\tw\tz"]) + b"\n"
                         for _ in range(rng.randint(1, 12)))
        outputs.append((_c_sort(lines, *order.argv(True)) if keyed else _c_sort(lines), keyed))
    sources = _serve(maps, port, outputs)
    spec = TaskSpec("job_1_0001", "reduce", 0, 0, 1, "cat", None, {}, {}, [], str(tmp_path),
                    sources=sources, num_maps=len(sources))
    plan = shuffle.PackPlan(order, 64 << 20, str(tmp_path))
    _, packed = _fetch_merged(spec, tmp_path / "packed", auth, order, plan)
    per_map, merged = _fetch_merged(spec, tmp_path / "files", auth, order, None)
    assert sorted(p.name for p in (tmp_path / "packed").iterdir()) == ["pack-0000", "pack-0001"]
    assert len(list((tmp_path / "files").iterdir())) == 120
    assert packed == merged == _c_sort(b"".join(o for o, _ in outputs), *order.argv(True))
    assert per_map.maps == 120


def test_packs_only_where_they_give_the_same_bytes(tmp_path: Path) -> None:
    """A comparator sorts stably (equal keys in map order) and compressed segments are
    decompressed as files: both keep a file per map."""
    from hstream.task.reducetask import pack_plan

    comparator = {"mapreduce.job.output.key.comparator.class":
                  "org.apache.hadoop.mapreduce.lib.partition.KeyFieldBasedComparator",
                  "mapreduce.partition.keycomparator.options": "-k1,1nr"}
    assert pack_plan(comparator, 1 << 20, str(tmp_path)) is None
    assert pack_plan({"mapreduce.map.output.compress": "true"}, 1 << 20, str(tmp_path)) is None
    plan = pack_plan({"stream.num.map.output.key.fields": "2"}, 1 << 20, str(tmp_path))
    assert plan is not None and plan.order.key.fields == 2 and plan.buffer == 1 << 20


def test_a_segment_torn_mid_fetch_is_fetched_again_and_packed_once(
        shuffle_server: tuple[int, protocol.Auth, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    port, auth, maps = shuffle_server
    rng = random.Random(3)
    outputs = [_small_output(rng) + b"m%d\n" % m for m in range(40)]
    sources = _serve(maps, port, [(o, False) for o in outputs])
    real, torn = shuffle._receive, set[int]()

    def tearing(chan: protocol.Channel, src: MapOutput, size: int,
                write: Callable[[bytes], object], count: bool = True) -> tuple[int, int]:
        if src.map_index % 10 == 3 and src.map_index not in torn:
            torn.add(src.map_index)
            write(b"half a segm")
            raise ProtocolError("connection reset mid-segment")
        return real(chan, src, size, write, count)

    monkeypatch.setattr(shuffle, "_receive", tearing)
    spec = TaskSpec("job_1_0001", "reduce", 0, 0, 1, "cat", None, {}, {}, [], str(tmp_path),
                    sources=sources, num_maps=len(sources))
    plan = shuffle.PackPlan(SortOrder(), 1 << 20, str(tmp_path))
    fetched, merged = _fetch_merged(spec, tmp_path / "inputs", auth, SortOrder(), plan)
    assert torn == {3, 13, 23, 33}
    assert merged == _c_sort(b"".join(outputs))
    assert fetched.records == merged.count(b"\n")


def test_a_pack_sort_that_fails_fails_the_fetch_in_one_line_and_leaves_no_process(
        shuffle_server: tuple[int, protocol.Auth, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    port, auth, maps = shuffle_server
    rng = random.Random(5)
    sources = _serve(maps, port, [(_small_output(rng) + b"x\n", False) for _ in range(30)])
    monkeypatch.setattr(shuffle, "sort_command",
                        lambda *a: ["sh", "-c", "echo 'sort: cannot sort today' >&2; exit 2"])
    spec = TaskSpec("job_1_0001", "reduce", 0, 0, 1, "cat", None, {}, {}, [], str(tmp_path),
                    sources=sources, num_maps=len(sources))
    (tmp_path / "inputs").mkdir()
    plan = shuffle.PackPlan(SortOrder(), 1 << 20, str(tmp_path))
    with pytest.raises(SortFailed) as failed:
        shuffle.fetch_all(spec, str(tmp_path / "inputs"), auth, pack=plan)
    assert str(failed.value) == "sorting fetched map output failed: cannot sort today"
    assert _no_children()


def test_a_map_that_cannot_be_fetched_is_reported_and_no_pack_sort_outlives_the_fetch(
        shuffle_server: tuple[int, protocol.Auth, Path], tmp_path: Path) -> None:
    port, auth, maps = shuffle_server
    rng = random.Random(9)
    sources = _serve(maps, port, [(_small_output(rng) + b"x\n", m % 2 == 0) for m in range(40)])
    sources.append(MapOutput(40, "attempt_1_0001_m_000040_0", "127.0.0.1", port))
    spec = TaskSpec("job_1_0001", "reduce", 0, 0, 1, "cat", None, {}, {}, [], str(tmp_path),
                    sources=sources, num_maps=len(sources))
    (tmp_path / "inputs").mkdir()
    plan = shuffle.PackPlan(SortOrder(KeySpec(b"\t", 1)), 1 << 20, str(tmp_path))
    fetched = shuffle.fetch_all(spec, str(tmp_path / "inputs"), auth, pack=plan)
    assert fetched.failed_map == 40 and "is gone from" in fetched.error
    assert _no_children(), [p.cmdline() for p in _new_children()]


def test_a_runner_swept_in_its_session_box_survives_and_its_attempts_leftovers_do_not(
        ) -> None:
    """Without cgroups a kept runner's attempt is swept through its session: everything in
    it but the runner is killed (a background child of the user's command), the runner
    lives on for the next map."""
    from hstream.task import procs

    runner = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; "
         "subprocess.Popen(['sleep', '1004']); sys.stdin.readline()"],
        stdin=subprocess.PIPE, start_new_session=True)
    try:
        def leftover() -> list[int]:
            return [p for p in procs.session_members(runner.pid) if p != runner.pid]

        deadline = time.monotonic() + 10
        while not leftover() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert leftover(), "the runner's child never started"
        box = procs.Box.__new__(procs.Box)  # as a worker without cgroups makes it
        box.cgroup, box.sid = None, runner.pid
        assert box.sweep(runner.pid)
        assert leftover() == [] and runner.poll() is None
    finally:
        procs.kill_session(runner.pid)
        runner.wait()
