"""hstream as a stage of shell pipelines and Makefiles: `-input -`, `-output -`, jobs side by side.

Every scratch file hstream makes for a pipe lives under $TMPDIR or next to the output, so each
test points TMPDIR at a directory of its own and checks that it is empty afterwards: no spool,
no private output directory, no local cluster's run directory left behind.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import APPS, assert_same_output, pairs, read_output, reference, require, wait_for
from testbed import LoopbackHost, have_sshd, write_ini

MAP, REDUCE = str(APPS / "wc_map.py"), str(APPS / "wc_reduce.py")
HSTREAM = f"{sys.executable} -m hstream"
WORDS = [f"w{i:03d}" for i in range(300)]


def corpus(path: Path, seed: int, lines: int = 400) -> Path:
    """Seeded word lines: each seed gives different counts, so outputs cannot be swapped."""
    rnd = random.Random(seed)
    path.write_text("".join(" ".join(rnd.choices(WORDS[: 50 + 50 * seed], k=8)) + "\n"
                            for _ in range(lines)))
    return path


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    d = tmp_path / "tmp"
    d.mkdir()
    return d


def env_with(scratch: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HSTREAM_CONFIG"}
    return {**env, "TMPDIR": str(scratch), **extra}


def bash(script: str, cwd: Path, env: dict[str, str],
         timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["bash", "-c", f"set -o pipefail; {script}"], cwd=cwd, env=env,
                          capture_output=True, timeout=timeout)


def assert_nothing_left(scratch: Path, *dirs: Path) -> None:
    assert not list(scratch.iterdir()), f"left in $TMPDIR: {list(scratch.iterdir())}"
    for d in dirs:
        left = [p.name for p in d.iterdir() if ".hstream-" in p.name]
        assert not left, f"left in {d}: {left}"


def test_stdin_to_stdout_in_a_sort_head_pipeline(tmp_path: Path, scratch: Path) -> None:
    data = corpus(tmp_path / "in.txt", seed=1)
    env = env_with(scratch)
    job = f"{HSTREAM} jar-free -mapper {MAP} -reducer {REDUCE} -numReduceTasks 3"
    got = bash(f"cat {data} | {job} -input - -output - | sort -k2,2nr -k1,1 | head -5",
               tmp_path, env)
    assert got.returncode == 0, got.stderr.decode()
    want = reference([data], MAP, REDUCE, tmp_path)
    expected = subprocess.run(["bash", "-c", "sort -k2,2nr -k1,1 | head -5"], input=want,
                              capture_output=True, check=True).stdout
    assert got.stdout == expected and len(expected.splitlines()) == 5
    assert b"completed successfully" in got.stderr and b"Running job" in got.stderr
    assert_nothing_left(scratch, tmp_path)


def test_stdout_is_the_part_files_in_part_order(tmp_path: Path, scratch: Path) -> None:
    """The same job to a directory and to stdout: stdout is `cat out/part-*` byte for byte."""
    data = corpus(tmp_path / "in.txt", seed=2)
    env = env_with(scratch)
    args = ["jar-free", "-mapper", MAP, "-reducer", REDUCE, "-numReduceTasks", "4"]
    to_dir = subprocess.run([sys.executable, "-m", "hstream", *args, "-input", str(data),
                             "-output", str(tmp_path / "out")], env=env, capture_output=True,
                            timeout=180)
    assert to_dir.returncode == 0, to_dir.stderr.decode()
    with open(data, "rb") as stdin:
        piped = subprocess.run([sys.executable, "-m", "hstream", *args, "-input", "-",
                                "-output", "-"], stdin=stdin, env=env, capture_output=True,
                               timeout=180)
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stdout == read_output(tmp_path / "out")
    assert_same_output(tmp_path / "out", reference([data], MAP, REDUCE, tmp_path))
    assert b"Output directory: standard output" in piped.stderr
    assert_nothing_left(scratch, tmp_path)


def test_stdin_with_files_and_empty_stdin(tmp_path: Path, scratch: Path) -> None:
    """`-input -` beside a file reads both; an empty stdin is an empty input, not an error."""
    a, b = corpus(tmp_path / "a.txt", seed=3), corpus(tmp_path / "b.txt", seed=4)
    env = env_with(scratch)
    job = f"{HSTREAM} jar-free -mapper {MAP} -reducer {REDUCE}"
    both = bash(f"{job} -input {a} -input - -output out < {b}", tmp_path, env)
    assert both.returncode == 0, both.stderr.decode()
    assert_same_output(tmp_path / "out", reference([a, b], MAP, REDUCE, tmp_path))
    empty = bash(f"{job} -input - -output - < /dev/null", tmp_path, env)
    assert empty.returncode == 0, empty.stderr.decode()
    assert empty.stdout == b""
    assert_nothing_left(scratch, tmp_path)


def test_bad_uses_of_dash_are_one_line_errors(tmp_path: Path, scratch: Path) -> None:
    env = env_with(scratch)
    (tmp_path / "out").mkdir()
    exists = bash(f"echo a | {HSTREAM} jar-free -input - -output out", tmp_path, env, 60)
    assert exists.returncode == 4 and b"already exists" in exists.stderr
    background = bash(f"echo a | {HSTREAM} jar-free -input - -output - -background",
                      tmp_path, env, 60)
    assert background.returncode == 3, background.stderr.decode()
    assert b"-background" in background.stderr
    for proc in (exists, background):
        assert b"Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert_nothing_left(scratch, tmp_path)


def test_reader_closing_early_ends_cleanly(tmp_path: Path, scratch: Path) -> None:
    """`hstream … -output - | head -1`: EPIPE ends hstream as SIGPIPE ends `cat` (141)."""
    data = tmp_path / "in.txt"
    data.write_text("".join(f"{i}\n" for i in range(200_000)))  # far more than a pipe holds
    proc = subprocess.Popen([sys.executable, "-m", "hstream", "jar-free", "-input", str(data),
                             "-output", "-", "-mapper", "cat", "-reducer", "cat"],
                            env=env_with(scratch), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, stderr
    assert first == b"0\t\n"
    assert "completed successfully" in stderr and "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert_nothing_left(scratch, tmp_path)


@pytest.mark.parametrize("when", ["reading stdin", "running the job"])
def test_ctrl_c_to_the_pipeline_leaves_nothing(tmp_path: Path, scratch: Path, when: str) -> None:
    """SIGINT to the pipeline's process group, as a terminal's Ctrl-C sends it."""
    interrupt_pipeline(tmp_path, scratch, env_with(scratch), when)


def interrupt_pipeline(tmp_path: Path, scratch: Path, env: dict[str, str], when: str) -> None:
    """`source | hstream … -input - | sort | head` in a process group of its own, interrupted
    while hstream reads stdin or while its job runs: hstream exits 130, nothing is left."""
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nwhile read line; do echo \"$line\"; sleep 0.2; done\n")
    slow.chmod(0o755)
    source = "{ seq 1 50; sleep 600; }" if when == "reading stdin" else "seq 1 200"
    output = "out" if when == "reading stdin" else "-"
    log = tmp_path / "stderr"
    script = (f'trap "echo trapped" INT; {source} | {HSTREAM} jar-free -input - '
              f'-output {output} -mapper {slow} -reducer cat | sort | head; '
              'echo "status ${PIPESTATUS[*]}"')
    with open(log, "wb") as err:
        proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=err, start_new_session=True)
    try:
        if when == "reading stdin":
            wait_for(lambda: list(tmp_path.glob(".out.hstream-stdin-*")), 60, "the stdin spool")
        else:
            wait_for(lambda: b"Running job" in log.read_bytes(), 60, "the job to start")
            wait_for(lambda: list(scratch.glob("hstream-stdout-*/.output.hstream-*")), 30,
                     "the job's staging directory")
        os.killpg(proc.pid, signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    statuses = stdout.decode().split("status ")[-1].split()
    assert statuses[1] == "130", (stdout, log.read_text())
    assert "hstream: interrupted" in log.read_text()
    assert not (tmp_path / "out").exists()
    assert_nothing_left(scratch, tmp_path)


def _start(i: int, tmp_path: Path, env: dict[str, str], *cluster: str) -> subprocess.Popen[bytes]:
    """Job i of a `make -j`: jobs 0 and 1 write directories, 2 and 3 read stdin, write stdout."""
    data = corpus(tmp_path / f"in{i}.txt", seed=i)
    io = (["-input", str(data), "-output", str(tmp_path / f"out{i}")] if i < 2
          else ["-input", "-", "-output", "-"])
    with open(data, "rb") as stdin:
        return subprocess.Popen([sys.executable, "-m", "hstream", "jar-free", *cluster, *io,
                                 "-mapper", MAP, "-reducer", REDUCE, "-numReduceTasks", "2"],
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=tmp_path)


def _check_all(jobs: list[subprocess.Popen[bytes]], tmp_path: Path) -> list[str]:
    ids = []
    for i, job in enumerate(jobs):
        stdout, stderr = job.communicate(timeout=300)
        assert job.returncode == 0, f"job {i}: {stderr.decode()}"
        want = reference([tmp_path / f"in{i}.txt"], MAP, REDUCE, tmp_path)
        if i < 2:
            assert_same_output(tmp_path / f"out{i}", want)
        else:
            assert pairs(stdout) == pairs(want), f"job {i}: stdout differs"
        ids.append(stderr.decode().split("Running job: ")[1].split()[0])
    return ids


def test_four_jobs_at_once_on_embedded_clusters(tmp_path: Path, scratch: Path) -> None:
    """`make -j4`: four embedded clusters side by side, each job its own output."""
    env = env_with(scratch)
    jobs = [_start(i, tmp_path, env, "--workers", "2") for i in range(4)]
    _check_all(jobs, tmp_path)
    assert_nothing_left(scratch, tmp_path)


# -- on a cluster brought up over SSH (sshd on loopback) ---------------------------------


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackHost]:
    why = have_sshd()
    require(why is None, why or "")
    with LoopbackHost(tmp_path_factory.mktemp("sshd")) as h:
        yield h


def _cluster(host: LoopbackHost, tmp: Path, shared_fs: bool) -> Path:
    host.keys.known_hosts.write_text("")
    host.keys.trust("127.0.0.1", host.sshd.port)
    ini = write_ini(tmp / "cluster.ini", manager="127.0.0.1", keys=host.keys,
                    python=sys.executable, hosts=[f"root@127.0.0.1:{host.sshd.port}"],
                    workdir=tmp / "work")
    if not shared_fs:
        ini.write_text(ini.read_text().replace("shared_fs = yes", "shared_fs = no"))
    return ini


def _hs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hstream", *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("shared_fs", [True, False], ids=["shared_fs", "relay"])
def test_four_jobs_queued_on_one_cluster(host: LoopbackHost, tmp_path: Path, scratch: Path,
                                         shared_fs: bool) -> None:
    """Four `hstream jar-free` at once on one `cluster up`; with `shared_fs = no` the stdin
    spool reaches the tasks through the manager's relay like any input."""
    ini = _cluster(host, tmp_path, shared_fs)
    env = env_with(scratch, HSTREAM_CONFIG=str(ini))
    up = _hs(env, "cluster", "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        jobs = [_start(i, tmp_path, env) for i in range(4)]
        ids = _check_all(jobs, tmp_path)
        assert len(set(ids)) == 4, f"job ids collide: {ids}"
        log = (tmp_path / "work" / "manager" / "manager.log").read_text()
        assert ("relay read_split" in log) == (not shared_fs)
    finally:
        down = _hs(env, "cluster", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_left(scratch, tmp_path)


def test_ctrl_c_on_a_cluster_kills_the_job_and_leaves_nothing(host: LoopbackHost, tmp_path: Path,
                                                              scratch: Path) -> None:
    """On `cluster up`, Ctrl-C kills the job on the manager before hstream removes its
    private output directory: the job is killed, not left running into a removed directory."""
    ini = _cluster(host, tmp_path, shared_fs=True)
    env = env_with(scratch, HSTREAM_CONFIG=str(ini))
    up = _hs(env, "cluster", "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        interrupt_pipeline(tmp_path, scratch, env, "running the job")
        listed = _hs(env, "job", "list").stdout
        assert "0 queued or running" in listed and " killed " in listed, listed
    finally:
        down = _hs(env, "cluster", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_left(scratch, tmp_path)
