"""Fault tolerance end to end: real manager and worker processes, real `kill -9`, SIGSTOP.

Each test starts its own local cluster the way `hstream jar-free` does (4 workers,
heartbeats every 0.2 s, dead after 10 missed), submits jobs with the client, breaks
something at a chosen moment, and checks that the output is still the serial
pipeline's, that nothing is committed twice, and that no process is left behind.
`HSTREAM_CHAOS_TRIALS` sets the number of chaos trials (`make chaos`).
"""

from __future__ import annotations

import io
import os
import random
import re
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import APPS, assert_same_output, pairs, read_output, reference, run_hstream, wait_for

from hstream import protocol
from hstream.cluster.client import Client, Outcome
from hstream.cluster.localcluster import LocalCluster
from hstream.hadoop import streaming

APP = APPS / "crash_wc.py"
MAPPER, REDUCER = f"{APP} map", f"{APP} reduce"
HEARTBEAT, MISSED = 0.2, 10
CHAOS_TRIALS = int(os.environ.get("HSTREAM_CHAOS_TRIALS", "20"))
WORDS = [f"w{n:03d}" for n in range(150)]


# -- helpers ------------------------------------------------------------------------


@dataclass
class Run:
    """A job submitted on a background thread; `outcome` once it finished."""

    thread: threading.Thread
    outcome: Outcome | None = None
    error: BaseException | None = None

    def wait(self, timeout: float = 90) -> Outcome:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"job still running after {timeout} s"
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


@dataclass
class Cluster:
    local: LocalCluster
    tmp: Path

    @property
    def client(self) -> Client:
        return Client("127.0.0.1", self.local.port, self.local.secret)

    def worker_pid(self, worker_id: str) -> int:
        return self.local.procs[1 + int(worker_id.removeprefix("local"))].pid

    def status(self) -> dict[str, Any]:
        return self.local.status()

    def workers(self) -> dict[str, dict[str, Any]]:
        return {w["id"]: w for w in self.status()["workers"]}  # type: ignore[index]

    def job(self) -> dict[str, Any]:
        """The newest job's status (empty before the first is accepted)."""
        jobs = self.status()["jobs"]
        return jobs[-1] if jobs else {}  # type: ignore[index,return-value]

    def running(self, pattern: str = "") -> dict[str, str]:
        """attempt id -> worker id, for running attempts whose id contains `pattern`."""
        return {a: w["id"] for w in self.workers().values() for a in w["running"] if pattern in a}

    def log(self, name: str = "manager") -> str:
        path = Path(self.local.rundir) / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def submit(self, out: Path, *args: str, env: dict[str, str] | None = None,
               inputs: Path | None = None) -> Run:
        argv = ["-input", str(inputs or self.tmp / "in"), "-output", str(out), "-mapper", MAPPER,
                "-reducer", REDUCER, *args]
        for k, v in (env or {}).items():
            argv += ["-cmdenv", f"{k}={v}"]
        spec = streaming.parse(argv).spec
        run = Run(threading.Thread(daemon=True))

        def go() -> None:
            try:
                run.outcome = self.client.run(spec, out=io.StringIO())
            except BaseException as e:  # noqa: BLE001 - re-raised by wait()
                run.error = e

        run.thread = threading.Thread(target=go, daemon=True)
        run.thread.start()
        return run

    def kill_worker(self, worker_id: str) -> list[psutil.Process]:
        """kill -9 a worker and its task processes (they live in sessions of their own)."""
        proc = psutil.Process(self.worker_pid(worker_id))
        family = [proc, *proc.children(recursive=True)]
        for p in family:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.local.procs[1 + int(worker_id.removeprefix("local"))].wait()
        return family


class Impostor(threading.Thread):
    """Sends heartbeats for a worker every 20 ms, none of which may count: signed with a
    wrong secret, or signed right but with no session or an earlier registration's."""

    def __init__(self, c: Cluster, worker_id: str) -> None:
        super().__init__(daemon=True)
        manager = psutil.Process(c.local.procs[0].pid)
        self.port = next(s.laddr.port for s in manager.net_connections(kind="udp"))
        self.secret, self.worker_id = c.local.secret, worker_id
        self.stopped = threading.Event()
        self.sent = 0

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        seq = time.time_ns()
        while not self.stopped.wait(0.02):
            seq += 1
            for secret, session in ((protocol.new_secret(), ""), (self.secret, ""),
                                    (self.secret, "an-earlier-session")):
                sock.sendto(protocol.pack_heartbeat(secret, self.worker_id, seq, {"e": session}),
                            ("127.0.0.1", self.port))
            self.sent += 1
        sock.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join()


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    make_input(tmp_path / "in", files=8, lines=120, seed=1)
    make_input(tmp_path / "in4", files=4, lines=100, seed=4)
    with LocalCluster(workers=4, heartbeat_interval=HEARTBEAT, heartbeat_missed=MISSED) as local:
        yield Cluster(local, tmp_path)


def make_input(d: Path, files: int, lines: int, seed: int) -> None:
    rng = random.Random(seed)
    d.mkdir(parents=True)
    for f in range(files):
        (d / f"part{f}.txt").write_text("".join(
            " ".join(rng.choices(WORDS, k=rng.randint(1, 8))) + "\n" for _ in range(lines)))


_REFERENCE: dict[tuple[bytes, ...], bytes] = {}


def expected(c: Cluster, inputs: Path | None = None) -> bytes:
    """The serial pipeline's output (cached: many tests share inputs)."""
    files = sorted((inputs or c.tmp / "in").iterdir())
    key = tuple(f.read_bytes() for f in files)
    if key not in _REFERENCE:
        _REFERENCE[key] = reference(files, MAPPER, REDUCER, c.tmp)
    return _REFERENCE[key]


def assert_clean(out: Path) -> None:
    """The job published its output and left no staging directory or scratch behind."""
    assert (out / "_SUCCESS").exists()
    left = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.hstream-")]
    assert not left, f"staging left next to the output: {left}"
    assert not (out / "_temporary").exists()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(set(names)) and all(re.fullmatch(r"part-\d{5}|_SUCCESS", n)
                                               for n in names), names


def markers(d: Path) -> list[tuple[str, str]]:
    """(attempt id, worker) of every attempt that started, from crash_wc.py's marker files."""
    return [tuple(p.name.split("@")) for p in d.iterdir()]  # type: ignore[misc]


def task_of(attempt_id: str) -> str:
    return attempt_id.rsplit("_", 1)[0]


def gone(procs: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)


# -- no faults ------------------------------------------------------------------------


def test_job_count_every_task_runs_exactly_once_without_faults(cluster: Cluster) -> None:
    marks = cluster.tmp / "markers"
    marks.mkdir()
    out = cluster.tmp / "out"
    outcome = cluster.submit(out, "-D", "mapreduce.job.maps=8", "-numReduceTasks", "3",
                             env={"MARKERS": str(marks)}).wait()
    assert outcome.state == "succeeded", outcome.message
    assert_same_output(out, expected(cluster))
    assert_clean(out)
    started = [a for a, _ in markers(marks)]
    maps = [a for a in started if "_m_" in a]
    assert len(maps) >= 8 and len({task_of(a) for a in maps}) == len(maps), sorted(maps)
    assert all(a.endswith("_0") for a in started), "no task ran a second attempt"
    assert len([a for a in started if "_r_" in a]) == 3
    jc = outcome.counters["Job Counters"]
    assert jc["Launched map tasks"] == len(maps) and jc["Launched reduce tasks"] == 3


# -- chaos ---------------------------------------------------------------------------

PHASES = ("map", "shuffle", "reduce", "commit")


def _victim_for(c: Cluster, phase: str, rng: random.Random) -> str | None:
    """A worker to kill if `phase` is under way now, else None."""
    status = c.status()
    jobs = status["jobs"]
    if not jobs or jobs[-1]["state"] != "running":  # type: ignore[index]
        return None
    job = jobs[-1]  # type: ignore[index]
    running = {a: w["id"] for w in status["workers"] for a in w["running"] if w["alive"]}
    maps = [w for a, w in running.items() if "_m_" in a]
    reduces = [w for a, w in running.items() if "_r_" in a]
    if phase == "map" and maps:
        return rng.choice(sorted(maps))
    if phase == "shuffle" and job["map"] == 1.0 and reduces:
        # map outputs live on every worker: whoever dies, reducers lose some
        return rng.choice(sorted(w["id"] for w in status["workers"] if w["alive"]))
    if phase == "reduce" and reduces:
        return rng.choice(sorted(reduces))
    if phase == "commit":
        staging = next(c.tmp.glob(".out.hstream-*"), None)
        written = [p.parent.name for p in staging.glob("_temporary/*_r_*/part-*")
                   if p.stat().st_size] if staging else []
        writers = [running[a] for a in written if a in running]
        if writers:
            return rng.choice(sorted(writers))
    return None


@pytest.mark.parametrize("seed", range(CHAOS_TRIALS))
def test_chaos_kill_a_random_worker_in_a_random_phase(cluster: Cluster, seed: int) -> None:
    rng = random.Random(seed)
    phase = PHASES[seed % len(PHASES)]
    out = cluster.tmp / "out"
    run = cluster.submit(out, "-D", "mapreduce.job.maps=4", "-numReduceTasks", "2",
                         env={"DELAY_MAX": "0.3", "LINGER_MAX": "0.3"},
                         inputs=cluster.tmp / "in4")
    victim = wait_for(lambda: _victim_for(cluster, phase, rng), 30, f"the {phase} phase",
                      interval=0.02)
    time.sleep(rng.uniform(0, 0.15))  # a random moment within the phase
    family = cluster.kill_worker(str(victim))
    wait_for(lambda: gone(family), 2, "the killed worker's task processes to be gone")
    outcome = run.wait()
    assert outcome.state == "succeeded", outcome.message
    assert not cluster.workers()[str(victim)]["alive"]
    assert_same_output(out, expected(cluster, cluster.tmp / "in4"))
    assert_clean(out)


# -- crashing and hanging tasks ------------------------------------------------------------


@pytest.mark.parametrize("seed", [7, 8])
def test_crashing_and_sleeping_tasks_still_give_the_exact_output(cluster: Cluster,
                                                                 seed: int) -> None:
    marks = cluster.tmp / "markers"
    marks.mkdir()
    out = cluster.tmp / "out"
    outcome = cluster.submit(out, "-D", "mapreduce.job.maps=8", "-numReduceTasks", "3",
                             "-D", "mapreduce.map.maxattempts=12",
                             "-D", "mapreduce.reduce.maxattempts=12",
                             env={"CRASH_SEED": str(seed), "SLEEP_MAX": "1",
                                  "MARKERS": str(marks)}).wait()
    assert outcome.state == "succeeded", outcome.message
    assert_same_output(out, expected(cluster))
    assert_clean(out)
    failed = outcome.counters["Job Counters"]
    assert failed.get("Failed map tasks", 0) + failed.get("Failed reduce tasks", 0) > 0, \
        "the seed made some attempts crash"
    assert len(markers(marks)) > 11


def test_deterministic_failure_fails_the_job_with_one_clear_message(tmp_path: Path) -> None:
    make_input(tmp_path / "in", files=1, lines=20, seed=2)
    out = tmp_path / "out"
    started = time.monotonic()
    proc = run_hstream("jar-free", "-input", str(tmp_path / "in"), "-output", str(out),
                       "-mapper", MAPPER, "-reducer", REDUCER, "--workers", "3",
                       "-D", "mapreduce.map.maxattempts=3", "-D", "mapreduce.job.maps=1",
                       "-cmdenv", "FAIL_ALWAYS=bad record at offset 42", cwd=tmp_path, timeout=60)
    assert time.monotonic() - started < 60
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert re.search(r"task task_\d+_\d+_m_\d{6} \(map \d\) failed 3 times: "
                     r"mapper subprocess failed with code 3", err), err
    attempts = re.findall(r"attempt_\d+_\d+_m_\d{6}_(\d) on (local\d) \(127\.0\.0\.1\)", err)
    assert [n for n, _ in attempts] == ["0", "1", "2"], err
    assert len({w for _, w in attempts}) == 3, "each retry ran on another worker"
    assert "command: crash_wc.py map" in err and "exit status: 3" in err
    assert "fatal: bad record at offset 42" in err and "reading record 1" in err
    assert not out.exists()
    assert not list(tmp_path.glob(".out.hstream-*"))


def test_failed_job_does_not_disturb_the_next_in_the_queue(cluster: Cluster) -> None:
    bad, good = cluster.tmp / "bad", cluster.tmp / "good"
    first = cluster.submit(bad, "-D", "mapreduce.map.maxattempts=2",
                           env={"FAIL_ALWAYS": "no", "DELAY_MAX": "0.3"})
    wait_for(lambda: len(cluster.status()["jobs"]) == 1, 10, "the first job")
    second = cluster.submit(good, env={"DELAY_MAX": "0.1"})
    wait_for(lambda: len(cluster.status()["jobs"]) == 2, 10, "the second job")
    jobs = cluster.status()["jobs"]
    assert [j["state"] for j in jobs] in (["running", "queued"], ["failed", "running"],
                                          ["failed", "succeeded"])
    assert first.wait().state == "failed"
    assert second.wait().state == "succeeded"
    assert_same_output(good, expected(cluster))
    assert_clean(good)
    assert not bad.exists()
    log = cluster.log()
    ids = [j["id"] for j in jobs]
    assert log.index(f"job {ids[0]} finished: failed") < log.index(f"job {ids[1]} started")


def test_straggler_gets_a_backup_attempt_that_wins(cluster: Cluster) -> None:
    marks = cluster.tmp / "markers"
    marks.mkdir()
    out = cluster.tmp / "out"
    outcome = cluster.submit(out, "-D", "mapreduce.job.maps=4", "-D", "hstream.speculative.lag=1",
                             env={"MARKERS": str(marks),
                                  "HOLD": f"map:0:0:{cluster.tmp}/never"}).wait(60)
    assert outcome.state == "succeeded", outcome.message
    assert outcome.counters["Job Counters"]["Speculative map tasks won"] == 1
    assert outcome.counters["Job Counters"]["Killed map tasks"] == 1
    map0 = sorted((a, w) for a, w in markers(marks) if "_m_000000_" in a)
    assert [a[-1] for a, _ in map0] == ["0", "1"] and map0[0][1] != map0[1][1]
    assert_same_output(out, expected(cluster))
    assert_clean(out)


def test_hung_attempt_is_killed_after_the_task_timeout_and_retried(cluster: Cluster) -> None:
    marks = cluster.tmp / "markers"
    marks.mkdir()
    out = cluster.tmp / "out"
    started = time.monotonic()
    outcome = cluster.submit(out, "-D", "mapreduce.job.maps=4", "-D", "mapreduce.task.timeout=2500",
                             "-D", "mapreduce.map.speculative=false",
                             env={"MARKERS": str(marks), "HOLD": f"map:0:0:{cluster.tmp}/never"}
                             ).wait(60)
    assert outcome.state == "succeeded", outcome.message
    assert time.monotonic() - started < 30
    assert outcome.counters["Job Counters"]["Failed map tasks"] == 1
    assert sorted(a[-1] for a, _ in markers(marks) if "_m_000000_" in a) == ["0", "1"]
    assert re.search(r"attempt_\S+_m_000000_0 failed on local\d: timed out after 2.5 s",
                     cluster.log())
    assert_same_output(out, expected(cluster))
    assert_clean(out)


# -- lost work ----------------------------------------------------------------------------


def test_lost_map_output_reruns_exactly_the_maps_of_the_dead_worker(cluster: Cluster) -> None:
    marks, gate = cluster.tmp / "markers", cluster.tmp / "gate"
    marks.mkdir()
    out = cluster.tmp / "out"
    run = cluster.submit(out, "-D", "mapreduce.job.maps=8", "-numReduceTasks", "2",
                         "-D", "mapreduce.map.speculative=false",  # the held map is no straggler
                         # no reducer fetches before the loss (they would on slowstart)
                         "-D", "mapreduce.job.reduce.slowstart.completedmaps=1",
                         env={"MARKERS": str(marks), "HOLD": f"map:0:0:{gate}"})
    wait_for(lambda: len(markers(marks)) == 8 and
             list(cluster.running("_m_")) == [a for a, _ in markers(marks) if "_m_000000_0" in a],
             30, "every map but the held one to finish")
    holder = cluster.running("_m_000000_0")
    assert not cluster.running("_r_"), "reducers must not have started"
    by_worker: dict[str, set[str]] = {}
    for a, w in markers(marks):
        by_worker.setdefault(f"local{w.removeprefix('worker')}", set()).add(task_of(a))
    victim = next(w for w in sorted(by_worker) if w not in holder.values())
    lost = by_worker[victim]
    cluster.kill_worker(victim)
    wait_for(lambda: not cluster.workers()[victim]["alive"], 5, "the victim declared dead")
    wait_for(lambda: len(markers(marks)) == 8 + len(lost), 30, "the lost maps to run again")
    gate.touch()
    outcome = run.wait()
    assert outcome.state == "succeeded", outcome.message
    runs = Counter(task_of(a) for a, _ in markers(marks) if "_m_" in a)
    assert {t for t, n in runs.items() if n == 2} == lost, runs
    assert set(runs.values()) <= {1, 2}
    assert outcome.counters["Job Counters"]["Launched map tasks"] == 8 + len(lost)
    assert_same_output(out, expected(cluster))
    assert_clean(out)


def test_reducers_fetch_finished_maps_while_the_last_map_still_runs(cluster: Cluster) -> None:
    """Slowstart (Hadoop's default 0.05): reducers start while a map is still running, fetch
    what is done, hear of the held map when it finishes, and the output is the same."""
    marks, gate = cluster.tmp / "markers", cluster.tmp / "gate"
    marks.mkdir()
    out = cluster.tmp / "out"
    run = cluster.submit(out, "-D", "mapreduce.job.maps=8", "-numReduceTasks", "2",
                         "-D", "mapreduce.map.speculative=false",
                         env={"MARKERS": str(marks), "HOLD": f"map:0:0:{gate}"})
    wait_for(lambda: len(cluster.running("_r_")) == 2 and len(markers(marks)) == 8
             and list(cluster.running("_m_")) == [a for a, _ in markers(marks)
                                                  if "_m_000000_0" in a],
             30, "both reducers running while map 0 is held")
    gate.touch()
    outcome = run.wait()
    assert outcome.state == "succeeded", outcome.message
    assert outcome.counters["Job Counters"]["Launched reduce tasks"] == 2
    assert outcome.counters["Map-Reduce Framework"]["Shuffled Maps"] == 16
    assert_same_output(out, expected(cluster))
    assert_clean(out)


def test_a_killed_zygote_costs_its_runners_and_nothing_else(cluster: Cluster) -> None:
    """kill -9 of a worker's zygote (what forks its task runners): the runners it forked kill
    their sessions and run again, the worker starts later runners afresh, and the output is
    the same."""
    marks, gate = cluster.tmp / "markers", cluster.tmp / "gate"
    marks.mkdir()
    out = cluster.tmp / "out"
    run = cluster.submit(out, "-D", "mapreduce.job.maps=8", "-numReduceTasks", "2",
                         env={"MARKERS": str(marks), "HOLD": f"map:*:0:{gate}"})
    wait_for(lambda: len(markers(marks)) == 4, 30, "four first attempts held")
    victim = psutil.Process(cluster.local.procs[1].pid)  # worker0 (procs[0] is the manager)
    zygote = next(c for c in victim.children() if "hstream.task.zygote" in c.cmdline())
    forked = zygote.children()
    assert forked, "the held attempt's runner is the zygote's child"
    zygote.kill()
    killed = time.time()
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                             for p in [zygote, *forked]), 10, "its runner to end with it")
    gate.touch()
    outcome = run.wait()
    assert outcome.state == "succeeded", outcome.message
    assert_same_output(out, expected(cluster))
    assert_clean(out)
    later = [a for a, w in markers(marks)
             if w == "worker0" and (marks / f"{a}@{w}").stat().st_mtime > killed]
    if later:  # it ran more of the job: started afresh
        assert "starting it afresh" in cluster.log("worker0"), later


def test_suspended_worker_is_replaced_and_its_late_result_rejected(cluster: Cluster) -> None:
    marks, release0, release1 = cluster.tmp / "markers", cluster.tmp / "r0", cluster.tmp / "r1"
    marks.mkdir()
    out = cluster.tmp / "out"
    run = cluster.submit(out, "-D", "mapreduce.job.maps=4", "-numReduceTasks", "2",
                         "-D", "mapreduce.reduce.speculative=false",
                         env={"MARKERS": str(marks),
                              "HOLD": f"reduce:0:0:{release0},reduce:1:*:{release1}"})
    first = wait_for(lambda: cluster.running("_r_000000_0"), 30, "reduce 0's first attempt")
    (first_attempt, victim), = first.items()  # type: ignore[union-attr]
    # both reducers past their fetch (their commands started): held, not mid-shuffle
    wait_for(lambda: {task_of(a)[-8:] for a, _ in markers(marks) if "_r_" in a} ==
             {"r_000000", "r_000001"}, 30, "both reducers to start")
    os.kill(cluster.worker_pid(victim), signal.SIGSTOP)
    impostor = Impostor(cluster, victim)
    try:
        stopped = time.monotonic()
        impostor.start()  # forged and stale heartbeats on its behalf must not keep it alive
        release0.touch()  # its attempt (a process of its own) finishes while the worker sleeps
        wait_for(lambda: not cluster.workers()[victim]["alive"], 10,
                 "the stopped worker declared dead")
        detected = time.monotonic() - stopped
        assert HEARTBEAT * MISSED * 0.9 <= detected <= HEARTBEAT * MISSED + 3, detected
        assert impostor.sent > 10
        log = cluster.log()
        assert "heartbeat failed authentication" in log
        assert f"worker {victim}: heartbeat from another registration dropped" in log
        committed = re.compile(r"attempt (attempt_\S+_r_000000_\d+) committed part-00000")
        wait_for(lambda: committed.search(cluster.log()), 30, "reduce 0 re-run and committed")
    finally:
        impostor.stop()
        os.kill(cluster.worker_pid(victim), signal.SIGCONT)
    wait_for(lambda: cluster.workers()[victim]["alive"], 10, "the worker to re-register")
    release1.touch()
    outcome = run.wait()
    assert outcome.state == "succeeded", outcome.message
    log = cluster.log()
    winners = committed.findall(log)
    assert len(winners) == 1 and winners[0] != first_attempt, winners
    assert f"attempt {first_attempt} committed" not in log
    assert_same_output(out, expected(cluster))
    assert_clean(out)
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000", "part-00001"]
    assert sum(pairs(read_output(out)).values()) == sum(pairs(expected(cluster)).values())


def test_manager_killed_workers_and_tasks_exit_and_nothing_is_published(cluster: Cluster) -> None:
    out, marks = cluster.tmp / "out", cluster.tmp / "markers"
    marks.mkdir()
    run = cluster.submit(out, "-D", "mapreduce.job.maps=8",
                         env={"HOLD": f"map:*:*:{cluster.tmp}/never", "MARKERS": str(marks)})
    wait_for(lambda: len(markers(marks)) == 4, 30, "four mappers running")
    family = [p for proc in cluster.local.procs[1:]
              for p in [psutil.Process(proc.pid),
                        *psutil.Process(proc.pid).children(recursive=True)]]
    assert len(family) >= 4 * 3, "workers, task runners and mappers"
    os.kill(cluster.local.procs[0].pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: gone(family), 5, "workers and their tasks to exit")
    print(f"workers and tasks gone {time.monotonic() - killed:.2f} s after the manager died")
    with pytest.raises(Exception, match="lost the manager"):
        run.wait()
    assert not out.exists()


def test_frozen_manager_workers_give_up_kill_their_tasks_and_exit(cluster: Cluster) -> None:
    """No FIN arrives from a manager whose host vanished: its silence (no pings) is the sign."""
    marks = cluster.tmp / "markers"
    marks.mkdir()
    run = cluster.submit(cluster.tmp / "out", "-D", "mapreduce.job.maps=8",
                         env={"HOLD": f"map:*:*:{cluster.tmp}/never", "MARKERS": str(marks)})
    wait_for(lambda: len(markers(marks)) == 4, 30, "four mappers running")
    workers = [psutil.Process(p.pid) for p in cluster.local.procs[1:]]
    below = [c for w in workers for c in w.children(recursive=True)]
    zygotes = [c for w in workers for c in w.children() if "hstream.task.zygote" in c.cmdline()]
    tasks = [c for c in below if c not in zygotes]
    assert len(zygotes) == len(workers)
    manager = cluster.local.procs[0].pid
    os.kill(manager, signal.SIGSTOP)
    try:
        silence = 2 * HEARTBEAT * MISSED  # the worker's patience: twice the manager's
        frozen = time.monotonic()
        wait_for(lambda: gone(tasks), silence + 3, "the tasks to be killed")
        assert time.monotonic() - frozen >= silence * 0.9
        # re-registering cannot finish (the manager never answers the handshake): they leave
        wait_for(lambda: gone(workers + zygotes), 10 + 5, "the workers and zygotes to exit")
    finally:
        os.kill(manager, signal.SIGCONT)
    wait_for(lambda: not any(w["alive"] for w in cluster.workers().values()), 10,
             "the thawed manager to see its workers gone")
    assert cluster.job()["state"] == "running", "the job waits for workers to come back"
    assert run.thread.is_alive()
