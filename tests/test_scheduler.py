"""The scheduler's state machine, driven by events and a fake clock: no sockets, no sleeps.

Each test plays a story (workers register, attempts start, fail, hang, die) and checks
the actions the scheduler answers with, the way Hadoop's MRApp tests drive the AM.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

from hstream import protocol
from hstream.cluster.scheduler import DoneTask, HeldOutput, Scheduler
from hstream.cluster.state import (
    Action,
    Assign,
    DropWorker,
    Heartbeat,
    JobFinished,
    JobState,
    Kill,
    Sources,
    TaskState,
)
from hstream.errors import ProtocolError
from hstream.job import JobSpec, Split, TaskResult

TIMEOUT = 10.0


@dataclass
class Sim:
    """A scheduler, a fake clock, and a record of every action it answered with."""

    workers: int = 3
    slots: int = 1
    s: Scheduler = field(init=False)
    now: float = 0.0
    actions: list[Action] = field(default_factory=list)
    seq: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.s = Scheduler(TIMEOUT)
        for i in range(self.workers):
            self.add_worker(f"w{i}")

    def add_worker(self, worker_id: str, session: str | None = None) -> list[Action]:
        n = int(worker_id[1:]) if worker_id[1:].isdigit() else 9
        return self.do(self.s.add_worker(worker_id, f"host{n}", 7000 + n, self.slots, self.now,
                                         session or f"{worker_id}-s"))

    def do(self, actions: list[Action]) -> list[Action]:
        self.actions += actions
        for job in self.s.jobs.values():  # the done counts the scheduler keeps, against a walk
            walked = Counter(t.kind for t in job.tasks if t.state is TaskState.DONE)
            assert job.done == {"map": walked["map"], "reduce": walked["reduce"]}, job.id
        return actions

    def submit(self, job_id: str = "job_1_0001", maps: int = 4, reduces: int = 2,
               mapper: str = "./map.py", **conf: str) -> str:
        spec = JobSpec(name="t", inputs=["in"], output="out", mapper=mapper,
                       reducer="./reduce.py" if reduces else None, num_reduces=reduces,
                       conf=dict(conf))
        splits = [Split(f"in/{i}", 0, 100) for i in range(maps)]
        self.do(self.s.submit(job_id, spec, splits, f"/stage/{job_id}", self.now))
        return job_id

    def advance(self, seconds: float, heartbeats: bool = True) -> list[Action]:
        """Let time pass in small steps, live workers heartbeating, ticking as the manager does."""
        out: list[Action] = []
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = min(end, self.now + 0.5)
            if heartbeats:
                for w in self.s.workers.values():
                    if w.alive:
                        self.beat(w.id)
            out += self.do(self.s.tick(self.now))
        return out

    def beat(self, worker_id: str, session: str | None = None, seq: int | None = None) -> Heartbeat:
        if seq is None:
            seq = self.seq.get(worker_id, 0) + 1
            self.seq[worker_id] = seq
        w = self.s.workers[worker_id]
        return self.s.heartbeat(worker_id, seq, self.now, w.session if session is None else session)

    def running(self, kind: str | None = None) -> dict[str, str]:
        """attempt id -> worker id, of every running attempt."""
        out = {}
        for job in self.s.jobs.values():
            for t in job.tasks:
                if kind is None or t.kind == kind:
                    out.update({a.id: a.worker_id for a in t.attempts.values()})
        return out

    def finish(self, attempt_id: str, ok: bool = True, worker_id: str | None = None,
               **result: object) -> list[Action]:
        worker_id = worker_id or self.running()[attempt_id]
        res = TaskResult(ok=ok, output_file="part-00000" if ok else None, **result)  # type: ignore[arg-type]
        return self.do(self.s.attempt_finished(attempt_id, res, self.now, worker_id))

    def finish_all(self, kind: str) -> None:
        while self.running(kind):
            for attempt_id in list(self.running(kind)):
                self.now += 0.1
                self.finish(attempt_id)

    def assigns(self) -> list[Assign]:
        return [a for a in self.actions if isinstance(a, Assign)]

    def finished(self) -> list[JobFinished]:
        return [a for a in self.actions if isinstance(a, JobFinished)]


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions]


# -- heartbeats and failure detection --------------------------------------------------


def test_heartbeats_keep_a_worker_alive_and_silence_kills_it() -> None:
    sim = Sim(workers=2)
    assert sim.advance(30) == []
    assert all(w.alive for w in sim.s.workers.values())
    sim.seq["w1"] = 10**6  # w1 goes on beating, w0 falls silent
    for _ in range(int(TIMEOUT / 0.5)):
        sim.now += 0.5
        sim.beat("w1")
        assert not [a for a in sim.do(sim.s.tick(sim.now)) if isinstance(a, DropWorker)]
    sim.now += 0.6
    sim.beat("w1")
    dropped = [a for a in sim.do(sim.s.tick(sim.now)) if isinstance(a, DropWorker)]
    assert [d.worker_id for d in dropped] == ["w0"]
    assert sim.s.workers["w1"].alive


def test_replayed_or_reordered_heartbeats_do_not_count() -> None:
    sim = Sim(workers=1)
    assert sim.beat("w0", seq=5) is Heartbeat.OK
    sim.now = 9.0
    assert sim.beat("w0", seq=5) is Heartbeat.STALE  # replay
    assert sim.beat("w0", seq=4) is Heartbeat.STALE  # reordered
    sim.now = 10.5
    sim.do(sim.s.tick(sim.now))
    assert not sim.s.workers["w0"].alive, "replays must not have kept it alive"


def test_heartbeat_from_an_earlier_registration_does_not_count() -> None:
    sim = Sim(workers=1)
    sim.beat("w0", seq=100)
    sim.add_worker("w0", session="second-life")  # re-registered: new session
    sim.now = 5.0
    assert sim.beat("w0", session="w0-s", seq=101) is Heartbeat.STALE
    assert sim.s.workers["w0"].last_heartbeat == 0.0
    assert sim.beat("w0", seq=1) is Heartbeat.OK  # its new life's sequence starts anywhere


def test_late_heartbeat_from_a_dead_worker_asks_it_to_reregister() -> None:
    sim = Sim(workers=2)
    sim.submit(maps=2, reduces=0)
    lost = sim.s.workers["w0"].running.copy()
    sim.s.workers["w0"].last_heartbeat = -100
    sim.do(sim.s.tick(sim.now))
    assert not sim.s.workers["w0"].alive
    assert sim.beat("w0", seq=50) is Heartbeat.REREGISTER
    assert sim.beat("w0", seq=50) is Heartbeat.STALE  # its replay is just stale
    assert not sim.s.workers["w0"].alive, "a late heartbeat never revives a dead worker"
    assert sim.s.heartbeat("nobody", 1, sim.now, "") is Heartbeat.REREGISTER
    # its old attempts stay dead: a late report is ignored
    for attempt_id in lost:
        assert sim.finish(attempt_id, worker_id="w0") == []


def test_forged_or_tampered_heartbeat_datagrams_are_rejected() -> None:
    secret = protocol.new_secret()
    datagram = protocol.pack_heartbeat(secret, "w0", 7, {"e": "s"})
    assert protocol.unpack_heartbeat(secret, datagram)["s"] == 7
    with pytest.raises(ProtocolError):
        protocol.unpack_heartbeat(protocol.new_secret(), datagram)
    with pytest.raises(ProtocolError):
        protocol.unpack_heartbeat(secret, datagram.replace(b'"s":7', b'"s":9'))
    with pytest.raises(ProtocolError):
        protocol.unpack_heartbeat(secret, b"short")


# -- re-execution -------------------------------------------------------------------


def test_dead_workers_running_attempts_and_needed_map_outputs_run_again() -> None:
    sim = Sim(workers=2, slots=2)
    sim.submit(maps=4, reduces=2)
    sim.finish_all("map")
    on_w0 = {t.index for t in sim.s.jobs["job_1_0001"].maps if t.done_worker == "w0"}
    assert on_w0 and len(sim.running("reduce")) == 2
    before = len(sim.assigns())
    sim.do(sim.s.worker_lost("w0", "connection lost", sim.now))
    job = sim.s.jobs["job_1_0001"]
    assert all(job.maps[i].state is not TaskState.DONE for i in on_w0)
    while sim.running():
        sim.finish_all("map")
        sim.finish_all("reduce")
    assert sim.finished()[-1].state is JobState.SUCCEEDED
    rerun = sim.assigns()[before:]
    assert sorted(a.spec.index for a in rerun if a.spec.kind == "map") == sorted(on_w0), \
        "exactly the lost maps ran again, once each"
    assert all(a.worker_id == "w1" for a in rerun)


def test_a_task_that_waits_again_is_placed_though_later_ones_were_placed_since() -> None:
    """Placement resumes where the last one stopped (a job of thousands of maps is not walked
    from the first map at every free slot), and a task put back to wait below that point, a
    lost worker's here, is found again."""
    sim = Sim(workers=2, slots=1)
    sim.submit(maps=40, reduces=0)
    job = sim.s.jobs["job_1_0001"]
    for _ in range(10):  # maps 0-19 done in order, two at a time
        for attempt_id in sorted(sim.running("map")):
            sim.now += 0.1
            sim.finish(attempt_id)
    on_w0 = [t.index for t in job.maps if t.attempts and
             next(iter(t.attempts.values())).worker_id == "w0"]
    assert on_w0 and min(on_w0) >= 20
    sim.do(sim.s.worker_lost("w0", "connection lost", sim.now))
    sim.add_worker("w2")
    while sim.running():
        sim.finish_all("map")
    assert sim.finished()[-1].state is JobState.SUCCEEDED
    assert all(t.state is TaskState.DONE for t in job.maps)
    assert sorted(a.spec.index for a in sim.assigns()).count(on_w0[0]) == 2


@pytest.mark.parametrize(("seconds", "per_slot"), [(0.2, 2), (5.0, 1)])
def test_short_maps_run_two_to_a_slot_and_long_ones_one(seconds: float, per_slot: int) -> None:
    """Once a job's maps are seen to finish within a second (the median of the latest), a map
    slot takes two of them: a short map mostly waits, and a second fills the CPU meanwhile.
    Long maps keep one per slot."""
    sim = Sim(workers=2, slots=1)
    sim.submit(maps=40, reduces=0)
    for _ in range(8):  # the first maps, finished one at a time
        attempt_id = sorted(sim.running("map"))[0]
        sim.now += seconds
        sim.finish(attempt_id)
    per_worker = Counter(sim.running("map").values())
    assert sorted(per_worker.values()) == [per_slot, per_slot]


def test_finished_maps_are_not_rerun_once_every_reduce_is_done() -> None:
    sim = Sim(workers=2)
    sim.submit(maps=2, reduces=1, **{"mapreduce.job.speculative": "false"})
    sim.finish_all("map")
    (reduce_attempt,) = sim.running("reduce")
    sim.finish(reduce_attempt)
    n = len(sim.assigns())
    sim.do(sim.s.worker_lost("w0", "gone", sim.now))
    assert len(sim.assigns()) == n


def test_reports_only_count_from_the_worker_the_attempt_was_given_to() -> None:
    sim = Sim(workers=2)
    sim.submit(maps=1, reduces=0)
    (attempt_id, worker_id) = next(iter(sim.running().items()))
    other = "w1" if worker_id == "w0" else "w0"
    assert not sim.s.may_commit(attempt_id, other)
    assert sim.finish(attempt_id, worker_id=other) == []
    assert attempt_id in sim.running()
    assert sim.s.may_commit(attempt_id, worker_id)


def test_first_success_commits_and_a_duplicate_is_ignored() -> None:
    sim = Sim(workers=2)
    sim.submit(maps=1, reduces=0, **{"mapreduce.map.maxattempts": "4"})
    (first,) = sim.running()
    sim.do(sim.s.worker_lost(sim.running()[first], "gone", sim.now))
    (second,) = sim.running()
    assert second != first
    assert sim.finish(first, worker_id="w0") == [] and sim.finish(first, worker_id="w1") == []
    assert sim.s.may_commit(second, sim.running()[second])
    sim.finish(second)
    assert not sim.s.may_commit(second)
    assert sim.s.attempt_finished(second, TaskResult(ok=True), sim.now) == []
    assert sim.finished()[-1].state is JobState.SUCCEEDED


def test_reregistering_worker_loses_what_it_was_running() -> None:
    sim = Sim(workers=1)
    sim.submit(maps=1, reduces=0)
    (first,) = sim.running()
    sim.add_worker("w0", session="again")
    (second,) = sim.running()
    assert second != first and sim.finish(first, worker_id="w0") == []


# -- attempts, retries, blacklist ------------------------------------------------------


def test_failed_attempt_is_retried_on_another_worker() -> None:
    sim = Sim(workers=3)
    sim.submit(maps=1, reduces=0)
    (a0, w0), = sim.running().items()
    sim.finish(a0, ok=False, error="mapper subprocess failed with code 1", exit_status=1)
    (a1, w1), = sim.running().items()
    assert w1 != w0 and a1.endswith("_1")
    sim.finish(a1)
    assert sim.finished()[-1].state is JobState.SUCCEEDED


def test_job_fails_after_max_attempts_with_a_message_naming_everything() -> None:
    sim = Sim(workers=3)
    sim.submit(maps=2, reduces=1, mapper="./bad_map.py", **{"mapreduce.map.maxattempts": "3"})
    sim.finish(next(a for a in sim.running() if "_m_000000_" in a))
    hosts = []
    for n in range(3):
        attempt_id = next(a for a in sim.running() if "_m_000001_" in a)
        hosts.append(sim.running()[attempt_id])
        sim.finish(attempt_id, ok=False, error="mapper subprocess failed with code 3",
                   exit_status=3, stderr_tail=["Traceback (most recent call last):",
                                               f"ValueError: bad record {n}"])
    (fin,) = sim.finished()
    assert fin.state is JobState.FAILED
    assert len(set(hosts)) == 3, "each retry went to a worker it had not failed on"
    msg = fin.message
    assert "task_1_0001_m_000001 (map 1) failed 3 times" in msg
    for n, w in enumerate(hosts):
        assert f"attempt_1_0001_m_000001_{n} on {w} (host{w[1:]})" in msg
    assert "command: ./bad_map.py" in msg and "exit status: 3" in msg
    assert "ValueError: bad record 2" in msg
    assert not sim.running()


def test_worker_where_tasks_keep_failing_gets_no_more_tasks_of_that_job() -> None:
    sim = Sim(workers=4)
    sim.submit(maps=8, reduces=0, **{"mapreduce.map.maxattempts": "8"})
    for _ in range(3):
        bad = next(a for a, w in sim.running().items() if w == "w0")
        sim.finish(bad, ok=False, error="boom")
    assert sim.s.jobs["job_1_0001"].worker_failures["w0"] == 3
    n = len(sim.assigns())
    sim.finish_all("map")
    assert all(a.worker_id != "w0" for a in sim.assigns()[n:])
    assert sim.finished()[-1].state is JobState.SUCCEEDED


def test_blacklist_is_ignored_when_it_covers_too_much_of_the_cluster() -> None:
    sim = Sim(workers=2)
    sim.submit(maps=4, reduces=0, **{"mapreduce.map.maxattempts": "10"})
    for _ in range(6):
        sim.finish(next(iter(sim.running())), ok=False, error="flaky")
    assert len(sim.running()) == 2, "both workers still get tasks"
    sim.finish_all("map")
    assert sim.finished()[-1].state is JobState.SUCCEEDED


def test_fetch_failure_reruns_the_map_and_does_not_charge_the_reducer() -> None:
    sim = Sim(workers=2, slots=2)
    sim.submit(maps=2, reduces=2, **{"mapreduce.job.speculative": "false",
                                     "mapreduce.job.reduce.slowstart.completedmaps": "1"})
    sim.finish_all("map")
    job = sim.s.jobs["job_1_0001"]
    r0, r1 = sorted(sim.running("reduce"))
    old_output = job.maps[1].done_attempt
    n = len(sim.assigns())
    sim.finish(r0, ok=False, fetch_failed_map=1, error="could not fetch")
    assert [(a.spec.kind, a.spec.index) for a in sim.assigns()[n:]] == [("map", 1)]
    sim.finish(r1, ok=False, fetch_failed_map=1, error="could not fetch")  # the same loss
    assert job.maps[1].fetch_failures == 1
    assert job.reduces[0].failures == 0 and job.reduces[1].failures == 0
    sim.finish_all("map")
    assert job.maps[1].done_attempt != old_output
    new_reduces = sim.assigns()[-2:]
    assert all(a.spec.kind == "reduce" for a in new_reduces)
    assert {s.attempt_id for s in new_reduces[0].spec.sources} >= {job.maps[1].done_attempt}
    sim.finish_all("reduce")
    assert sim.finished()[-1].state is JobState.SUCCEEDED


def test_output_that_keeps_being_lost_fails_the_job() -> None:
    sim = Sim(workers=2)
    sim.submit(maps=1, reduces=1, **{"mapreduce.map.maxattempts": "2"})
    for _ in range(2):
        sim.finish_all("map")
        (r,) = sim.running("reduce")
        sim.finish(r, ok=False, fetch_failed_map=0, error="connection refused")
    assert sim.finished()[-1].state is JobState.FAILED
    assert "could not be fetched 2 times" in sim.finished()[-1].message


def test_hung_attempt_is_killed_and_retried_after_the_task_timeout() -> None:
    sim = Sim(workers=2)
    sim.submit(maps=1, reduces=0, **{"mapreduce.task.timeout": "5000"})
    (a0, w0), = sim.running().items()
    sim.advance(4)
    sim.s.attempt_progress(a0, sim.now, w0)  # a sign of life resets the clock
    sim.advance(4.5)
    assert a0 in sim.running()
    killed = [a for a in sim.advance(1) if isinstance(a, Kill)]
    assert [k.attempt_id for k in killed] == [a0]
    (a1, w1), = sim.running().items()
    assert w1 != w0
    assert "timed out after 5 s" in sim.s.jobs["job_1_0001"].maps[0].history[0].error


# -- speculation --------------------------------------------------------------------


def test_no_speculation_when_tasks_take_about_as_long_as_their_peers() -> None:
    sim = Sim(workers=4)
    sim.submit(maps=8, reduces=2)
    while sim.running():
        sim.advance(3)  # every task takes 3-6 s: no straggler 10 s behind
        for attempt_id in list(sim.running())[:3]:
            sim.finish(attempt_id)
    assert sim.finished()[-1].state is JobState.SUCCEEDED
    assert len(sim.assigns()) == 10, "each task ran exactly once"
    assert not any(isinstance(a, Kill) for a in sim.actions)


def test_straggler_gets_one_backup_and_the_first_to_finish_wins() -> None:
    sim = Sim(workers=4)
    sim.submit(maps=4, reduces=0)
    slow, slow_worker = next(iter(sim.running().items()))
    slow_index = int(slow.split("_")[-2])
    sim.advance(1)
    for attempt_id in [a for a in sim.running() if a != slow]:
        sim.finish(attempt_id)  # peers took 1 s
    assert sim.advance(9) == [], "not yet: only 10 s, the lag is 10 s past the median"
    backup = [a for a in sim.advance(2) if isinstance(a, Assign)]
    assert len(backup) == 1 and backup[0].worker_id != slow_worker
    assert backup[0].spec.index == slow_index and backup[0].spec.attempt == 1
    assert sim.advance(30) == [], "one backup per task"
    backup_id = backup[0].spec.attempt_id
    assert sim.s.may_commit(backup_id, backup[0].worker_id)
    actions = sim.finish(backup_id)
    assert Kill(slow_worker, slow) in actions
    assert not sim.s.may_commit(slow, slow_worker)
    assert sim.finish(slow, worker_id=slow_worker) == []
    assert sim.finished()[-1].state is JobState.SUCCEEDED
    assert sim.s.jobs["job_1_0001"].counters["Job Counters"]["Speculative map tasks won"] == 1


def test_original_attempt_winning_kills_the_backup() -> None:
    sim = Sim(workers=3)
    sim.submit(maps=2, reduces=0, **{"hstream.speculative.lag": "1"})
    slow, fast = sorted(sim.running())
    sim.advance(1)
    sim.finish(fast)
    backup = [a for a in sim.advance(2) if isinstance(a, Assign)]
    assert len(backup) == 1
    actions = sim.finish(slow)
    assert Kill(backup[0].worker_id, backup[0].spec.attempt_id) in actions


def test_speculation_can_be_switched_off() -> None:
    sim = Sim(workers=3)
    sim.submit(maps=2, reduces=0, **{"mapreduce.map.speculative": "false",
                                    "hstream.speculative.lag": "1"})
    slow, fast = sorted(sim.running())
    sim.advance(1)
    sim.finish(fast)
    assert not [a for a in sim.advance(60) if isinstance(a, Assign)]


# -- the job queue ------------------------------------------------------------------


def test_jobs_run_one_at_a_time_in_order_and_a_failure_does_not_disturb_the_next() -> None:
    sim = Sim(workers=2)
    first = sim.submit("job_1_0001", maps=2, reduces=0, **{"mapreduce.map.maxattempts": "1"})
    second = sim.submit("job_1_0002", maps=2, reduces=0)
    assert sim.s.jobs[second].state is JobState.QUEUED
    assert all(a.spec.job_id == first for a in sim.assigns())
    sim.finish(next(iter(sim.running())), ok=False, error="boom")
    assert sim.s.jobs[first].state is JobState.FAILED
    assert sim.s.jobs[second].state is JobState.RUNNING
    assert {a.spec.job_id for a in sim.assigns()[-2:]} == {second}
    assert sim.s.jobs[second].worker_failures == {}
    sim.finish_all("map")
    assert [(f.job_id, f.state) for f in sim.finished()] == [
        (first, JobState.FAILED), (second, JobState.SUCCEEDED)]


def test_queued_jobs_start_by_priority_and_in_order_among_equals() -> None:
    sim = Sim(workers=1)
    running = sim.submit("job_1_0001", maps=1, reduces=0)
    low = sim.submit("job_1_0002", maps=1, reduces=0, **{"mapreduce.job.priority": "LOW"})
    normal = sim.submit("job_1_0003", maps=1, reduces=0)
    high = sim.submit("job_1_0004", maps=1, reduces=0, **{"mapreduce.job.priority": "VERY_HIGH"})
    also_normal = sim.submit("job_1_0005", maps=1, reduces=0,
                             **{"mapreduce.job.priority": "normal"})
    numbered = sim.submit("job_1_0006", maps=1, reduces=0, **{"mapreduce.job.priority": "4"})
    started = []
    while sim.running():
        [attempt] = sim.running()
        started.append(sim.s.job_of(attempt).id)  # type: ignore[union-attr]
        sim.finish(attempt)
    assert started == [running, high, numbered, normal, also_normal, low]


def test_killing_a_job_kills_its_attempts() -> None:
    sim = Sim(workers=2)
    job = sim.submit(maps=2, reduces=0)
    running = set(sim.running())
    actions = sim.do(sim.s.kill_job(job, sim.now))
    assert {k.attempt_id for k in actions if isinstance(k, Kill)} == running
    assert sim.finished()[-1].state is JobState.KILLED
    assert all(sim.s.attempt_finished(a, TaskResult(ok=True), sim.now) == [] for a in running)


# -- a restarted manager's restore (journal.py) ---------------------------------------


def _restore(sim: Sim, done: list[DoneTask], job_id: str = "job_1_0001", maps: int = 4,
             reduces: int = 2, base: int = 1000) -> str:
    spec = JobSpec(name="t", inputs=["in"], output="out", mapper="./map.py",
                   reducer="./reduce.py" if reduces else None, num_reduces=reduces)
    splits = [Split(f"in/{i}", 0, 100) for i in range(maps)]
    sim.do(sim.s.restore_job(job_id, spec, splits, f"/stage/{job_id}", done,
                             {"Launched map tasks": 3}, base, sim.now))
    return job_id


def _done_map(i: int, worker: str = "w0") -> DoneTask:
    n = int(worker[1:])
    return DoneTask("map", i, f"attempt_1_0001_m_{i:06d}_0", worker, f"host{n}", 7000 + n,
                    {"Task": {"Map input records": 1}})


def test_restore_keeps_finished_maps_and_numbers_new_attempts_past_the_generation() -> None:
    sim = Sim(workers=2)
    _restore(sim, [_done_map(0), _done_map(1, "w1")])
    launched = {a.spec.index: a.spec.attempt_id for a in sim.assigns() if a.spec.kind == "map"}
    assert sorted(launched) == [2, 3]  # the finished maps do not run again
    assert all(a.spec.attempt == 1000 for a in sim.assigns())  # reduces too (slowstart)
    assert launched[2] == "attempt_1_0001_m_000002_1000"
    job = sim.s.jobs["job_1_0001"]
    assert job.counters["Job Counters"]["Launched map tasks"] == 5
    sim.finish_all("map")
    reduce = next(a for a in sim.assigns() if a.spec.kind == "reduce")
    assert [(m.map_index, m.attempt_id, m.port) for m in reduce.spec.sources][:2] == [
        (0, "attempt_1_0001_m_000000_0", 7000), (1, "attempt_1_0001_m_000001_0", 7001)]


def test_restore_of_a_job_whose_tasks_all_finished_commits_it() -> None:
    sim = Sim(workers=1)
    done = [_done_map(i) for i in range(2)] + [DoneTask("reduce", 0, "attempt_1_0001_r_000000_0")]
    _restore(sim, done, maps=2, reduces=1)
    assert [(f.job_id, f.state) for f in sim.finished()] == [("job_1_0001", JobState.SUCCEEDED)]
    assert sim.assigns() == []


def test_a_worker_reporting_held_output_finishes_its_map_without_a_rerun() -> None:
    sim = Sim(workers=0)
    _restore(sim, [])
    held = [HeldOutput("job_1_0001", "attempt_1_0001_m_000002_0", {"Task": {"x": 2}})]
    sim.do(sim.s.add_worker("w1", "host1", 7001, 1, sim.now, "s1", held))
    job = sim.s.jobs["job_1_0001"]
    assert job.maps[2].state is TaskState.DONE and job.maps[2].output is not None
    assert job.maps[2].output.host == "host1"
    assert 2 not in {a.spec.index for a in sim.assigns()}
    # A map already running elsewhere when its held output turns up: the attempt is killed.
    running = sim.running("map")
    (attempt_id,) = running
    index = int(attempt_id.split("_")[-2])
    held = [HeldOutput("job_1_0001", f"attempt_1_0001_m_{index:06d}_0")]
    actions = sim.do(sim.s.add_worker("w2", "host2", 7002, 1, sim.now, "s2", held))
    assert Kill("w1", attempt_id) in actions
    assert job.maps[index].state is TaskState.DONE


def test_held_output_is_ignored_for_jobs_that_were_not_restored() -> None:
    sim = Sim(workers=0)
    sim.submit()
    held = [HeldOutput("job_1_0001", "attempt_1_0001_m_000002_0")]
    sim.do(sim.s.add_worker("w1", "host1", 7001, 1, sim.now, "s1", held))
    assert sim.s.jobs["job_1_0001"].maps[2].state is not TaskState.DONE


def test_a_ghost_worker_that_never_returns_takes_its_restored_maps_with_it() -> None:
    sim = Sim(workers=1)
    _restore(sim, [_done_map(0, "w5"), _done_map(1, "w5"), _done_map(2), _done_map(3)])
    job = sim.s.jobs["job_1_0001"]
    assert sim.s.workers["w5"].ghost and sim.s.workers["w5"].free_slots == 0
    assert job.phase_tasks() == job.reduces
    sim.advance(TIMEOUT + 2)
    assert not sim.s.workers["w5"].alive
    # To run again: one on w0's map slot, one waiting for it.
    assert sorted(t.state for t in job.maps[:2]) == [TaskState.PENDING, TaskState.RUNNING]
    assert [t.state for t in job.maps[2:]] == [TaskState.DONE] * 2


def test_a_ghost_that_returns_without_its_output_reruns_those_maps() -> None:
    sim = Sim(workers=1)
    _restore(sim, [_done_map(0, "w5"), _done_map(1, "w5"), _done_map(2), _done_map(3)])
    held = [HeldOutput("job_1_0001", "attempt_1_0001_m_000000_0")]
    sim.do(sim.s.add_worker("w5", "host5", 7005, 1, sim.now, "s5", held))
    job = sim.s.jobs["job_1_0001"]
    assert job.maps[0].state is TaskState.DONE
    assert job.maps[1].state is not TaskState.DONE
    assert not any(isinstance(a, DropWorker) for a in sim.actions)


def test_reducers_start_at_the_slowstart_share_of_maps_and_hear_of_later_ones() -> None:
    """mapreduce.job.reduce.slowstart.completedmaps: reducers start once that share of the
    maps is done, on reduce slots of their own (a waiting reducer keeps no map from a CPU),
    and each map that finishes later is passed on to every running reduce attempt, once."""
    sim = Sim(workers=2, slots=1)
    sim.submit(maps=4, reduces=2, **{"mapreduce.job.reduce.slowstart.completedmaps": "0.5"})
    job = sim.s.jobs["job_1_0001"]
    m0, m1 = sorted(sim.running("map"))
    sim.finish(m0)
    assert not sim.running("reduce")  # 1 of 4 maps is below half
    sim.finish(m1)
    reduces = [a for a in sim.assigns() if a.spec.kind == "reduce"]
    assert len(reduces) == 2 and len(sim.running("map")) == 2  # maps keep both CPUs
    assert all(a.spec.num_maps == 4 and len(a.spec.sources) == 2 for a in reduces)
    n = len(sim.actions)
    sim.finish_all("map")
    told = [a for a in sim.actions[n:] if isinstance(a, Sources)]
    assert sorted((t.attempt_id, t.sources[0].map_index) for t in told) == sorted(
        (r.spec.attempt_id, i) for r in reduces for i in (2, 3))
    assert all(len(t.sources) == 1 for t in told)
    sim.finish_all("reduce")
    assert sim.finished()[-1].state is JobState.SUCCEEDED and job.reduces[0].failures == 0


def test_progress_counts_done_tasks_and_how_far_running_ones_are() -> None:
    """What the client's progress line shows: each done task whole, a running task by its
    furthest attempt; a map whose output was lost is no longer done."""
    sim = Sim(workers=2)
    job_id = sim.submit(maps=4, reduces=1, **{"mapreduce.job.reduce.slowstart.completedmaps": "1"})
    job = sim.s.jobs[job_id]
    first, second = sorted(sim.running("map"))
    sim.finish(first)
    sim.s.attempt_progress(second, sim.now, sim.running()[second], fraction=0.5)
    assert job.progress() == (pytest.approx((1 + 0.5) / 4), 0.0)
    sim.finish_all("map")
    assert job.progress() == (1.0, 0.0)
    lost_on = job.maps[0].done_worker
    assert lost_on is not None
    lost = sum(t.done_worker == lost_on for t in job.maps)
    sim.do(sim.s.worker_lost(lost_on, "killed", sim.now))
    assert 0 < lost < 4 and job.done["map"] == 4 - lost
    assert job.progress()[0] == pytest.approx(1 - lost / 4)


def test_slowstart_one_starts_reducers_after_the_last_map() -> None:
    sim = Sim(workers=2, slots=2)
    sim.submit(maps=3, reduces=1, **{"mapreduce.job.reduce.slowstart.completedmaps": "1.0"})
    for attempt_id in sorted(sim.running("map"))[:2]:
        sim.finish(attempt_id)
    assert not sim.running("reduce")
    sim.finish_all("map")
    (reduce,) = [a for a in sim.assigns() if a.spec.kind == "reduce"]
    assert len(reduce.spec.sources) == reduce.spec.num_maps == 3
