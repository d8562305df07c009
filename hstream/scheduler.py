"""The manager's brain: jobs, tasks, attempts and workers, as a state machine without I/O.

Every input is an event method called with the current monotonic time; every
output is a list of actions the manager carries out (send a task, kill an
attempt, commit, finish a job). Nothing here touches a socket, a file or a
clock, so every failure transition is unit-tested with a fake clock.

The model is the MapReduce paper's (§3.3) with Hadoop's knobs: a task is
PENDING, RUNNING (one or more attempts) or DONE; the first attempt to succeed
commits and later ones are ignored; a worker that dies takes its running
attempts and, while reducers still need them, its finished maps with it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from hstream.job import JobSpec, MapOutput, Split, TaskResult, TaskSpec

logger = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 4
#: A worker on which this many attempts of one job failed gets no more of its tasks
#: (Hadoop's maxtaskfailures.per.tracker; below max attempts so a retry can move).
DEFAULT_MAX_FAILURES_PER_WORKER = 3
DEFAULT_TASK_TIMEOUT = 600.0


class TaskState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"


# -- actions -----------------------------------------------------------------------


@dataclass
class Assign:
    worker_id: str
    spec: TaskSpec


@dataclass
class Kill:
    worker_id: str
    attempt_id: str


@dataclass
class CommitTask:
    """Move this attempt's output file to its final name (first success wins)."""

    job_id: str
    attempt_id: str
    output_file: str


@dataclass
class JobFinished:
    job_id: str
    state: JobState
    message: str = ""


@dataclass
class Progress:
    job_id: str


@dataclass
class DropWorker:
    worker_id: str
    reason: str


Action = Assign | Kill | CommitTask | JobFinished | Progress | DropWorker


# -- state ------------------------------------------------------------------------


@dataclass
class Attempt:
    id: str
    number: int
    worker_id: str
    started: float
    last_progress: float
    speculative: bool = False


@dataclass
class Task:
    kind: str
    index: int
    split: Split | None = None
    state: TaskState = TaskState.PENDING
    attempts: dict[str, Attempt] = field(default_factory=dict)  # running ones
    next_attempt: int = 0
    failures: int = 0
    #: Times reducers could not fetch this map's output (each time it runs again).
    fetch_failures: int = 0
    failed_on: set[str] = field(default_factory=set)
    #: For a finished map: where its output lives.
    output: MapOutput | None = None
    done_worker: str | None = None
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    last_error: TaskResult | None = None
    finished_at: float = 0.0


@dataclass
class Job:
    id: str
    spec: JobSpec
    maps: list[Task]
    reduces: list[Task]
    state: JobState = JobState.QUEUED
    submitted: float = 0.0
    worker_failures: dict[str, int] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    message: str = ""
    #: Where attempts commit their output before the job commit publishes it.
    staging: str = ""

    def max_attempts(self, kind: str) -> int:
        key = f"mapreduce.{kind}.maxattempts"
        return int(self.spec.conf.get(key, DEFAULT_MAX_ATTEMPTS))

    @property
    def tasks(self) -> list[Task]:
        return self.maps + self.reduces

    def phase_tasks(self) -> list[Task]:
        """Tasks that may run now: maps, then reduces once every map is done."""
        if all(t.state is TaskState.DONE for t in self.maps):
            return self.reduces
        return self.maps

    def progress(self) -> tuple[float, float]:
        def frac(tasks: list[Task]) -> float:
            if not tasks:
                return 1.0
            return sum(t.state is TaskState.DONE for t in tasks) / len(tasks)

        return frac(self.maps), frac(self.reduces)


@dataclass
class WorkerInfo:
    id: str
    host: str
    shuffle_port: int
    slots: int
    last_heartbeat: float
    heartbeat_seq: int = -1
    running: set[str] = field(default_factory=set)  # attempt ids
    alive: bool = True

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running) if self.alive else 0


class Scheduler:
    """All manager state; see the module docstring. Call from one thread only."""

    def __init__(self, heartbeat_timeout: float) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.workers: dict[str, WorkerInfo] = {}
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self._attempt_index: dict[str, tuple[str, Task]] = {}  # attempt id -> (job id, task)

    # -- workers -------------------------------------------------------------
    def add_worker(self, worker_id: str, host: str, shuffle_port: int, slots: int,
                   now: float) -> list[Action]:
        actions: list[Action] = []
        if worker_id in self.workers and self.workers[worker_id].alive:
            # Re-registration after a reconnect: whatever it ran before is lost.
            actions += self.worker_lost(worker_id, "re-registered", now)
        self.workers[worker_id] = WorkerInfo(worker_id, host, shuffle_port, slots, now)
        logger.info("worker %s registered (%s, %d slots)", worker_id, host, slots)
        return actions + self.schedule(now)

    def heartbeat(self, worker_id: str, seq: int, now: float) -> bool:
        """Record a heartbeat; False when the sender must re-register (unknown or dead)."""
        w = self.workers.get(worker_id)
        if w is None or not w.alive:
            return False
        if seq <= w.heartbeat_seq:
            logger.warning("worker %s: stale heartbeat seq %d <= %d dropped", worker_id, seq,
                           w.heartbeat_seq)
            return True
        w.heartbeat_seq = seq
        w.last_heartbeat = now
        return True

    def worker_lost(self, worker_id: str, reason: str, now: float) -> list[Action]:
        w = self.workers.get(worker_id)
        if w is None or not w.alive:
            return []
        logger.warning("worker %s is dead: %s", worker_id, reason)
        w.alive = False
        actions: list[Action] = [DropWorker(worker_id, reason)]
        for attempt_id in list(w.running):
            actions += self._abandon_attempt(attempt_id, now)
        w.running.clear()
        for job in self._active_jobs():
            actions += self._rerun_lost_maps(job, worker_id, now)
        return actions + self.schedule(now)

    def _rerun_lost_maps(self, job: Job, worker_id: str, now: float) -> list[Action]:
        """Finished maps whose output lived on a dead worker run again while reducers need it."""
        if job.spec.reducer is None or all(t.state is TaskState.DONE for t in job.reduces):
            return []
        actions: list[Action] = []
        for task in job.maps:
            if task.state is TaskState.DONE and task.done_worker == worker_id:
                logger.info("job %s: map %d output lost with worker %s, re-running",
                            job.id, task.index, worker_id)
                self._reset_done_map(job, task)
                actions.append(Progress(job.id))
        return actions

    def _reset_done_map(self, job: Job, task: Task) -> None:
        task.state = TaskState.PENDING
        task.output = None
        task.done_worker = None
        _subtract(job.counters, task.counters)
        task.counters = {}

    # -- jobs ----------------------------------------------------------------
    def submit(self, job_id: str, spec: JobSpec, splits: list[Split], staging: str,
               now: float) -> list[Action]:
        maps = [Task("map", i, split=s) for i, s in enumerate(splits)]
        n_red = spec.num_reduces if spec.reducer is not None else 0
        reduces = [Task("reduce", i) for i in range(n_red)]
        job = Job(job_id, spec, maps, reduces, submitted=now, staging=staging)
        self.jobs[job_id] = job
        self.queue.append(job_id)
        logger.info("job %s queued: %d maps, %d reduces", job_id, len(maps), n_red)
        return self._start_next_job(now)

    def _start_next_job(self, now: float) -> list[Action]:
        if any(j.state is JobState.RUNNING for j in self.jobs.values()):
            return []
        while self.queue:
            job = self.jobs[self.queue.popleft()]
            if job.state is not JobState.QUEUED:
                continue
            job.state = JobState.RUNNING
            if not job.maps and not job.reduces:
                return self._finish_job(job, JobState.SUCCEEDED, "", now)
            return [Progress(job.id)] + self.schedule(now)
        return []

    def kill_job(self, job_id: str, now: float, reason: str = "killed by user") -> list[Action]:
        job = self.jobs.get(job_id)
        if job is None or job.state not in (JobState.QUEUED, JobState.RUNNING):
            return []
        return self._finish_job(job, JobState.KILLED, reason, now)

    def _finish_job(self, job: Job, state: JobState, message: str, now: float) -> list[Action]:
        job.state = state
        job.message = message
        actions: list[Action] = []
        for task in job.tasks:
            for attempt_id in list(task.attempts):
                actions += self._kill_attempt(task, attempt_id)
        actions.append(JobFinished(job.id, state, message))
        return actions + self._start_next_job(now)

    def _active_jobs(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state is JobState.RUNNING]

    # -- attempts ------------------------------------------------------------
    def attempt_progress(self, attempt_id: str, now: float) -> None:
        entry = self._attempt_index.get(attempt_id)
        if entry and attempt_id in entry[1].attempts:
            entry[1].attempts[attempt_id].last_progress = now

    def attempt_finished(self, attempt_id: str, result: TaskResult, now: float) -> list[Action]:
        entry = self._attempt_index.pop(attempt_id, None)
        if entry is None:
            logger.info("attempt %s: late report ignored", attempt_id)
            return []
        job_id, task = entry
        job = self.jobs[job_id]
        attempt = task.attempts.pop(attempt_id, None)
        if attempt is None:
            logger.info("attempt %s: report after it was abandoned, ignored", attempt_id)
            return []
        worker = self.workers.get(attempt.worker_id)
        if worker is not None:
            worker.running.discard(attempt_id)
        if job.state is not JobState.RUNNING:
            return self.schedule(now)
        if result.ok:
            return self._attempt_succeeded(job, task, attempt, result, now)
        if result.fetch_failed_map is not None:
            return self._fetch_failed(job, task, result.fetch_failed_map, now)
        return self._attempt_failed(job, task, attempt, result, now)

    def _attempt_succeeded(self, job: Job, task: Task, attempt: Attempt, result: TaskResult,
                           now: float) -> list[Action]:
        if task.state is TaskState.DONE:
            logger.info("attempt %s: task already done, duplicate ignored", attempt.id)
            return self.schedule(now)
        actions: list[Action] = []
        task.state = TaskState.DONE
        task.finished_at = now
        task.counters = result.counters
        _add(job.counters, result.counters)
        worker = self.workers[attempt.worker_id]
        if task.kind == "map" and job.reduces:
            task.output = MapOutput(task.index, attempt.id, worker.host, worker.shuffle_port)
            task.done_worker = worker.id
        if result.output_file:
            actions.append(CommitTask(job.id, attempt.id, result.output_file))
        for other in list(task.attempts):  # the losing speculative attempts
            actions += self._kill_attempt(task, other)
        actions.append(Progress(job.id))
        if all(t.state is TaskState.DONE for t in job.tasks):
            actions += self._finish_job(job, JobState.SUCCEEDED, "", now)
        return actions + self.schedule(now)

    def _attempt_failed(self, job: Job, task: Task, attempt: Attempt, result: TaskResult,
                        now: float) -> list[Action]:
        task.failures += 1
        task.failed_on.add(attempt.worker_id)
        task.last_error = result
        _add(job.counters, {"Job Counters": {f"Failed {task.kind} tasks": 1}})
        job.worker_failures[attempt.worker_id] = job.worker_failures.get(attempt.worker_id, 0) + 1
        logger.warning("attempt %s failed on %s: %s", attempt.id, attempt.worker_id, result.error)
        if task.state is TaskState.DONE or task.attempts:
            return self.schedule(now)
        if task.failures >= job.max_attempts(task.kind):
            task.state = TaskState.FAILED
            return self._finish_job(job, JobState.FAILED, self._failure_message(job, task), now)
        task.state = TaskState.PENDING
        return self.schedule(now)

    def _fetch_failed(self, job: Job, reduce: Task, map_index: int, now: float) -> list[Action]:
        """Hadoop's fetch-failure rule: the map's output is gone, so the map runs again."""
        if not reduce.attempts and reduce.state is TaskState.RUNNING:
            reduce.state = TaskState.PENDING
        task = job.maps[map_index]
        task.fetch_failures += 1
        if task.fetch_failures > job.max_attempts("map"):
            task.state = TaskState.FAILED
            task.last_error = TaskResult(ok=False, error="its output could not be fetched "
                                         f"{task.fetch_failures} times")
            return self._finish_job(job, JobState.FAILED, self._failure_message(job, task), now)
        if task.state is TaskState.DONE:
            logger.warning("job %s: reduce %d could not fetch map %d, re-running the map",
                           job.id, reduce.index, map_index)
            self._reset_done_map(job, task)
        return [Progress(job.id)] + self.schedule(now)

    def _failure_message(self, job: Job, task: Task) -> str:
        err = task.last_error or TaskResult(ok=False)
        command = job.spec.mapper if task.kind == "map" else (job.spec.reducer or "")
        lines = [f"task {task.kind} {task.index} failed {task.failures} attempts "
                 f"(on {', '.join(sorted(task.failed_on))}): {err.error or 'failed'}",
                 f"  command: {command}"]
        if err.exit_status is not None:
            lines.append(f"  exit status: {err.exit_status}")
        if err.stderr_tail:
            lines.append("  last lines of stderr:")
            lines += [f"    {line}" for line in err.stderr_tail]
        return "\n".join(lines)

    def _abandon_attempt(self, attempt_id: str, now: float) -> list[Action]:
        """The attempt's worker is gone: forget it; the task runs again if nothing else runs it."""
        entry = self._attempt_index.pop(attempt_id, None)
        if entry is None:
            return []
        job_id, task = entry
        task.attempts.pop(attempt_id, None)
        if task.state is TaskState.RUNNING and not task.attempts:
            task.state = TaskState.PENDING
        return [Progress(job_id)]

    def _kill_attempt(self, task: Task, attempt_id: str) -> list[Action]:
        attempt = task.attempts.pop(attempt_id)
        self._attempt_index.pop(attempt_id, None)
        worker = self.workers.get(attempt.worker_id)
        if worker is not None:
            worker.running.discard(attempt_id)
        if task.state is TaskState.RUNNING and not task.attempts:
            task.state = TaskState.PENDING
        return [Kill(attempt.worker_id, attempt_id)]

    # -- time ----------------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        """Declare silent workers dead and kill hung attempts."""
        actions: list[Action] = []
        for w in list(self.workers.values()):
            if w.alive and now - w.last_heartbeat > self.heartbeat_timeout:
                actions += self.worker_lost(w.id, "missed heartbeats", now)
        for job in self._active_jobs():
            timeout = float(job.spec.conf.get("mapreduce.task.timeout", DEFAULT_TASK_TIMEOUT * 1000))
            if timeout <= 0:
                continue
            for task in job.phase_tasks():
                for attempt in list(task.attempts.values()):
                    if now - attempt.last_progress > timeout / 1000:
                        actions += self._timeout_attempt(job, task, attempt, timeout, now)
        return actions

    def _timeout_attempt(self, job: Job, task: Task, attempt: Attempt, timeout: float,
                         now: float) -> list[Action]:
        actions = self._kill_attempt(task, attempt.id)
        result = TaskResult(ok=False, error=f"timed out after {timeout / 1000:.0f} s without progress")
        actions += self._attempt_failed(job, task, attempt, result, now)
        return actions

    # -- placement -----------------------------------------------------------
    def schedule(self, now: float) -> list[Action]:
        """Give pending tasks of the running job to workers with free slots."""
        actions: list[Action] = []
        for job in self._active_jobs():
            for task in job.phase_tasks():
                if task.state is not TaskState.PENDING:
                    continue
                worker = self._pick_worker(job, task)
                if worker is None:
                    continue
                actions.append(self._launch(job, task, worker, now))
        return actions

    def _pick_worker(self, job: Job, task: Task) -> WorkerInfo | None:
        limit = int(job.spec.conf.get("mapreduce.job.maxtaskfailures.per.tracker",
                                      DEFAULT_MAX_FAILURES_PER_WORKER))
        free = [w for w in self.workers.values() if w.free_slots > 0]
        usable = [w for w in free if job.worker_failures.get(w.id, 0) < limit]
        if not usable and free and all(
                job.worker_failures.get(w.id, 0) >= limit for w in self.workers.values() if w.alive):
            usable = free  # every live worker is blacklisted: ignore the list rather than hang
        fresh = [w for w in usable if w.id not in task.failed_on]
        candidates = fresh or usable
        if not candidates:
            return None
        return max(candidates, key=lambda w: (w.free_slots, -len(w.running), w.id))

    def _launch(self, job: Job, task: Task, worker: WorkerInfo, now: float) -> Assign:
        number = task.next_attempt
        task.next_attempt += 1
        spec = self._task_spec(job, task, number)
        attempt = Attempt(spec.attempt_id, number, worker.id, now, now)
        task.attempts[attempt.id] = attempt
        task.state = TaskState.RUNNING
        worker.running.add(attempt.id)
        self._attempt_index[attempt.id] = (job.id, task)
        _add(job.counters, {"Job Counters": {f"Launched {task.kind} tasks": 1}})
        logger.info("attempt %s -> worker %s", attempt.id, worker.id)
        return Assign(worker.id, spec)

    def _task_spec(self, job: Job, task: Task, number: int) -> TaskSpec:
        spec = job.spec
        is_map = task.kind == "map"
        sources = [m.output for m in job.maps if m.output is not None] if not is_map else []
        return TaskSpec(
            job_id=job.id, kind=task.kind, index=task.index, attempt=number,
            num_reduces=len(job.reduces),
            command=spec.mapper if is_map else (spec.reducer or ""),
            combiner=spec.combiner if is_map else None,
            conf=spec.conf, env=spec.cmdenv, files=spec.files,
            output_dir=job.staging, split=task.split, sources=sources,
            lazy_output=spec.lazy_output,
        )


def _add(total: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    for group, names in more.items():
        g = total.setdefault(group, {})
        for name, value in names.items():
            g[name] = g.get(name, 0) + value


def _subtract(total: dict[str, dict[str, int]], less: dict[str, dict[str, int]]) -> None:
    _add(total, {g: {n: -v for n, v in names.items()} for g, names in less.items()})
