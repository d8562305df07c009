"""A bad job, a full disk or a rude signal never takes hstream down, and a task stays in its box
(issue 9, items 6-11 and 15).

Each test reproduces what was observed before the fix on the embedded cluster: a mapper's
300 MB line (memory grew with it, map-only in quadratic time), an endless input line,
`-files` aliases and tar members that wrote outside the task directory, relay ids that became
paths in another job's output, a failed attempt's partial part file filling the disk, a
mapper's background child that outlived the job or hung it, files left by a killed
`hstream jar-free`, and an input file truncated under a running job.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import (
    assert_same_output,
    hstream_processes,
    pairs,
    read_output,
    reference,
    require,
    run_hstream,
    wait_for,
)

from hstream import protocol
from hstream.cluster.client import Client
from hstream.cluster.localcluster import LocalCluster
from hstream.hadoop.streaming import parse
from hstream.job import Split, to_dict
from hstream.task import procs
from hstream.task.attempt import TaskError, reuse_dir, unpack
from hstream.task.lines import LineCutter, LineLimit, LineTooLong
from hstream.task.splits import InputChanged, read_split

MiB = 1 << 20
OUTPUT_LIMIT = "hstream.task.output.line.maxlength"
INPUT_LIMIT = "mapreduce.input.linerecordreader.line.maxlength"
#: Every hstream process stays under this, whatever its input or its tasks' output (issue 9).
RSS_BOUND = 200 * MiB


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def lines_file(path: Path, count: int) -> Path:
    path.write_bytes(b"".join(b"%07d\n" % i for i in range(count)))
    return path


def hstream_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("hstream:")]


class PeakRss(threading.Thread):
    """Samples the RSS of every hstream process of this test (client, manager, workers, task
    runners) while a job runs; `peak` is the largest seen, with its command line."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.tag = os.environ["HSTREAM_TEST_TAG"]
        self.stopped = threading.Event()
        self.peak = (0, "")

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            for p in hstream_processes(self.tag):
                try:
                    cmd = " ".join(p.cmdline())
                    rss = p.memory_info().rss
                except (psutil.Error, OSError):
                    continue
                if "hstream" in cmd and rss > self.peak[0]:
                    self.peak = (rss, cmd[:160])

    def __enter__(self) -> PeakRss:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.join()


# -- item 6: line length limits, linear line cutting ------------------------------------------


def test_line_cutting_is_linear_and_stops_at_the_limit() -> None:
    """One 64 MB line in 64 KiB chunks: a copy of the whole line per chunk took minutes."""
    chunk = b"x" * (64 << 10)
    cutter = LineCutter()
    started = time.monotonic()
    for _ in range(1024):
        assert cutter.cut(chunk) == b""
    assert len(cutter.cut(b"y\nrest")) == 64 * MiB + 2
    assert time.monotonic() - started < 10
    assert cutter.flush() == b"rest\n"
    limited = LineCutter(LineLimit(MiB, OUTPUT_LIMIT, "mapper output"))
    with pytest.raises(LineTooLong, match=f"longer than {MiB} bytes.*{OUTPUT_LIMIT}"):
        for _ in range(17):
            limited.cut(chunk)


@pytest.mark.parametrize("data,ok", [
    (b"abc\n" * 100, True), (b"a\n" + b"x" * 11 + b"\nb\n", False), (b"x" * 10 + b"\n", True),
    (b"short\n" + b"y" * 11, False),
])
def test_line_limit_sees_lines_inside_a_chunk(data: bytes, ok: bool) -> None:
    limit = LineLimit(10, INPUT_LIMIT, "in.txt")
    if ok:
        limit.check(data)
    else:
        with pytest.raises(LineTooLong, match="in.txt has a line longer than 10 bytes"):
            limit.check(data)


@pytest.mark.parametrize("reduces", ["0", "2"])
def test_a_mapper_line_past_the_limit_fails_naming_it_in_bounded_memory(
        tmp_path: Path, reduces: str) -> None:
    data = lines_file(tmp_path / "in.txt", 10)
    mapper = script(tmp_path / "bigline.sh", "cat >/dev/null\n"
                    "head -c 64000000 /dev/zero | tr '\\0' x\n")
    with PeakRss() as rss:
        proc = run_hstream("jar-free", "-input", str(data), "-output", str(tmp_path / "out"),
                           "-mapper", str(mapper), "-reducer", "cat", "-numReduceTasks", reduces,
                           "-D", f"{OUTPUT_LIMIT}={8 * MiB}", cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert f"mapper output has a line longer than {8 * MiB} bytes" in hstream_lines(
        proc.stderr)[0], proc.stderr
    assert OUTPUT_LIMIT in proc.stderr and "Traceback" not in proc.stderr
    assert rss.peak[0] < 100 * MiB, rss.peak  # the limit plus a little, never the line
    assert not (tmp_path / "out").exists()


def test_a_long_line_under_the_limit_goes_through_as_a_slice(tmp_path: Path) -> None:
    """A 6 MB line (over the 4 MiB window) with a key: routed, sorted and written whole."""
    data = lines_file(tmp_path / "in.txt", 1000)
    mapper = tmp_path / "long.py"
    mapper.write_text(f"#!{sys.executable}\nimport sys\nfor line in sys.stdin.buffer:\n"
                      "    sys.stdout.buffer.write(line)\n    if line == b'0000007\\n':\n"
                      "        sys.stdout.buffer.write(b'k\\t' + b'v' * 6000000 + b'\\n')\n")
    mapper.chmod(0o755)
    out = tmp_path / "out"
    with PeakRss() as rss:
        proc = run_hstream("jar-free", "-input", str(data), "-output", str(out), "-mapper",
                           str(mapper), "-reducer", "cat", "-numReduceTasks", "2",
                           "-D", f"{OUTPUT_LIMIT}={8 * MiB}", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    want = reference([data], str(mapper), "cat", tmp_path)
    same = pairs(read_output(out)) == pairs(want) and len(want) > 6_000_000
    assert same, "output differs from the serial pipeline"  # (no 6 MB diff on the screen)
    assert rss.peak[0] < RSS_BOUND, rss.peak


def test_an_endless_input_line_fails_naming_the_limit_in_bounded_memory(tmp_path: Path) -> None:
    """A file of zero bytes with no newline (what /dev/zero gave, 454 MB after 30 s)."""
    zeros = tmp_path / "zeros.bin"
    with open(zeros, "wb") as f:
        f.truncate(48 * MiB)
    with PeakRss() as rss:
        proc = run_hstream("jar-free", "-input", str(zeros), "-output", str(tmp_path / "out"),
                           "-mapper", "cat", "-reducer", "cat", "-D", f"{INPUT_LIMIT}={8 * MiB}",
                           cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    line = hstream_lines(proc.stderr)[0]
    assert f"{zeros} has a line longer than {8 * MiB} bytes" in line, proc.stderr
    assert INPUT_LIMIT in line
    assert rss.peak[0] < 100 * MiB, rss.peak


# -- item 7: shipped names and archives stay inside the task directory -------------------------


@pytest.mark.parametrize("option,value", [
    ("-files", "{f}#../escaped"), ("-files", "{f}#/tmp/hstream-escaped"),
    ("-file", "{f}#sub/name"), ("-archives", "{a}#.."),
])
def test_a_ship_name_that_is_not_plain_exits_3_naming_it(tmp_path: Path, option: str,
                                                         value: str) -> None:
    f = tmp_path / "data.txt"
    f.write_text("x\n")
    archive = tmp_path / "a.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(f, "data.txt")
    shipped = value.format(f=f, a=archive)
    proc = run_hstream("jar-free", "-input", str(f), "-output", str(tmp_path / "out"),
                       "-mapper", "cat", option, shipped, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    (line,) = hstream_lines(proc.stderr)
    assert "plain name" in line and shipped.split("#")[1] in line
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/hstream-escaped").exists()


def _tar_with(path: Path, kind: str, outside: Path) -> str:
    """A tar whose one bad member would write `outside`; returns that member's name."""
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes = b"x\n", **attrs: object) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in attrs.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
        add("ok.txt")
        if kind == "parent":
            add("../../../../../../../../.." + str(outside))
            return "../"
        if kind == "absolute":
            add(str(outside))
            return str(outside)
        add("link", type=tarfile.SYMTYPE, linkname=str(outside.parent), size=0)
        add("link/" + outside.name)
        return "link"


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink"])
def test_a_tar_member_never_lands_outside_the_task_directory(tmp_path: Path, kind: str) -> None:
    """tarfile's `data` filter: `..` and links out fail the attempt naming the member; an
    absolute name is unpacked inside, made relative."""
    outside = tmp_path / "outside" / "pwned.txt"
    outside.parent.mkdir()
    archive = tmp_path / "bad.tar"
    member = _tar_with(archive, kind, outside)
    data = lines_file(tmp_path / "in.txt", 3)
    lister = script(tmp_path / "ls.sh", f"cat >/dev/null; find dir/ -name {outside.name}\n")
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(tmp_path / "out"),
                       "-mapper", str(lister), "-reducer", "NONE", "-archives",
                       f"{archive}#dir", cwd=tmp_path)
    assert not outside.exists()
    assert "Traceback" not in proc.stderr
    if kind == "absolute":
        assert proc.returncode == 0, proc.stderr
        assert str(outside).lstrip("/").encode() in read_output(tmp_path / "out")
        return
    assert proc.returncode == 1, proc.stderr
    assert "archive bad.tar" in proc.stderr and member in proc.stderr, proc.stderr


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink"])
def test_without_the_data_filter_the_same_rules_hold(tmp_path: Path, kind: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Pythons before 3.11.4 (a worker host may have one) have no `data` filter."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    outside = tmp_path / "outside" / "pwned.txt"
    outside.parent.mkdir()
    member = _tar_with(tmp_path / "bad.tar", kind, outside)
    dest = tmp_path / "dest"
    if kind == "absolute":
        unpack(str(tmp_path / "bad.tar"), str(dest), "bad.tar")
        assert (dest / str(outside).lstrip("/")).exists()
    else:
        with pytest.raises(TaskError, match=f"archive bad.tar: .*{member}"):
            unpack(str(tmp_path / "bad.tar"), str(dest), "bad.tar")
    assert not outside.exists()


# -- item 8: relay ids are checked against what the manager issued ---------------------------


def _relay(cluster: LocalCluster, request: dict[str, object], payload: bytes = b"") -> bool:
    """Send one relay request (with an upload body if given); True if it was answered ok."""
    chan = protocol.connect("127.0.0.1", cluster.port, cluster.secret)
    try:
        chan.send(request)
        if request["op"] == "put_output":
            chan.send_stream([payload])
        reply = chan.recv()
        return reply.get("op") in ("ok", "data")
    except (EOFError, OSError, protocol.ProtocolError):
        return False
    finally:
        chan.close()


def test_the_relay_refuses_every_id_that_is_not_the_callers(tmp_path: Path) -> None:
    data = lines_file(tmp_path / "in.txt", 50)
    slow = script(tmp_path / "slow.sh", "while read l; do echo \"$l\"; sleep 0.2; done\n")
    out = tmp_path / "out"
    opts = parse(["-input", str(data), "-output", str(out), "-mapper", str(slow),
                  "-reducer", "cat"], cwd=str(tmp_path))
    with LocalCluster(workers=1, shared_fs=False) as cluster:
        client = Client("127.0.0.1", cluster.port, cluster.secret)
        chan, job_id = client.submit(opts.spec)
        try:
            staging = wait_for(lambda: next(tmp_path.glob(".out.hstream-*"), None), 30,
                               "the job's staging directory")
            number = job_id.split("_", 1)[1]
            other = f"attempt_{number[:-1]}{(int(number[-1]) + 1) % 10}_r_000000_0"
            bad = [
                {"attempt_id": "..", "name": "part-00000"},
                {"attempt_id": ".", "name": "part-00000"},
                {"attempt_id": other, "name": "part-00000"},  # another job's attempt
                {"attempt_id": f"attempt_{number}_r_000000_7", "name": "part-00000"},  # unissued
                {"attempt_id": f"attempt_{number}_r_000000_0", "name": "_SUCCESS"},
                {"attempt_id": f"attempt_{number}_r_000000_0", "name": "../part-00000"},
            ]
            for fields in bad:
                assert not _relay(cluster, {"op": "put_output", "job_id": job_id, **fields},
                                  b"forged\n"), fields
            assert not _relay(cluster, {"op": "get_file", "job_id": job_id, "name": "../slow.sh"})
            assert not _relay(cluster, {"op": "read_split", "job_id": job_id,
                                        "split": to_dict(Split(str(slow), 0, 10))})
            forged = [p for p in Path(staging).rglob("*") if p.is_file()
                      and p.name != procs.OWNER_FILE]
            assert forged == [], forged
            assert cluster.status()["jobs"][0]["state"] == "running"  # the manager served on
        finally:
            client.kill(job_id)
            chan.close()
    assert not out.exists()


# -- item 9: a failed attempt's files go at once; a full disk is one clear line ---------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Any]:
    """`small_fs(name, size)`: a tmpfs of that size mounted under tmp_path for the test."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                            capture_output=True).returncode == 0
        require(ok, "mounting a tmpfs needs root (mount -t tmpfs)")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_failed_attempts_partial_output_is_removed_before_its_retry(
        tmp_path: Path, small_fs: Any) -> None:
    """The first reduce attempt writes 6 MB and fails; the retry needs the same 6 MB of a
    10 MB disk: before, the partial file stayed in _temporary and every retry hit ENOSPC."""
    disk = small_fs("disk", "10m")
    data = lines_file(tmp_path / "in.txt", 750_000)  # 6 MB
    mark = tmp_path / "failed-once"
    reducer = script(tmp_path / "fail_once.sh",
                     f"if mkdir '{mark}' 2>/dev/null; then cat; exit 1; fi\nexec cat\n")
    out = disk / "out"
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(out), "-mapper", "cat",
                       "-reducer", str(reducer), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert mark.exists()
    assert_same_output(out, reference([data], "cat", str(reducer), tmp_path))


def test_a_full_working_directory_is_one_clear_line(tmp_path: Path, small_fs: Any) -> None:
    """Spills that cannot fit: no raw `sort: write failed`, no logging traceback."""
    workdir = small_fs("work", "3m")
    data = lines_file(tmp_path / "in.txt", 1_000_000)  # 8 MB of map output to spill
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(tmp_path / "out"),
                       "-mapper", "cat", "-reducer", "cat",
                       "-D", f"hstream.sort.buffer.bytes={MiB}",
                       cwd=tmp_path, env={"TMPDIR": str(workdir)}, timeout=300)
    assert proc.returncode == 1, proc.stderr
    (line,) = hstream_lines(proc.stderr)
    assert "no space left on device in " + str(workdir) in line, proc.stderr
    for noise in ("sort: write failed", "Logging error", "Traceback"):
        assert noise not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


# -- item 10: every process an attempt starts ends with it ------------------------------------


def sleepers(seconds: str) -> list[psutil.Process]:
    tag = os.environ["HSTREAM_TEST_TAG"]
    return [p for p in hstream_processes(tag) if p.cmdline()[-2:] == ["sleep", seconds]]


@pytest.mark.parametrize("how,seconds", [
    ("sleep 1001 >/dev/null 2>&1 &", "1001"),  # in the attempt's session
    ("sleep 1002 &", "1002"),  # and holding the mapper's stdout and stderr open
])
def test_a_mappers_background_child_ends_with_its_attempt(tmp_path: Path, how: str,
                                                          seconds: str) -> None:
    data = lines_file(tmp_path / "in.txt", 1000)
    mapper = script(tmp_path / "bg.sh", f"{how}\nexec cat\n")
    out = tmp_path / "out"
    started = time.monotonic()
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(out), "-mapper",
                       str(mapper), "-reducer", "cat", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 100  # not the 600 s task timeout
    assert sleepers(seconds) == []
    assert_same_output(out, reference([data], "cat", "cat", tmp_path))


def test_a_task_command_inherits_no_descriptor_but_its_standard_three(tmp_path: Path) -> None:
    """The user's mapper and reducer get stdin, stdout and stderr and nothing else of the
    runner (its pipes to the worker, its shuffle sockets, its logs), though the runner starts
    them without closing descriptors (posix_spawn)."""
    data = lines_file(tmp_path / "in.txt", 50)
    probe = tmp_path / "fds.py"
    probe.write_text("#!/usr/bin/env python3\n"
                     "import os, sys\n"
                     "for line in sys.stdin:  # the reducer passes on what the mappers saw\n"
                     "    if line.startswith('map'):\n"
                     "        sys.stdout.write(line)\n"
                     "open_fds = []\n"
                     "for fd in range(3, 4096):\n"
                     "    try:\n"
                     "        os.fstat(fd)\n"
                     "        open_fds.append(str(fd))\n"
                     "    except OSError:\n"
                     "        pass\n"
                     "print(sys.argv[1] + '\\t' + (','.join(open_fds) or 'none'))\n")
    probe.chmod(0o755)
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(out), "-mapper",
                       f"{probe} map", "-reducer", f"{probe} reduce", "-numReduceTasks", "1",
                       cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert read_output(out) == b"map\tnone\n" * 2 + b"reduce\tnone\n"


#: Small maps per job in the tests of runners that take their job's next map.
SMALL_MAPS = 12


def small_maps(tmp_path: Path, mapper: Path) -> list[str]:
    """The output lines of a job of SMALL_MAPS one-line files through `mapper` and `cat`: short
    maps, so that runners are kept and take the job's next map."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(SMALL_MAPS):
        (inputs / f"f{i:02d}.txt").write_text(f"line {i}\n")
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-input", str(inputs), "-output", str(out), "-mapper",
                       str(mapper), "-reducer", "cat", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return read_output(out).decode().splitlines()


def test_maps_that_share_a_runner_each_start_clean(tmp_path: Path) -> None:
    """A runner takes its job's next map (Hadoop's JVM reuse), yet every attempt has its own
    task id, working directory and environment, and nothing the previous one left: not a file,
    not a background child. The directory itself is the last one's, renamed and emptied."""
    mapper = script(tmp_path / "probe.sh",
                    "cat >/dev/null\n"
                    "seen=$(ls | grep -c left-by)\n"
                    "echo \"$mapreduce_task_id\t$PPID $PWD $seen $(stat -c %i .)\"\n"
                    "touch left-by-$mapreduce_task_id\n"
                    "sleep 1003 >/dev/null 2>&1 &\n")
    rows = [line.split("\t") for line in small_maps(tmp_path, mapper)]
    assert len({task for task, _ in rows}) == SMALL_MAPS
    runners = {fields.split()[0] for _, fields in rows}
    assert len(runners) < SMALL_MAPS, "every map had a runner of its own: none was reused"
    assert len({fields.split()[1] for _, fields in rows}) == SMALL_MAPS  # a directory each
    assert {fields.split()[2] for _, fields in rows} == {"0"}  # and nothing left in it
    # ... though the same directory, renamed and emptied: no inode made per map
    assert len({fields.split()[3] for _, fields in rows}) < SMALL_MAPS
    assert sleepers("1003") == []


def test_maps_that_share_a_runner_each_see_their_own_environment(tmp_path: Path) -> None:
    """Maps that share a runner each see their own task, input and directories in their
    environment, and as many variables as every other map: none is left from the map
    before."""
    mapper = script(tmp_path / "env.sh",
                    "cat >/dev/null\n"
                    "echo \"$mapreduce_task_id\t$PPID $mapreduce_task_attempt_id "
                    "$mapreduce_map_input_file $TMPDIR ${PATH%%:*} $PWD $(env | wc -l)\"\n")
    rows = [(task, *rest.split()) for task, rest in
            (line.split("\t") for line in small_maps(tmp_path, mapper))]
    assert len({runner for _, runner, *_ in rows}) < SMALL_MAPS, "no runner was reused"
    assert sorted(Path(row[3]).name for row in rows) == [f"f{i:02d}.txt" for i in range(SMALL_MAPS)]
    for task, _, attempt, _, tmp, first_path, cwd, _ in rows:
        assert attempt.startswith(task.replace("task_", "attempt_", 1) + "_")
        assert Path(cwd).parent.name == attempt and tmp == str(Path(cwd).parent / "tmp")
        assert first_path == cwd
    assert len({row[-1] for row in rows}) == 1, "maps saw different numbers of variables"


def test_a_kept_runners_next_map_runs_in_its_cgroup_swept_of_the_last_ones_leftovers(
        tmp_path: Path) -> None:
    """A runner kept for its job's next map keeps its cgroup (moving it to another and back
    cost the kernel more than a small map), so the next map runs where the last one's
    background child was: the sweep must have killed it before."""
    require(procs.own_cgroup() is not None, "a writable cgroup v2 hierarchy")
    mapper = tmp_path / "probe.py"
    mapper.write_text(f"""#!{sys.executable}
import os, subprocess, sys
sys.stdin.read()
mount = next(line.split()[4] for line in open("/proc/self/mountinfo") if " - cgroup2 " in line)
cgroup = mount + next(line[3:].strip() for line in open("/proc/self/cgroup")
                      if line.startswith("0::"))
left = 0
for pid in open(os.path.join(cgroup, "cgroup.procs")).read().split():
    try:
        left += open(f"/proc/{{pid}}/cmdline", "rb").read() == b"sleep\\x001004\\x00"
    except OSError:
        pass
print(os.environ["mapreduce_task_id"], cgroup, left, sep="\\t")
sys.stdout.flush()
subprocess.Popen(["sleep", "1004"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
""")
    mapper.chmod(0o755)
    rows = [line.split("\t") for line in small_maps(tmp_path, mapper)]
    assert len(rows) == SMALL_MAPS
    assert len({cg for _, cg, _ in rows}) < SMALL_MAPS, "no map ran in a kept runner's cgroup"
    assert [left for _, _, left in rows] == ["0"] * SMALL_MAPS  # none met the last one's child
    assert sleepers("1004") == []


def _used_attempt_dir(root: Path) -> Path:
    """An attempt directory as a map leaves it: a shipped file's link, the mapper's files."""
    (root / "work" / "sub").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "work" / "mapper.py").symlink_to("/bin/true")
    (root / "work" / "made.txt").write_text("left")
    (root / "work" / "sub" / "deep.txt").write_text("left")
    (root / "tmp" / "spill").write_text("left")
    (root / "output").mkdir()
    return root


def test_a_kept_runners_directory_passes_to_its_next_map_emptied(tmp_path: Path) -> None:
    prev = _used_attempt_dir(tmp_path / "attempt_m_1")
    (prev / "work" / "other-link").symlink_to(tmp_path)
    assert reuse_dir(str(prev), str(tmp_path / "attempt_m_2"), {"mapper.py"})
    new = tmp_path / "attempt_m_2"
    assert not prev.exists()
    assert sorted(p.name for p in new.iterdir()) == ["tmp", "work"]
    assert [p.name for p in (new / "work").iterdir()] == ["mapper.py"]  # the shipped link
    assert list((new / "tmp").iterdir()) == []
    assert tmp_path.is_dir()  # a link's target is never entered


def test_a_directory_with_logs_stays_and_planted_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    logged = _used_attempt_dir(tmp_path / "attempt_m_1")
    (logged / "stderr.log").write_text("the attempt's record")
    assert not reuse_dir(str(logged), str(tmp_path / "attempt_m_2"), set())
    assert (logged / "work" / "made.txt").exists() and not (tmp_path / "attempt_m_2").exists()
    planted = tmp_path / "attempt_m_3"
    planted.mkdir()
    (planted / "work").symlink_to(outside)  # a task swapped its working directory for a link
    assert reuse_dir(str(planted), str(tmp_path / "attempt_m_4"), set())
    assert list((tmp_path / "attempt_m_4").iterdir()) == []  # the link went, not what it names
    assert (outside / "precious").read_text() == "keep"
    (tmp_path / "linked").symlink_to(logged)
    assert not reuse_dir(str(tmp_path / "linked"), str(tmp_path / "attempt_m_5"), set())


def test_a_daemonized_grandchild_is_killed_through_the_attempts_cgroup(tmp_path: Path) -> None:
    require(procs.own_cgroup() is not None, "a writable cgroup v2 hierarchy")
    data = lines_file(tmp_path / "in.txt", 100)
    mapper = script(tmp_path / "daemon.sh",
                    "setsid sleep 1003 </dev/null >/dev/null 2>&1 &\nexec cat\n")
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(tmp_path / "out"),
                       "-mapper", str(mapper), "-reducer", "NONE", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sleepers("1003") == []


# -- item 11: SIGTERM, SIGHUP and SIGKILL of jar-free ----------------------------------------


def start_slow_job(tmp_path: Path, name: str) -> subprocess.Popen[str]:
    """A job whose mapper takes a second a line, output in tmp_path/NAME/out, and $TMPDIR in
    tmp_path/tmp (so the test sees exactly its run directories)."""
    (tmp_path / name).mkdir()
    (tmp_path / "tmp").mkdir(exist_ok=True)
    data = lines_file(tmp_path / name / "in.txt", 100)
    mapper = script(tmp_path / name / "slow.sh",
                    "while read line; do echo \"$line\"; sleep 1; done\n")
    env = {k: v for k, v in os.environ.items() if k != "HSTREAM_CONFIG"}
    env["TMPDIR"] = str(tmp_path / "tmp")
    return subprocess.Popen([sys.executable, "-m", "hstream", "jar-free", "-input", str(data),
                             "-output", str(tmp_path / name / "out"), "-mapper", str(mapper),
                             "-reducer", "cat"], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True)


def staging_of(tmp_path: Path, name: str) -> Path:
    return Path(wait_for(lambda: next((tmp_path / name).glob(".out.hstream-*"), None), 60,
                         f"the staging directory of job {name}"))  # type: ignore[arg-type]


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "tmp").glob("hstream-local-*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(tmp_path: Path, sig: signal.Signals) -> None:
    job = start_slow_job(tmp_path, "a")
    try:
        staging_of(tmp_path, "a")
        job.send_signal(sig)
        _, stderr = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode == 128 + sig, stderr
    assert f"hstream: terminated ({sig.name})" in stderr and "Traceback" not in stderr
    assert not list((tmp_path / "a").glob(".out.hstream-*"))
    assert not (tmp_path / "a" / "out").exists()
    assert run_dirs(tmp_path) == []


def test_after_sigkill_the_next_run_removes_what_it_left_but_never_a_live_runs(
        tmp_path: Path) -> None:
    live = start_slow_job(tmp_path, "live")
    killed = start_slow_job(tmp_path, "killed")
    try:
        live_staging = staging_of(tmp_path, "live")
        killed_staging = staging_of(tmp_path, "killed")
        killed.kill()
        killed.wait()
        wait_for(lambda: procs.owner_gone(str(killed_staging / "_temporary")), 30,
                 "the killed job's manager to exit")
        assert killed_staging.exists() and len(run_dirs(tmp_path)) == 2  # what was observed
        env = {"TMPDIR": str(tmp_path / "tmp")}
        data = lines_file(tmp_path / "in.txt", 10)
        proc = run_hstream("jar-free", "-input", str(data), "-output", str(tmp_path / "next"),
                           "-mapper", "cat", "-reducer", "NONE", cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        assert not killed_staging.exists()
        assert live_staging.exists() and len(run_dirs(tmp_path)) == 1  # the live run's own
        live.send_signal(signal.SIGINT)
        assert live.wait(timeout=60) == 130
    finally:
        live.kill()
        killed.kill()
    assert run_dirs(tmp_path) == [] and not live_staging.exists()


# -- item 15: an input that changes under the job fails it, naming the file -------------------


def test_a_split_that_ends_early_is_an_input_change(tmp_path: Path) -> None:
    path = lines_file(tmp_path / "in.txt", 100)
    with pytest.raises(InputChanged, match=f"input changed while the job ran: {path}"):
        b"".join(read_split(Split(str(path), 0, 2000)))
    st = path.stat()
    split = Split(str(path), 0, st.st_size, "", st.st_size + 1, st.st_mtime_ns)
    with pytest.raises(InputChanged, match="size"):
        b"".join(read_split(split))


@pytest.mark.parametrize("change", ["truncate -s 1000000", "touch"])
@pytest.mark.parametrize("shared_fs", [True, False])
def test_an_input_changed_while_the_job_ran_fails_it_naming_the_file(
        tmp_path: Path, change: str, shared_fs: bool) -> None:
    data = lines_file(tmp_path / "in.txt", 500_000)  # 4 MB: four splits
    mark = tmp_path / "changed"
    mapper = script(tmp_path / "change.sh",
                    f"if mkdir '{mark}' 2>/dev/null; then {change} '{data}'; fi\nexec cat\n")
    opts = parse(["-input", str(data), "-output", str(tmp_path / "out"), "-mapper", str(mapper),
                  "-reducer", "cat", "-D", "mapreduce.job.maps=4"], cwd=str(tmp_path))
    with LocalCluster(workers=2, shared_fs=shared_fs) as cluster:
        outcome = Client("127.0.0.1", cluster.port, cluster.secret).run(
            opts.spec, open(os.devnull, "w"))
    assert outcome.state == "failed"
    assert f"input changed while the job ran: {data}" in outcome.message, outcome.message
    assert not (tmp_path / "out").exists()
