"""Bad input gets one clear line naming the thing, Hadoop's exit status, no traceback, and
nothing created; a failing job or Ctrl-C leaves no output directory and no process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import APPS, run_hstream, wait_for

WC_MAP = str(APPS / "wc_map.py")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("hello world\n")
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess[str], status: int,
                          *needles: str) -> None:
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("hstream:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_input(tmp_path: Path) -> None:
    proc = run_hstream("jar-free", "-input", str(tmp_path / "nope"), "-output",
                       str(tmp_path / "out"), "-mapper", "cat", cwd=tmp_path)
    assert_one_line_error(proc, 5, "input path does not exist", "nope")
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_untouched(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(out), "-mapper", "cat",
                       cwd=tmp_path)
    assert_one_line_error(proc, 4, "output directory already exists", str(out))
    assert sorted(os.listdir(out)) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("option", ["-mapper", "-reducer", "-combiner"])
def test_command_not_found(tmp_path: Path, data: Path, option: str) -> None:
    args = {"-mapper": "cat", "-reducer": "cat", option: "no-such-program-xyz"}
    flat = [w for kv in args.items() for w in kv]
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(tmp_path / "out"), *flat,
                       cwd=tmp_path)
    assert_one_line_error(proc, 3, option.lstrip("-"), "not found", "no-such-program-xyz")
    assert not (tmp_path / "out").exists()


def test_mapper_without_execute_bit_runs_and_stays_as_it_was(tmp_path: Path, data: Path) -> None:
    """As on Hadoop, which makes a relative program executable: the task's copy, never the
    user's file."""
    script = tmp_path / "map.py"
    script.write_text("#!/usr/bin/env python3\nprint('x')\n")
    script.chmod(0o644)
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(tmp_path / "out"),
                       "-mapper", str(script), "-reducer", "NONE", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "part-00000").read_bytes() == b"x\t\n"
    assert script.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("args,status,needle", [
    (["-bogus", "x"], 1, "unknown option: -bogus"),  # StreamJob's usage errors: exit 1
    (["--frobnicate"], 1, "unknown option: --frobnicate"),
    (["-numReduceTasks", "two"], 1, "-numReduceTasks must be a whole number"),
    (["-D", "mapreduce.made.up=1"], 3, "unknown property: mapreduce.made.up"),
    (["-D", "nokey"], 3, "property must be KEY=VALUE"),
])
def test_bad_options(tmp_path: Path, data: Path, args: list[str], status: int,
                     needle: str) -> None:
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(tmp_path / "out"),
                       "-mapper", "cat", *args, cwd=tmp_path)
    assert_one_line_error(proc, status, needle)
    assert not (tmp_path / "out").exists()


def test_failing_mapper_fails_the_job_with_its_stderr(tmp_path: Path, data: Path) -> None:
    mapper = tmp_path / "boom.sh"
    mapper.write_text("#!/bin/sh\necho 'something broke: disk on fire' >&2\nexit 3\n")
    mapper.chmod(0o755)
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-D", "mapreduce.map.maxattempts=2", "-input", str(data),
                       "-output", str(out), "-mapper", str(mapper), "-reducer", "cat",
                       cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"task task_\d+_\d+_m_00000\d \(map \d\) failed 2 times", proc.stderr)
    assert "command: boom.sh" in proc.stderr
    assert "exit status: 3" in proc.stderr
    assert "something broke: disk on fire" in proc.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.hstream")]


def start_slow_job(tmp_path: Path) -> subprocess.Popen[str]:
    """`hstream jar-free` with a mapper that takes a second a line: a job to interrupt."""
    data = tmp_path / "in.txt"
    data.write_text("".join(f"line {i}\n" for i in range(100)))
    mapper = tmp_path / "slow.sh"
    mapper.write_text("#!/bin/sh\nwhile read line; do echo \"$line\"; sleep 1; done\n")
    mapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "HSTREAM_CONFIG"}
    return subprocess.Popen([sys.executable, "-m", "hstream", "jar-free", "-input", str(data),
                             "-output", str(tmp_path / "out"), "-mapper", str(mapper),
                             "-reducer", "cat"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_stops_the_job_and_leaves_nothing(tmp_path: Path) -> None:
    proc = start_slow_job(tmp_path)
    assert proc.stderr is not None
    wait_for(lambda: "Running job" in proc.stderr.readline(), 30, "the job to start")
    wait_for(lambda: list(tmp_path.glob(".out.hstream-*")), 10, "the job's staging directory")
    proc.send_signal(signal.SIGINT)
    try:
        status = proc.wait(timeout=30)
    finally:
        proc.kill()
    assert status == 130
    assert not (tmp_path / "out").exists()
    wait_for(lambda: not list(tmp_path.glob(".out.hstream-*")), 10, "staging to be removed")


def test_manager_killed_mid_job_leaves_no_output_and_no_staging(tmp_path: Path) -> None:
    import psutil

    proc = start_slow_job(tmp_path)
    try:
        wait_for(lambda: list(tmp_path.glob(".out.hstream-*")), 30, "the job's staging directory")
        managers = [p for p in psutil.Process(proc.pid).children()
                    if "manager" in p.cmdline()]
        assert len(managers) == 1
        managers[0].kill()
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.hstream-*"))
