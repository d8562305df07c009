"""Job history: every job leaves a record (attempts, stderr tails, byte rates, counters) that
`hstream job history / status / logs` read after it ended, and a terminal shows a live bar.

Real jobs on the embedded cluster (run as a user runs them, with $HSTREAM_HOME in the test's
directory) or on a LocalCluster driven from the test: a failed job, a job whose worker is
killed with `kill -9`, a job whose client (and so its manager) is killed.
"""

from __future__ import annotations

import io
import json
import os
import pty
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import APPS, ROOT, assert_same_output, reference, run_hstream, wait_for

from hstream.cluster import history
from hstream.cluster.client import Client, Outcome
from hstream.cluster.history import Rates
from hstream.cluster.localcluster import LocalCluster
from hstream.hadoop import streaming

MAPPER, REDUCER = f"{APPS / 'wc_map.py'}", f"{APPS / 'wc_reduce.py'}"
WORDS = [f"w{n:03d}" for n in range(200)]


def write_words(d: Path, files: int, lines: int, seed: int = 7) -> Path:
    rng = random.Random(seed)
    d.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        (d / f"part{f}.txt").write_text("".join(
            " ".join(rng.choices(WORDS, k=rng.randint(1, 9))) + "\n" for _ in range(lines)))
    return d


def script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def home_env(tmp: Path) -> dict[str, str]:
    return {"HSTREAM_HOME": str(tmp / "home")}


def hs(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_hstream(*args, env=home_env(tmp), cwd=tmp, timeout=timeout)


def job_id_of(proc: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r"Running job: (job_\S+)", proc.stderr)
    assert found, proc.stderr
    return found.group(1)


def record_of(tmp: Path, job_id: str) -> history.JobRecord:
    record = history.load_job(str(tmp / "home" / "history"), job_id)
    assert record is not None, f"no history for {job_id}"
    return record


# -- a failed job ------------------------------------------------------------------------


FAILING = """#!/bin/sh
echo "starting $mapreduce_task_attempt_id" >&2
echo '<script>alert("boom")</script> boom: cannot parse line 1' >&2
exit 3
"""


@pytest.fixture(scope="module")
def failed_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A job whose every map attempt fails, run by `hstream jar-free` as a user would."""
    tmp = tmp_path_factory.mktemp("failed")
    write_words(tmp / "in", files=2, lines=50)
    mapper = script(tmp / "fail.sh", FAILING)
    proc = hs(tmp, "jar-free", "--workers", "2", "-D", "mapreduce.map.maxattempts=2",
              "-input", str(tmp / "in"), "-output", str(tmp / "out"), "-mapper", mapper,
              "-reducer", "cat")
    assert proc.returncode == 1, proc.stderr
    job_id = job_id_of(proc)
    tracking = re.search(r"The url to track the job: (http://127\.0\.0\.1:\d+/job/(\S+)"
                         r"\?token=[0-9a-f]{32})", proc.stderr)
    assert tracking and tracking.group(2) == job_id, proc.stderr
    return tmp, job_id


def test_a_failed_job_leaves_its_record(failed_job: tuple[Path, str]) -> None:
    tmp, job_id = failed_job
    d = tmp / "home" / "history" / job_id
    assert sorted(p.name for p in d.iterdir()) == ["record.json", "stderr", "summary.json"]
    record = record_of(tmp, job_id)
    assert record.state == "failed" and "failed 2 times" in record.message
    failed = [a for a in record.attempts.values() if a.outcome == "failed"]
    assert len(failed) >= 2
    for a in failed:
        assert a.exit_status == 3 and a.host == "127.0.0.1" and a.worker.startswith("local")
        assert a.end >= a.start >= record.submitted and "code 3" in a.error
        kept = (d / "stderr" / a.id).read_text()
        assert kept == f'starting {a.id}\n<script>alert("boom")</script> boom: cannot ' \
                       "parse line 1\n"
    assert record.spec["conf"]["mapreduce.map.maxattempts"] == "2"


def test_history_lists_jobs_newest_first(failed_job: tuple[Path, str]) -> None:
    tmp, job_id = failed_job
    listed = hs(tmp, "job", "history")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split()[:2] == ["JOB", "STATE"]
    assert rows[1].split()[:2] == [job_id, "failed"], listed.stdout


def test_status_of_a_finished_job_comes_from_the_history(failed_job: tuple[Path, str]) -> None:
    tmp, job_id = failed_job
    status = hs(tmp, "job", "status", job_id)
    assert status.returncode == 0, status.stderr
    assert "state: failed" in status.stdout and f"id: {job_id}" in status.stdout
    assert re.search(r"attempts: \d+ \(\d+ failed", status.stdout), status.stdout
    unknown = hs(tmp, "job", "status", "job_1_0001")
    assert unknown.returncode != 0
    assert unknown.stderr.count("\n") == 1 and "no such job: job_1_0001" in unknown.stderr


def test_logs_of_a_failed_job_show_failed_attempts_stderr_first(
        failed_job: tuple[Path, str]) -> None:
    tmp, job_id = failed_job
    logs = hs(tmp, "job", "logs", job_id)
    assert logs.returncode == 0, logs.stderr
    out = logs.stdout
    assert out.startswith("task task_"), out  # the job's message first
    heads = [line for line in out.splitlines() if line.startswith("==> ")]
    assert heads and all(": failed, exit status 3" in h for h in heads), heads
    first = out.index(heads[0])
    assert out.index("boom: cannot parse line 1", first) < out.index("Counters:")
    attempt = heads[0].split()[1]
    one = hs(tmp, "job", "logs", job_id, attempt)
    assert one.returncode == 0 and one.stdout.count("==> ") == 1
    assert f"starting {attempt}" in one.stdout and "Counters" not in one.stdout
    task = "task_" + attempt.removeprefix("attempt_").rsplit("_", 1)[0]
    both = hs(tmp, "job", "logs", job_id, task)
    assert both.returncode == 0 and both.stdout.count("==> ") == 2, both.stdout
    bad = hs(tmp, "job", "logs", job_id, "attempt_nonsense")
    assert bad.returncode != 0 and "has no task or attempt attempt_nonsense" in bad.stderr


# -- a job that succeeds: rates, stderr tails, counters ---------------------------------


SLOW_MAP = """#!/usr/bin/env python3
import sys, time
for i, line in enumerate(sys.stdin):
    if i % 1000 == 0:
        time.sleep(0.25)
    for word in line.split():
        print(word + "\\t1")
for i in range(3000):
    sys.stderr.write("noise %06d %s\\n" % (i, "x" * 90))
sys.stderr.write("the last line of stderr\\n")
"""


def test_record_has_rates_stderr_tails_and_counters(tmp_path: Path) -> None:
    inputs = write_words(tmp_path / "in", files=2, lines=8000)
    mapper = script(tmp_path / "slow_map.py", SLOW_MAP)
    proc = hs(tmp_path, "jar-free", "--workers", "2", "-numReduceTasks", "2",
              "-input", str(inputs), "-output", str(tmp_path / "out"), "-mapper", mapper,
              "-reducer", REDUCER)
    assert proc.returncode == 0, proc.stderr
    assert_same_output(tmp_path / "out", reference(sorted(inputs.iterdir()), mapper, REDUCER,
                                                   tmp_path))
    record = record_of(tmp_path, job_id_of(proc))
    assert record.state == "succeeded" and record.finished > record.submitted
    assert record.spec["mapper"] == "slow_map.py" and record.output == str(tmp_path / "out")
    maps = [a for a in record.attempts.values() if a.kind == "map"]
    assert maps and all(a.outcome == "succeeded" and a.read > 0 for a in maps)
    assert sum(a.kind == "reduce" for a in record.attempts.values()) == 2
    c = record.counters
    rates = record.rates
    for series, total in (("input", c["File Input Format Counters"]["Bytes Read"]),
                          ("shuffle", c["Map-Reduce Framework"]["Reduce shuffle bytes"]),
                          ("output", c["File Output Format Counters"]["Bytes Written"])):
        assert sum(getattr(rates, series)) == pytest.approx(total, abs=1), series
    # Byte counts arrive with progress reports while maps run, not only at their end.
    assert sum(v > 0 for v in rates.input) >= 2, rates.input
    for a in maps:  # 300 KB of stderr: the last 64 KiB are kept
        kept = (tmp_path / "home" / "history" / record.id / "stderr" / a.id).read_bytes()
        assert 60_000 < len(kept) <= 64 << 10 and kept.endswith(b"the last line of stderr\n")


# -- a worker killed mid-job ---------------------------------------------------------------


BLOCKING = """#!/bin/sh
while [ ! -e {release} ]; do sleep 0.05; done
echo "mapped by $mapreduce_task_attempt_id" >&2
exec {mapper}
"""


def _kill_worker(cluster: LocalCluster, index: int) -> None:
    """kill -9 a worker and its attempts (each in a session of its own)."""
    proc = psutil.Process(cluster.procs[1 + index].pid)
    for p in [proc, *proc.children(recursive=True)]:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    cluster.procs[1 + index].wait()


def test_a_killed_workers_attempts_are_recorded_as_lost(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HSTREAM_HOME", str(tmp_path / "home"))
    inputs = write_words(tmp_path / "in", files=4, lines=40)
    release = tmp_path / "release"
    mapper = script(tmp_path / "block.sh", BLOCKING.format(release=release, mapper=MAPPER))
    spec = streaming.parse(["-input", str(inputs), "-output", str(tmp_path / "out"),
                            "-mapper", mapper, "-reducer", REDUCER], cwd=str(tmp_path)).spec
    outcome: list[Outcome] = []
    with LocalCluster(workers=2, heartbeat_interval=0.2) as cluster:
        client = Client("127.0.0.1", cluster.port, cluster.secret)
        runner = threading.Thread(target=lambda: outcome.append(client.run(spec, io.StringIO())))
        runner.start()
        try:
            def busy() -> bool:
                return all(w["running"] for w in cluster.status()["workers"])
            wait_for(busy, 60, "both workers to run an attempt")
            _kill_worker(cluster, 1)
            wait_for(lambda: not all(w["alive"] for w in cluster.status()["workers"]), 30,
                     "the killed worker to be declared dead")
        finally:
            release.touch()
            runner.join(120)
    assert outcome and outcome[0].state == "succeeded"
    assert_same_output(tmp_path / "out", reference(sorted(inputs.iterdir()), mapper, REDUCER,
                                                   tmp_path))
    record = record_of(tmp_path, outcome[0].job_id)
    lost = [a for a in record.attempts.values() if a.outcome == "lost"]
    assert lost and all(a.worker == "local1" and "worker lost" in a.error for a in lost)
    for a in lost:  # each lost task ran again and succeeded on the survivor
        again = [b for b in record.attempts.values() if b.task == a.task and b is not a]
        assert any(b.outcome == "succeeded" and b.worker == "local0" for b in again)
    logs = hs(tmp_path, "job", "logs", record.id)
    assert logs.returncode == 0 and ": lost: worker lost" not in logs.stdout  # no stderr shown
    task = hs(tmp_path, "job", "logs", record.id, lost[0].task)
    assert f"==> {lost[0].id} " in task.stdout and "lost" in task.stdout, task.stdout
    assert "mapped by" in task.stdout  # the attempt that ran again, with its stderr


# -- the manager dies with its client ----------------------------------------------------------


def test_a_job_whose_manager_died_is_shown_lost(tmp_path: Path) -> None:
    inputs = write_words(tmp_path / "in", files=2, lines=20)
    release = tmp_path / "release"  # never made: the job hangs until its client is killed
    mapper = script(tmp_path / "block.sh", BLOCKING.format(release=release, mapper=MAPPER))
    env = {**os.environ, **home_env(tmp_path), "PYTHONPATH": str(ROOT)}
    client = subprocess.Popen([sys.executable, "-m", "hstream", "jar-free", "--workers", "1",
                               "-input", str(inputs), "-output", str(tmp_path / "out"),
                               "-mapper", mapper, "-reducer", REDUCER],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    root = tmp_path / "home" / "history"

    def started() -> list[Path]:
        return [p for p in root.glob("job_*/events.jsonl") if '"e":"started"' in p.read_text()]
    try:
        log = wait_for(started, 60, "an attempt to start")
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    job_id = log[0].parent.name  # type: ignore[index]
    wait_for(lambda: not history.manager_alive(*_manager_of(root, job_id)), 30,
             "the manager to exit after its client")
    status = hs(tmp_path, "job", "status", job_id)
    assert status.returncode == 0 and "state: lost" in status.stdout, status.stdout
    assert "its manager stopped" in status.stdout
    listed = hs(tmp_path, "job", "history")
    assert re.search(rf"{job_id}\s+lost", listed.stdout), listed.stdout


def _manager_of(root: Path, job_id: str) -> tuple[str, int]:
    summary = json.loads((root / job_id / "summary.json").read_text())
    return str(summary["host"]), int(summary["pid"])


# -- bounds -------------------------------------------------------------------------------------


def test_history_keeps_the_last_n_jobs(tmp_path: Path) -> None:
    inputs = write_words(tmp_path / "in", files=1, lines=10)
    ids = []
    for n in range(3):
        proc = run_hstream("jar-free", "--workers", "1", "-input", str(inputs), "-output",
                           str(tmp_path / f"out{n}"), "-mapper", "cat", "-reducer", "NONE",
                           env={**home_env(tmp_path), "HSTREAM_HISTORY_MAX_JOBS": "2"},
                           cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        ids.append(job_id_of(proc))
    kept = sorted(p.name for p in (tmp_path / "home" / "history").iterdir())
    assert kept == sorted(ids[1:])


def test_prune_keeps_within_the_byte_budget(tmp_path: Path) -> None:
    root = tmp_path / "history"
    for n in range(5):  # 5 ended jobs of 10 kB, one running
        d = root / f"job_1_{n:04d}"
        d.mkdir(parents=True)
        summary = history.Summary(d.name, "j", "succeeded", 100.0 + n, 101.0 + n, 1, 0, 1, 0,
                                  "/o", "elsewhere", 1, 10_000)
        (d / "summary.json").write_text(json.dumps(vars(summary)))
    running = root / "job_1_9999"
    running.mkdir()
    (running / "summary.json").write_text(json.dumps(vars(history.Summary(
        running.name, "j", "running", 50.0, 0.0, 1, 0, 0, 0, "/o", "elsewhere", 1))))
    history.prune(str(root), max_jobs=100, max_bytes=25_000, keep=set())
    assert sorted(p.name for p in root.iterdir()) == ["job_1_0003", "job_1_0004", "job_1_9999"]
    history.prune(str(root), max_jobs=1, max_bytes=1, keep=set())
    assert sorted(p.name for p in root.iterdir()) == ["job_1_0004", "job_1_9999"]


def test_rates_spread_bytes_over_time_and_coarsen() -> None:
    r = Rates()
    r.add("input", 0.5, 2.5, 400.0)  # 100 B in [0.5, 1), 200 in [1, 2), 100 in [2, 2.5)
    assert r.input == [100.0, 200.0, 100.0] and r.per_second("input") == r.input
    r.add("output", 3.0, 3.0, 7.0)
    assert r.output == [0, 0, 0, 7.0]
    r.add("shuffle", 0, history.MAX_BUCKETS * 1.5, 3.0 * history.MAX_BUCKETS)
    assert r.step == 2.0 and len(r.shuffle) <= history.MAX_BUCKETS
    assert sum(r.shuffle) == pytest.approx(3.0 * history.MAX_BUCKETS)
    assert r.per_second("shuffle")[0] == pytest.approx(2.0)
    assert sum(r.input) == pytest.approx(400.0) and r.input[0] == 300.0


# -- progress on a terminal ---------------------------------------------------------------------


def _on_a_terminal(tmp: Path, *args: str) -> tuple[int, str]:
    """`hstream ARGS` with stderr on a pseudo-terminal; (exit status, what the terminal got)."""
    master, slave = pty.openpty()
    env = {**os.environ, **home_env(tmp), "PYTHONPATH": str(ROOT)}
    env.pop("HSTREAM_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "hstream", *args], cwd=tmp, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    got = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # EIO: every writer closed the terminal
            break
        got += chunk
        if not chunk and proc.poll() is not None and not ready:
            break
    os.close(master)
    return proc.wait(timeout=30), got.decode(errors="replace")


def test_a_terminal_gets_a_live_bar_and_a_pipe_gets_hadoops_lines(tmp_path: Path) -> None:
    inputs = write_words(tmp_path / "in", files=2, lines=3000)
    slow = script(tmp_path / "slow_map.py", SLOW_MAP)
    mapper = script(tmp_path / "flaky.sh", f"""#!/bin/sh
case "$mapreduce_task_attempt_id" in *_m_000000_0) exit 7;; esac
exec {slow}
""")
    job = ["jar-free", "--workers", "2", "-input", str(inputs), "-mapper", mapper,
           "-reducer", REDUCER]
    status, screen = _on_a_terminal(tmp_path, *job, "-output", str(tmp_path / "tty"))
    assert status == 0, screen
    bars = re.findall(r"\r map \[[#.]{20}\] +(\d+)%  reduce \[[#.]{20}\] +(\d+)%  "
                      r"\d+:\d\d", screen)
    assert len(bars) >= 2 and bars[-1] == ("100", "100"), screen
    assert "  1 failed attempt\x1b[K" in screen  # map 0's first attempt
    assert "The url to track the job: http://127.0.0.1:" in screen
    assert not re.search(r"^ map \d+% reduce \d+%", screen, re.M)
    status, verbose = _on_a_terminal(tmp_path, *job, "-verbose", "-output", str(tmp_path / "v"))
    assert status == 0 and re.search(r"^ map 100% reduce 100%\r?$", verbose, re.M), verbose
    piped = hs(tmp_path, *job, "-output", str(tmp_path / "piped"))
    assert piped.returncode == 0 and "\r" not in piped.stderr
    assert re.search(r"^ map 100% reduce 100%$", piped.stderr, re.M), piped.stderr


def test_progress_bar_counts_failed_attempts() -> None:
    from hstream.cli.progress import render
    assert render(0.5, 0.0, 75, 0) == (" map [##########..........]  50%  reduce "
                                       "[....................]   0%  1:15")
    assert render(1.0, 1.0, 5, 2).endswith("0:05  2 failed attempts")


def test_a_disk_that_cannot_be_written_costs_the_record_not_the_job(tmp_path: Path) -> None:
    """The hooks as the manager calls them, driven by the real scheduler; the history's
    directory cannot be made (a file is in the way), yet every event is folded in memory."""
    from hstream.cluster.scheduler import Scheduler
    from hstream.cluster.state import Assign
    from hstream.job import JobSpec, Split, TaskResult

    (tmp_path / "file").write_text("")
    kept = history.History(history.HistoryConfig(str(tmp_path / "file" / "history")))
    s = Scheduler(10.0)
    s.add_worker("w1", "host1", 1, 1, 0.0)
    actions = s.submit("job_1_0001", JobSpec("j", ["/in"], "/out", "cat", None, num_reduces=0),
                       [Split("/in", 0, 10)], "/stage", 0.0)
    kept.job_submitted(s.jobs["job_1_0001"])
    spec = next(a for a in actions if isinstance(a, Assign)).spec
    kept.attempt_started(spec, s)
    kept.attempt_progress(spec.attempt_id, {"progress": 0.5, "status": "half", "bytes": [4, 0, 0]})
    result = TaskResult(ok=True, counters={"File Input Format Counters": {"Bytes Read": 10}})
    kept.attempt_done(spec.attempt_id, result, "warning: x\n")
    s.attempt_finished(spec.attempt_id, result, 1.0)
    kept.job_finished(s.jobs["job_1_0001"])
    record = wait_for(lambda: (r := kept.job("job_1_0001")) and r.state == "succeeded" and r,
                      10, "the job's end in the record")
    assert isinstance(record, history.JobRecord)
    a = record.attempts[spec.attempt_id]
    assert (a.outcome, a.worker, a.host, a.status, a.read) == ("succeeded", "w1", "host1",
                                                               "half", 10)
    assert sum(record.rates.input) == pytest.approx(10)
    kept.close()
    assert not kept._thread.is_alive()
