"""The manager's brain: jobs, tasks, attempts and workers, as a state machine without I/O.

Every input is an event method called with the current monotonic time; every
output is a list of actions the manager carries out (send a task, kill an
attempt, finish a job). Nothing here touches a socket, a file or a clock, so
every failure transition is unit-tested with a fake clock.

The model is the MapReduce paper's (§3.3) with Hadoop's knobs: a task is
PENDING, RUNNING (one or more attempts) or DONE; the first attempt to succeed
commits (`may_commit` is asked before the manager renames its output) and
later ones are ignored; a worker that dies takes its running attempts and,
while reducers still need them, its finished maps with it. Reports are only
believed from the worker the attempt was given to, under the registration
(session) it was given in.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from hstream.cluster import policy
from hstream.cluster.state import (
    Action,
    Assign,
    Attempt,
    DropWorker,
    FailedAttempt,
    Heartbeat,
    Job,
    JobFinished,
    JobState,
    Kill,
    Progress,
    Sources,
    Task,
    TaskState,
    WorkerInfo,
)
from hstream.job import JobSpec, MapOutput, Split, TaskResult, TaskSpec, task_id

logger = logging.getLogger(__name__)

DEFAULT_TASK_TIMEOUT = 600.0


@dataclass
class DoneTask:
    """A task the journal says finished: its winning attempt and, for a map, its output."""

    kind: str
    index: int
    attempt_id: str
    worker_id: str = ""
    host: str = ""
    port: int = 0
    counters: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class HeldOutput:
    """A finished map's output a worker kept through a manager restart."""

    job_id: str
    attempt_id: str
    counters: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def map_index(self) -> int:
        return int(self.attempt_id.split("_")[-2])


class Scheduler:
    """All manager state; see the module docstring. Call from one thread only."""

    def __init__(self, heartbeat_timeout: float) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.workers: dict[str, WorkerInfo] = {}
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self._attempt_index: dict[str, tuple[str, Task]] = {}  # attempt id -> (job id, task)
        #: (job id, kind) -> the lowest index a PENDING task of that kind may have: `_place`
        #: starts there. Every task that becomes PENDING again goes through `_requeue`.
        self._pending_from: dict[tuple[str, str], int] = {}

    # -- workers -------------------------------------------------------------
    def add_worker(self, worker_id: str, host: str, shuffle_port: int, slots: int,
                   now: float, session: str = "",
                   held: list[HeldOutput] | None = None) -> list[Action]:
        """A worker registers; `held` is the map output it kept through a manager restart."""
        actions: list[Action] = []
        old = self.workers.get(worker_id)
        if old is not None and old.alive and not old.ghost:
            # Re-registration after a reconnect: whatever it ran before is lost.
            actions += self.worker_lost(worker_id, "re-registered", now)
        self.workers[worker_id] = WorkerInfo(worker_id, host, shuffle_port, slots, now, session)
        logger.info("worker %s registered (%s, %d slots)", worker_id, host, slots)
        if old is not None and old.ghost:
            self._forget_unheld(worker_id, {h.attempt_id for h in held or []})
        for output in held or []:
            actions += self._adopt_output(self.workers[worker_id], output, now)
        return actions + self.schedule(now)

    def _adopt_output(self, worker: WorkerInfo, held: HeldOutput, now: float) -> list[Action]:
        """A finished map's output a worker kept while the manager was away: the map of a
        restored job is done with it, unless the journal names another attempt."""
        job = self.jobs.get(held.job_id)
        if job is None or not job.restored or job.state is not JobState.RUNNING:
            return []
        index = held.map_index
        if not 0 <= index < len(job.maps) or not job.reduces:
            return []
        task = job.maps[index]
        if task.state is TaskState.DONE:
            if task.done_attempt == held.attempt_id:
                task.output = MapOutput(index, held.attempt_id, worker.host, worker.shuffle_port)
                task.done_worker = worker.id
            return []
        logger.info("job %s: map %d done by %s, whose output %s kept", job.id, index,
                    held.attempt_id, worker.id)
        actions: list[Action] = []
        for other in list(task.attempts):
            actions += self._kill_attempt(task, other)
        self._mark_done(job, task, held.attempt_id, held.counters, now)
        task.output = MapOutput(index, held.attempt_id, worker.host, worker.shuffle_port)
        task.done_worker = worker.id
        return actions + self._new_sources(job, task) + [Progress(job.id)]

    def _forget_unheld(self, worker_id: str, held: set[str]) -> None:
        """The journal put map output on this worker, but it came back without it."""
        for job in self._active_jobs():
            for task in job.maps:
                if (task.state is TaskState.DONE and task.done_worker == worker_id
                        and task.done_attempt not in held):
                    logger.info("job %s: map %d output is gone from %s, re-running", job.id,
                                task.index, worker_id)
                    self._reset_done_map(job, task)

    def _mark_done(self, job: Job, task: Task, attempt_id: str,
                   counters: dict[str, dict[str, int]], now: float) -> None:
        job.set_state(task, TaskState.DONE)
        task.finished_at = now
        task.done_attempt = attempt_id
        task.counters = counters
        _add(job.counters, counters)

    def heartbeat(self, worker_id: str, seq: int, now: float, session: str = "") -> Heartbeat:
        """Record an authenticated heartbeat (the manager checked its HMAC)."""
        w = self.workers.get(worker_id)
        if w is None:
            return Heartbeat.REREGISTER
        if session != w.session or w.ghost:
            logger.warning("worker %s: heartbeat from another registration dropped", worker_id)
            return Heartbeat.STALE
        if seq <= w.heartbeat_seq:
            logger.warning("worker %s: stale heartbeat seq %d <= %d dropped", worker_id, seq,
                           w.heartbeat_seq)
            return Heartbeat.STALE
        w.heartbeat_seq = seq
        if not w.alive:
            logger.warning("worker %s: late heartbeat after it was declared dead: it must "
                           "re-register", worker_id)
            return Heartbeat.REREGISTER
        w.last_heartbeat = now
        return Heartbeat.OK

    def worker_lost(self, worker_id: str, reason: str, now: float) -> list[Action]:
        w = self.workers.get(worker_id)
        if w is None or not w.alive:
            return []
        logger.warning("worker %s is dead: %s (%.1f s after its last heartbeat)", worker_id,
                       reason, now - w.last_heartbeat)
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
        if job.all_done("reduce"):
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
        self._requeue(job.id, task)
        task.output = None
        task.done_worker = None
        task.done_attempt = None
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

    def restore_job(self, job_id: str, spec: JobSpec, splits: list[Split], staging: str,
                    done: list[DoneTask], job_counters: dict[str, int], attempt_base: int,
                    now: float) -> list[Action]:
        """A job a restarted manager found unfinished in its journal: queued again with its
        finished tasks done (a map's output where its worker said it was; the worker, known
        only from the journal, is a ghost until it re-registers), new attempts numbered from
        `attempt_base` so that their ids never repeat an earlier generation's."""
        maps = [Task("map", i, split=sp, next_attempt=attempt_base)
                for i, sp in enumerate(splits)]
        n_red = spec.num_reduces if spec.reducer is not None else 0
        reduces = [Task("reduce", i, next_attempt=attempt_base) for i in range(n_red)]
        job = Job(job_id, spec, maps, reduces, submitted=now, staging=staging, restored=True)
        job.counters = {"Job Counters": dict(job_counters)}
        self.jobs[job_id] = job
        for d in done:
            tasks = job.maps if d.kind == "map" else job.reduces
            if 0 <= d.index < len(tasks):
                self._restore_done(job, tasks[d.index], d, now)
        self.queue.append(job_id)
        logger.info("job %s restored: %d of %d tasks done", job_id,
                    job.done["map"] + job.done["reduce"], len(job.tasks))
        return self._start_next_job(now)

    def restore_ended(self, job_id: str, spec: JobSpec, state: JobState, message: str,
                      counters: dict[str, dict[str, int]], now: float) -> None:
        """A job that ended before the manager restarted, kept so that status finds it."""
        job = Job(job_id, spec, [], [], state=state, submitted=now, message=message,
                  counters=counters, restored=True)
        self.jobs[job_id] = job

    def _restore_done(self, job: Job, task: Task, d: DoneTask, now: float) -> None:
        self._mark_done(job, task, d.attempt_id, d.counters, now)
        if task.kind == "map" and job.reduces and d.host and d.port:
            task.output = MapOutput(task.index, d.attempt_id, d.host, d.port)
            task.done_worker = d.worker_id
            if d.worker_id not in self.workers:
                self.workers[d.worker_id] = WorkerInfo(d.worker_id, d.host, d.port, 0, now,
                                                       ghost=True)

    def task_of(self, attempt_id: str) -> Task | None:
        """The task of a running attempt."""
        entry = self._attempt_index.get(attempt_id)
        return entry[1] if entry else None

    def _start_next_job(self, now: float) -> list[Action]:
        if any(j.state is JobState.RUNNING for j in self.jobs.values()):
            return []
        while self.queue:
            job = self._pop_next()
            if job.state is not JobState.QUEUED:
                continue
            job.state = JobState.RUNNING
            logger.info("job %s started", job.id)
            if job.complete():  # no tasks, or all restored
                return self._finish_job(job, JobState.SUCCEEDED, "", now)
            return [Progress(job.id)] + self.schedule(now)
        return []

    def _pop_next(self) -> Job:
        """The queued job to start next: the highest mapreduce.job.priority, FIFO among equals."""
        best = max(range(len(self.queue)),
                   key=lambda i: (self.jobs[self.queue[i]].priority(), -i))
        job_id = self.queue[best]
        del self.queue[best]
        return self.jobs[job_id]

    def kill_job(self, job_id: str, now: float, reason: str = "killed by user") -> list[Action]:
        job = self.jobs.get(job_id)
        if job is None or job.state not in (JobState.QUEUED, JobState.RUNNING):
            return []
        return self._finish_job(job, JobState.KILLED, reason, now)

    def _finish_job(self, job: Job, state: JobState, message: str, now: float) -> list[Action]:
        job.state = state
        job.message = message
        logger.info("job %s finished: %s", job.id, state.value)
        actions: list[Action] = []
        for task in job.tasks:
            for attempt_id in list(task.attempts):
                actions += self._kill_attempt(task, attempt_id)
        actions.append(JobFinished(job.id, state, message))
        return actions + self._start_next_job(now)

    def _active_jobs(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state is JobState.RUNNING]

    # -- attempts ------------------------------------------------------------
    def _live_attempt(self, attempt_id: str,
                      worker_id: str | None) -> tuple[Job, Task, Attempt] | None:
        """The running attempt, if `worker_id` (when given) is the worker it was given to."""
        entry = self._attempt_index.get(attempt_id)
        if entry is None:
            return None
        job, task = self.jobs[entry[0]], entry[1]
        attempt = task.attempts.get(attempt_id)
        if attempt is None or (worker_id is not None and attempt.worker_id != worker_id):
            return None
        return job, task, attempt

    def job_of(self, attempt_id: str) -> Job | None:
        """The job of a running attempt."""
        entry = self._attempt_index.get(attempt_id)
        return self.jobs[entry[0]] if entry else None

    def attempt_progress(self, attempt_id: str, now: float, worker_id: str | None = None,
                         fraction: float | None = None, status: str | None = None) -> None:
        live = self._live_attempt(attempt_id, worker_id)
        if live is not None:
            attempt = live[2]
            attempt.last_progress = now
            if fraction is not None:
                attempt.fraction = min(max(fraction, 0.0), 1.0)
            if status is not None:
                attempt.status = status

    def may_commit(self, attempt_id: str, worker_id: str | None = None) -> bool:
        """Whether this attempt's output may be renamed into place: it is live, its
        task is not done and its job runs. Asked before the manager commits, so only
        the first successful attempt of a task ever commits (Spark's commit coordinator)."""
        live = self._live_attempt(attempt_id, worker_id)
        return (live is not None and live[0].state is JobState.RUNNING
                and live[1].state is not TaskState.DONE)

    def attempt_finished(self, attempt_id: str, result: TaskResult, now: float,
                         worker_id: str | None = None) -> list[Action]:
        live = self._live_attempt(attempt_id, worker_id)
        if live is None:
            logger.info("attempt %s: late, duplicate or misdirected report ignored%s", attempt_id,
                        f" (from {worker_id})" if worker_id else "")
            return []
        job, task, attempt = live
        del self._attempt_index[attempt_id]
        del task.attempts[attempt_id]
        worker = self.workers.get(attempt.worker_id)
        if worker is not None:
            worker.running.discard(attempt_id)
        if job.state is not JobState.RUNNING:
            return self.schedule(now)
        if result.ok:
            return self._attempt_succeeded(job, task, attempt, result, now)
        if result.fetch_failed_map is not None:
            return self._fetch_failed(job, task, attempt, result.fetch_failed_map, now)
        return self._attempt_failed(job, task, attempt, result, now)

    def _attempt_succeeded(self, job: Job, task: Task, attempt: Attempt, result: TaskResult,
                           now: float) -> list[Action]:
        if task.state is TaskState.DONE:
            logger.info("attempt %s: task already done, duplicate ignored", attempt.id)
            return self.schedule(now)
        actions: list[Action] = []
        job.set_state(task, TaskState.DONE)
        task.finished_at = now
        task.duration = now - attempt.started
        if task.kind == "map":
            job.map_times.append(task.duration)
        task.done_attempt = attempt.id
        task.counters = result.counters
        _add(job.counters, result.counters)
        worker = self.workers[attempt.worker_id]
        if task.kind == "map" and job.reduces:
            task.output = MapOutput(task.index, attempt.id, worker.host, worker.shuffle_port)
            task.done_worker = worker.id
            actions += self._new_sources(job, task)
        if attempt.speculative:
            _add(job.counters, {"Job Counters": {f"Speculative {task.kind} tasks won": 1}})
        for other in list(task.attempts):  # the losing speculative attempts
            logger.info("attempt %s lost the race to %s: killed", other, attempt.id)
            _add(job.counters, {"Job Counters": {f"Killed {task.kind} tasks": 1}})
            actions += self._kill_attempt(task, other)
        actions.append(Progress(job.id))
        if job.complete():
            actions += self._finish_job(job, JobState.SUCCEEDED, "", now)
        return actions + self.schedule(now)

    def _attempt_failed(self, job: Job, task: Task, attempt: Attempt, result: TaskResult,
                        now: float) -> list[Action]:
        task.failures += 1
        task.failed_on.add(attempt.worker_id)
        task.last_error = result
        worker = self.workers.get(attempt.worker_id)
        task.history.append(FailedAttempt(attempt.id, attempt.worker_id,
                                          worker.host if worker else "?",
                                          result.error or "failed"))
        _add(job.counters, {"Job Counters": {f"Failed {task.kind} tasks": 1}})
        job.worker_failures[attempt.worker_id] = job.worker_failures.get(attempt.worker_id, 0) + 1
        logger.warning("attempt %s failed on %s: %s", attempt.id, attempt.worker_id, result.error)
        if task.state is TaskState.DONE or task.attempts:
            return self.schedule(now)  # done already, or another attempt may still make it
        if task.failures >= job.max_attempts(task.kind):
            job.set_state(task, TaskState.FAILED)
            return self._finish_job(job, JobState.FAILED, self._failure_message(job, task), now)
        self._requeue(job.id, task)
        return self.schedule(now)

    def _new_sources(self, job: Job, done: Task) -> list[Action]:
        """Tell every running reduce attempt about the map just finished, unless it heard of
        it (a reduce attempt starts with every map finished before it). One map at a time: a
        job of thousands of maps costs per map, not per map and finished map."""
        actions: list[Action] = []
        output = done.output
        if output is None:
            return actions
        for reduce in job.reduces:
            for attempt in reduce.attempts.values():
                if output.map_index not in attempt.sources:
                    attempt.sources[output.map_index] = output.attempt_id
                    actions.append(Sources(attempt.worker_id, attempt.id, [output]))
        return actions

    def _fetch_failed(self, job: Job, reduce: Task, attempt: Attempt, map_index: int,
                      now: float) -> list[Action]:
        """Hadoop's fetch-failure rule: the map's output is gone, so the map runs again.

        The reducer is not to blame and is not charged an attempt. Only a report
        about the map's current output counts: several reducers usually notice the
        same loss, and a slow one may report an output that was replaced already."""
        if not reduce.attempts and reduce.state is TaskState.RUNNING:
            self._requeue(job.id, reduce)
        if not 0 <= map_index < len(job.maps):
            return self.schedule(now)
        task = job.maps[map_index]
        if task.state is TaskState.DONE and task.done_attempt == attempt.sources.get(map_index):
            task.fetch_failures += 1
            if task.fetch_failures >= job.max_attempts("map"):
                job.set_state(task, TaskState.FAILED)
                task.last_error = TaskResult(ok=False, error="its output could not be fetched "
                                             f"{task.fetch_failures} times")
                return self._finish_job(job, JobState.FAILED, self._failure_message(job, task), now)
            logger.warning("job %s: reduce %d could not fetch map %d, re-running the map",
                           job.id, reduce.index, map_index)
            self._reset_done_map(job, task)
        return [Progress(job.id)] + self.schedule(now)

    def _failure_message(self, job: Job, task: Task) -> str:
        """One message for the user: the task, every failed attempt and where it ran,
        the command, and the last attempt's exit status and stderr."""
        err = task.last_error or TaskResult(ok=False)
        command = job.spec.mapper if task.kind == "map" else (job.spec.reducer or "")
        tid = task_id(job.id, task.kind, task.index)
        lines = [f"task {tid} ({task.kind} {task.index}) failed "
                 f"{task.failures} time{'s' if task.failures != 1 else ''}: "
                 f"{err.error or 'failed'}"]
        lines += [f"  {h.attempt_id} on {h.worker_id} ({h.host}): {h.error}" for h in task.history]
        lines.append(f"  command: {command}")
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
            self._requeue(job_id, task)
        return [Progress(job_id)]

    def _kill_attempt(self, task: Task, attempt_id: str) -> list[Action]:
        attempt = task.attempts.pop(attempt_id)
        entry = self._attempt_index.pop(attempt_id, None)
        worker = self.workers.get(attempt.worker_id)
        if worker is not None:
            worker.running.discard(attempt_id)
        if task.state is TaskState.RUNNING and not task.attempts:
            self._requeue(entry[0] if entry else None, task)
        return [Kill(attempt.worker_id, attempt_id)]

    def _requeue(self, job_id: str | None, task: Task) -> None:
        """The task waits for a worker again (None: its job is not known here, so every
        job's placement scans from the start; the task is then a running one, not a done one
        that the job's counts hold)."""
        job = self.jobs.get(job_id) if job_id is not None else None
        if job is None:
            task.state = TaskState.PENDING
            self._pending_from.clear()
            return
        job.set_state(task, TaskState.PENDING)
        key = (job.id, task.kind)
        self._pending_from[key] = min(self._pending_from.get(key, 0), task.index)

    # -- time ----------------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        """Declare silent workers dead, kill hung attempts, start backups for stragglers."""
        actions: list[Action] = []
        for w in list(self.workers.values()):
            if w.alive and now - w.last_heartbeat > self.heartbeat_timeout:
                actions += self.worker_lost(w.id, "missed heartbeats", now)
        timeouts = {job.id: job.conf_float("mapreduce.task.timeout",
                                           DEFAULT_TASK_TIMEOUT * 1000) / 1000
                    for job in self._active_jobs()}
        # The running attempts only: a job of thousands of tasks is not walked every tick.
        for attempt_id, (job_id, task) in list(self._attempt_index.items()):
            job, attempt = self.jobs[job_id], task.attempts.get(attempt_id)
            timeout = timeouts.get(job_id, 0.0)
            if (attempt is not None and timeout > 0 and job.state is JobState.RUNNING
                    and now - attempt.last_progress > timeout):
                actions += self._timeout_attempt(job, task, attempt, timeout, now)
        return actions + self.schedule(now)

    def _timeout_attempt(self, job: Job, task: Task, attempt: Attempt, timeout: float,
                         now: float) -> list[Action]:
        actions = self._kill_attempt(task, attempt.id)
        result = TaskResult(ok=False, error=f"timed out after {timeout:g} s without progress "
                            "(mapreduce.task.timeout)")
        actions += self._attempt_failed(job, task, attempt, result, now)
        return actions

    # -- placement -----------------------------------------------------------
    def schedule(self, now: float) -> list[Action]:
        """Give pending tasks of the running job to workers with free slots, then
        backups to stragglers when nothing is pending."""
        actions: list[Action] = []
        for job in self._active_jobs():
            placed, maps_waiting = self._place(job, job.maps, now)
            actions += placed
            if job.reduces and any(t.state is TaskState.PENDING for t in job.reduces) \
                    and job.reduces_may_start():
                actions += self._place(job, job.reduces, now)[0]
            if not maps_waiting:  # else no backups: maps still wait for a first attempt
                actions += self._speculate(job, now)
        return actions

    def _place(self, job: Job, tasks: list[Task], now: float) -> tuple[list[Action], bool]:
        """Launch pending tasks (all of one kind) while a worker has a free slot for them;
        whether some are left waiting. Stops at the first full cluster: a job of thousands
        of tasks costs per free slot, not per task."""
        actions: list[Action] = []
        if not tasks:
            return actions, False
        key = (job.id, tasks[0].kind)
        per_slot = job.maps_per_slot() if tasks[0].kind == "map" else 1
        first: int | None = None  # the first task left pending
        for i in range(self._pending_from.get(key, 0), len(tasks)):
            task = tasks[i]
            if task.state is not TaskState.PENDING:
                continue
            if not self._room(task.kind, per_slot):
                self._pending_from[key] = i if first is None else first
                return actions, True
            worker = policy.pick_worker(self.workers.values(), job, task)
            if worker is not None:
                actions.append(self._launch(job, task, worker, now))
            elif first is None:
                first = i
        self._pending_from[key] = len(tasks) if first is None else first
        return actions, False

    def _room(self, kind: str, per_slot: int) -> bool:
        return any(w.free_for(kind, per_slot) > 0 for w in self.workers.values())

    def _speculate(self, job: Job, now: float) -> list[Action]:
        """Backup attempts for the stragglers the policy names, on another worker."""
        actions: list[Action] = []
        for task, elapsed, median in policy.stragglers(job, now):
            attempt = next(iter(task.attempts.values()))
            worker = policy.pick_worker(self.workers.values(), job, task,
                                        exclude={attempt.worker_id})
            if worker is None:
                break
            logger.info("job %s: %s %d has run %.1f s (finished peers: median %.1f s): "
                        "starting a backup attempt", job.id, task.kind, task.index, elapsed, median)
            actions.append(self._launch(job, task, worker, now, speculative=True))
        return actions

    def _launch(self, job: Job, task: Task, worker: WorkerInfo, now: float,
                speculative: bool = False) -> Assign:
        number = task.next_attempt
        task.next_attempt += 1
        spec = self._task_spec(job, task, number)
        attempt = Attempt(spec.attempt_id, number, worker.id, started=now, last_progress=now,
                          speculative=speculative,
                          sources={m.map_index: m.attempt_id for m in spec.sources})
        task.attempts[attempt.id] = attempt
        job.set_state(task, TaskState.RUNNING)
        worker.running.add(attempt.id)
        self._attempt_index[attempt.id] = (job.id, task)
        _add(job.counters, {"Job Counters": {f"Launched {task.kind} tasks": 1}})
        logger.info("attempt %s -> worker %s%s", attempt.id, worker.id,
                    " (speculative)" if speculative else "")
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
            num_maps=0 if is_map else len(job.maps),
            lazy_output=spec.lazy_output, shared_fs=spec.shared_fs,
        )


def _add(total: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    for group, names in more.items():
        g = total.setdefault(group, {})
        for name, value in names.items():
            g[name] = g.get(name, 0) + value


def _subtract(total: dict[str, dict[str, int]], less: dict[str, dict[str, int]]) -> None:
    _add(total, {g: {n: -v for n, v in names.items()} for g, names in less.items()})

