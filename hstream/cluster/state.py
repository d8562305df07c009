"""The scheduler's state and its outputs: jobs, tasks, attempts, workers, and the actions the
manager carries out. Plain dataclasses; only `scheduler.py` changes them. Stdlib only.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from hstream.hadoop.properties import job_priority
from hstream.job import JobSpec, MapOutput, Split, TaskResult, TaskSpec

DEFAULT_MAX_ATTEMPTS = 4
#: Hadoop's mapreduce.job.reduce.slowstart.completedmaps: reducers start (and fetch what
#: is done) once this share of the maps has finished.
DEFAULT_SLOWSTART = 0.05
#: Maps whose median run (the latest SHORT_SAMPLE of them) is at most this are short.
SHORT_MAP_SECONDS = 1.0
SHORT_SAMPLE = 16


class TaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"


class Heartbeat(StrEnum):
    """What a heartbeat means; only REREGISTER makes the manager act."""

    OK = "ok"
    #: A duplicate, a replay, out of order, or from an older registration: dropped.
    STALE = "stale"
    #: Authentic and new, but its sender is unknown or was declared dead.
    REREGISTER = "reregister"


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


@dataclass
class Sources:
    """Maps finished since a reduce attempt started: the worker passes them on to it."""

    worker_id: str
    attempt_id: str
    sources: list[MapOutput]


Action = Assign | Kill | JobFinished | Progress | DropWorker | Sources


@dataclass
class Attempt:
    id: str
    number: int
    worker_id: str
    started: float
    last_progress: float
    speculative: bool = False
    #: How far it is (0..1) and its command's last `reporter:status:` message.
    fraction: float = 0.0
    status: str = ""
    #: A reduce attempt's inputs: map index -> the map attempt whose output it fetches.
    sources: dict[int, str] = field(default_factory=dict)


@dataclass
class FailedAttempt:
    """One line of a failing job's message."""

    attempt_id: str
    worker_id: str
    host: str
    error: str


@dataclass
class Task:
    kind: str
    index: int
    split: Split | None = None
    state: TaskState = TaskState.PENDING
    attempts: dict[str, Attempt] = field(default_factory=dict)  # running ones
    next_attempt: int = 0
    failures: int = 0
    #: Times this map's finished output was lost to a fetch failure (each time it runs again).
    fetch_failures: int = 0
    failed_on: set[str] = field(default_factory=set)
    history: list[FailedAttempt] = field(default_factory=list)
    #: For a finished map: where its output lives.
    output: MapOutput | None = None
    done_worker: str | None = None
    done_attempt: str | None = None
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    last_error: TaskResult | None = None
    finished_at: float = 0.0
    #: How long the winning attempt ran: what stragglers are compared with.
    duration: float = 0.0


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
    #: Restored from the journal by a restarted manager: workers' held map outputs count.
    restored: bool = False
    #: Run times of the latest finished maps (seconds), for `maps_per_slot`.
    map_times: deque[float] = field(default_factory=lambda: deque(maxlen=SHORT_SAMPLE))
    #: Tasks done, by kind, kept by `set_state`: the questions asked after every finished
    #: task (may reduces start, is the job done, how far is it) then never walk a job of
    #: thousands of maps.
    done: dict[str, int] = field(default_factory=lambda: {"map": 0, "reduce": 0})

    def set_state(self, task: Task, state: TaskState) -> None:
        """Every change of a task's state goes through here, so the done counts stay true."""
        if task.state is TaskState.DONE:
            self.done[task.kind] -= 1
        if state is TaskState.DONE:
            self.done[task.kind] += 1
        task.state = state

    def all_done(self, kind: str) -> bool:
        return self.done[kind] == len(self.maps if kind == "map" else self.reduces)

    def complete(self) -> bool:
        return self.all_done("map") and self.all_done("reduce")

    def maps_per_slot(self) -> int:
        """Two while the job's maps are short, else one. A short map's time is mostly
        waiting (its runner, its command's start, the manager's answer), so one map per CPU
        leaves the CPU idle a quarter of the time; a second one per slot fills it, and being
        short, it holds little memory for little time."""
        times = self.map_times
        if len(times) >= SHORT_SAMPLE // 2 and statistics.median(times) <= SHORT_MAP_SECONDS:
            return 2
        return 1

    def max_attempts(self, kind: str) -> int:
        value = self.spec.conf.get(f"mapreduce.{kind}.maxattempts", DEFAULT_MAX_ATTEMPTS)
        return max(1, int(value))

    def speculative(self, kind: str) -> bool:
        value = self.spec.conf.get(f"mapreduce.{kind}.speculative",
                                   self.spec.conf.get("mapreduce.job.speculative", "true"))
        return value.strip().lower() in ("true", "1", "yes")

    def priority(self) -> int:
        """mapreduce.job.priority as a number (VERY_HIGH 5 … VERY_LOW 1, or an integer)."""
        return job_priority(self.spec.conf.get("mapreduce.job.priority", "NORMAL"))

    def conf_float(self, key: str, default: float) -> float:
        return float(self.spec.conf.get(key, default))

    @property
    def tasks(self) -> list[Task]:
        return self.maps + self.reduces

    def reduces_may_start(self) -> bool:
        """Whether the slowstart share of the maps is done."""
        return self.done["map"] >= self.slowstart() * len(self.maps)

    def slowstart(self) -> float:
        try:
            value = float(self.spec.conf.get("mapreduce.job.reduce.slowstart.completedmaps",
                                             DEFAULT_SLOWSTART))
        except ValueError:
            return DEFAULT_SLOWSTART
        return min(max(value, 0.0), 1.0)

    def phase_tasks(self) -> list[Task]:
        """Tasks that may run now: maps, then reduces once every map is done."""
        if self.all_done("map"):
            return self.reduces
        return self.maps

    def progress(self) -> tuple[float, float]:
        """Map and reduce progress: finished tasks, plus how far running ones are."""
        def frac(kind: str, tasks: list[Task]) -> float:
            if not tasks:
                return 1.0
            done, running = TaskState.DONE, 0.0
            for t in tasks:  # a plain loop: a generator per task cost 2.5 µs a task
                if t.attempts and t.state is not done:
                    running += max(a.fraction for a in t.attempts.values())
            return (self.done[kind] + running) / len(tasks)

        return frac("map", self.maps), frac("reduce", self.reduces)


@dataclass
class WorkerInfo:
    id: str
    host: str
    shuffle_port: int
    slots: int
    last_heartbeat: float
    #: Changes with every registration; heartbeats name it, so a datagram from an
    #: earlier life of the worker (or a replay of one) never counts for this one.
    session: str = ""
    heartbeat_seq: int = -1
    running: set[str] = field(default_factory=set)  # attempt ids
    alive: bool = True
    #: Known only from the journal (it holds restored map output) until it re-registers;
    #: it gets no tasks, and is declared dead if it stays away a heartbeat timeout.
    ghost: bool = False

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running) if self.alive else 0

    def free_for(self, kind: str, per_slot: int = 1) -> int:
        """Maps and reduces have a slot each per CPU, as MRv1's map and reduce slots: a reducer
        started early (slowstart) mostly waits for map output and must not keep a map from a
        CPU; once the maps are done the reducers have the CPUs. `per_slot`: attempts a slot
        takes (`Job.maps_per_slot`)."""
        if not self.alive:
            return 0
        mark = "_m_" if kind == "map" else "_r_"
        return self.slots * per_slot - sum(mark in a for a in self.running)
