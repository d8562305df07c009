"""Placement and speculation policy: which worker gets a task, which stragglers get a backup.

Pure functions over the scheduler's state; they decide, the scheduler acts. Stdlib only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from hstream.cluster.state import Job, Task, TaskState, WorkerInfo

#: A worker on which this many attempts of one job failed gets no more of its tasks
#: (Hadoop's maxtaskfailures.per.tracker; below max attempts so a retry can move).
DEFAULT_MAX_FAILURES_PER_WORKER = 3
#: Hadoop ignores its node blacklist once more than this share of nodes is on it.
BLACKLIST_IGNORE_FRACTION = 1 / 3
#: Speculation: a backup attempt starts only for a task running `SLOWNESS` times the
#: median of its finished peers *and* `LAG` seconds longer than it, so that short,
#: ordinary jobs never speculate (6.824 suggests ~10 s; Hadoop caps backups at 10 %).
DEFAULT_SPECULATIVE_SLOWNESS = 2.0
DEFAULT_SPECULATIVE_LAG = 10.0
SPECULATIVE_CAP = 0.1


def pick_worker(workers: Iterable[WorkerInfo], job: Job, task: Task,
                exclude: set[str] | frozenset[str] = frozenset()) -> WorkerInfo | None:
    """The freest live worker, avoiding the job's blacklist and hosts where the task failed."""
    limit = int(job.spec.conf.get("mapreduce.job.maxtaskfailures.per.tracker",
                                  DEFAULT_MAX_FAILURES_PER_WORKER))
    alive = [w for w in workers if w.alive]
    bad = {w.id for w in alive if job.worker_failures.get(w.id, 0) >= limit}
    if len(bad) > BLACKLIST_IGNORE_FRACTION * len(alive):
        bad = set()  # as Hadoop: a blacklist covering too much of the cluster is ignored
    per_slot = job.maps_per_slot() if task.kind == "map" else 1
    free = [w for w in alive if w.free_for(task.kind, per_slot) > 0 and w.id not in exclude]
    usable = [w for w in free if w.id not in bad]
    fresh = [w for w in usable if w.id not in task.failed_on]
    candidates = fresh or usable
    if not candidates:
        return None
    return max(candidates, key=lambda w: (w.free_for(task.kind, per_slot), -len(w.running), w.id))


def stragglers(job: Job, now: float) -> Iterator[tuple[Task, float, float]]:
    """(task, elapsed, median) for the last slow tasks of the current phase that deserve a
    backup attempt, oldest first, within the speculation budget (conservatively)."""
    tasks = job.phase_tasks()
    if not tasks or not job.speculative(tasks[0].kind):
        return
    if any(t.state is TaskState.PENDING for t in tasks):
        return
    finished = sorted(t.duration for t in tasks if t.state is TaskState.DONE)
    if not finished:
        return  # nothing to compare with
    median = finished[len(finished) // 2]
    slowness = job.conf_float("hstream.speculative.slowness", DEFAULT_SPECULATIVE_SLOWNESS)
    lag = job.conf_float("hstream.speculative.lag", DEFAULT_SPECULATIVE_LAG)
    budget = max(1, int(SPECULATIVE_CAP * len(tasks))) - sum(
        a.speculative for t in tasks for a in t.attempts.values())
    running = [t for t in tasks if t.state is TaskState.RUNNING and len(t.attempts) == 1]
    for task in sorted(running, key=lambda t: next(iter(t.attempts.values())).started):
        if budget <= 0:
            return
        elapsed = now - next(iter(task.attempts.values())).started
        if elapsed >= slowness * median and elapsed - median >= lag:
            yield task, elapsed, median
            budget -= 1
