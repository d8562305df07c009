"""Job history: what every job did (configuration, times, counters, every attempt with its
stderr tail, byte rates over time), kept after the job ends.

The manager's loop thread calls one method per event (job submitted, attempt started,
reported, ended, killed or lost with its worker, job finished). A call only queues the
event, so the loop never waits on a disk. A writer thread folds the events into the live
job's record (the web pages read it) and appends them to the job's `events.jsonl`; when the
job ends it writes `record.json` and `summary.json`, drops the event log, and prunes the
oldest jobs down to `max_jobs` and `max_bytes`.

One directory per job under the root (the manager's workdir/history on a cluster,
$HSTREAM_HOME/history or ~/.hstream/history for embedded runs):

    JOB/summary.json    one small record for listings (written at submit and at the end)
    JOB/events.jsonl    the events while the job runs (replayed if its manager died)
    JOB/record.json     the whole record, once the job ended
    JOB/stderr/ATTEMPT  the last 64 KiB of the attempt's stderr

Byte rates come from the byte counts that attempts send with their progress reports: the
bytes since an attempt's previous report are spread evenly over the time between the two,
into per-second buckets (coarser once a job runs long), one series each for input read,
shuffle fetched and output written: the MapReduce paper's Figure 3.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import queue
import re
import shutil
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, Any

from hstream.cluster.scheduler import Scheduler
from hstream.cluster.state import Attempt, Job
from hstream.job import JobSpec, TaskResult, TaskSpec, task_id, to_dict

logger = logging.getLogger(__name__)

DEFAULT_MAX_JOBS = 100
DEFAULT_MAX_MB = 100
#: The part of an attempt's stderr that is kept (its end: where the error is).
STDERR_TAIL = 64 << 10
#: A job's rate series never have more buckets than this; long jobs get wider buckets.
MAX_BUCKETS = 1800
SERIES = ("input", "shuffle", "output")
#: Finished jobs kept in memory too, so their pages load without reading the disk.
RECENT = 4
JOB_ID = re.compile(r"job_\d+_\d+")
TASK_ID = re.compile(r"task_\d+_\d+_[mr]_\d{6}")
ATTEMPT_ID = re.compile(r"attempt_\d+_\d+_[mr]_\d{6}_\d+")
RUNNING = ("queued", "running")
MFW = "Map-Reduce Framework"


def default_root() -> str:
    """Where embedded runs keep their history: $HSTREAM_HOME/history, ~/.hstream/history."""
    home = os.environ.get("HSTREAM_HOME") or os.path.join(os.path.expanduser("~"), ".hstream")
    return os.path.join(home, "history")


@dataclass
class HistoryConfig:
    """Where the history lives and how much of it is kept (None: nothing on disk)."""

    root: str | None
    max_jobs: int = DEFAULT_MAX_JOBS
    max_bytes: int = DEFAULT_MAX_MB << 20


# -- the record ------------------------------------------------------------------------------


@dataclass
class AttemptRecord:
    id: str
    task: str
    kind: str
    index: int
    number: int
    worker: str
    host: str
    start: float
    end: float = 0.0
    #: running, succeeded, failed, killed (by the manager) or lost (its worker died).
    outcome: str = "running"
    error: str = ""
    exit_status: int | None = None
    #: The command's last `reporter:status:` message, and how far the attempt got.
    status: str = ""
    progress: float = 0.0
    speculative: bool = False
    #: Bytes of input read (maps), shuffle fetched (reduces), output written.
    read: int = 0
    fetched: int = 0
    written: int = 0
    #: Bytes of stderr kept in stderr/ATTEMPT.
    stderr: int = 0
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    #: When the byte counts were last reported: new bytes are spread from then to now.
    sampled: float = 0.0

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"


@dataclass
class Rates:
    """Bytes per bucket of `step` seconds since the job was submitted, per series."""

    step: float = 1.0
    input: list[float] = field(default_factory=list)
    shuffle: list[float] = field(default_factory=list)
    output: list[float] = field(default_factory=list)

    def add(self, series: str, t0: float, t1: float, amount: float) -> None:
        """Spread `amount` bytes evenly over [t0, t1] (seconds after submission)."""
        if amount <= 0:
            return
        t0 = max(t0, 0.0)
        t1 = max(t1, t0)
        while t1 / self.step >= MAX_BUCKETS:
            self._coarsen()
        if t1 - t0 < 1e-6:
            self._put(series, int(t0 / self.step), amount)
            return
        for b in range(int(t0 / self.step), int(t1 / self.step) + 1):
            overlap = min(t1, (b + 1) * self.step) - max(t0, b * self.step)
            if overlap > 0:
                self._put(series, b, amount * overlap / (t1 - t0))

    def _put(self, series: str, bucket: int, amount: float) -> None:
        values: list[float] = getattr(self, series)
        if len(values) <= bucket:
            values.extend([0.0] * (bucket + 1 - len(values)))
        values[bucket] += amount

    def _coarsen(self) -> None:
        self.step *= 2
        for name in SERIES:
            v: list[float] = getattr(self, name)
            setattr(self, name, [sum(v[i:i + 2]) for i in range(0, len(v), 2)])

    def per_second(self, series: str) -> list[float]:
        return [v / self.step for v in getattr(self, series)]


@dataclass
class Summary:
    """A job in one line: what listings show and what pruning needs."""

    id: str
    name: str
    state: str
    submitted: float
    finished: float
    maps: int
    reduces: int
    attempts: int
    failed: int
    output: str
    host: str
    pid: int
    #: Bytes the job's history takes on disk (known once it ended).
    bytes: int = 0
    #: The history directory it lives in.
    root: str = ""


@dataclass
class JobRecord:
    id: str
    name: str
    submitted: float
    maps: int
    reduces: int
    output: str = ""
    state: str = "running"
    finished: float = 0.0
    message: str = ""
    #: The job as submitted: commands, inputs, output, every property.
    spec: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The manager that ran it: a running job whose manager is gone is shown as lost.
    host: str = ""
    pid: int = 0
    attempts: dict[str, AttemptRecord] = field(default_factory=dict)
    rates: Rates = field(default_factory=Rates)

    def summary(self, root: str = "", size: int = 0) -> Summary:
        failed = sum(a.failed for a in self.attempts.values())
        return Summary(self.id, self.name, self.state, self.submitted, self.finished, self.maps,
                       self.reduces, len(self.attempts), failed, self.output, self.host,
                       self.pid, size, root)

    def ended(self, now: float) -> float:
        """When the job ended, or `now` while it runs."""
        return self.finished or now

    def snapshot(self) -> JobRecord:
        """A copy that the writer thread's later changes do not reach."""
        out = copy.copy(self)
        out.attempts = {k: copy.copy(a) for k, a in self.attempts.items()}
        out.rates = Rates(self.rates.step, list(self.rates.input), list(self.rates.shuffle),
                          list(self.rates.output))
        out.counters = copy.deepcopy(self.counters)
        return out


# -- events -> record ----------------------------------------------------------------------------


def fold(record: JobRecord | None, ev: dict[str, Any]) -> JobRecord | None:
    """Apply one event to a job's record (the first event, `submitted`, creates it)."""
    kind = ev["e"]
    if kind == "submitted":
        return _submitted(ev)
    if record is None:
        return None
    handler = _FOLDS.get(kind)
    if handler is not None:
        handler(record, ev)
    return record


def _submitted(ev: dict[str, Any]) -> JobRecord:
    spec = ev.get("spec", {})
    return JobRecord(ev["job"], str(spec.get("name", "")), ev["t"], ev["maps"], ev["reduces"],
                     output=str(spec.get("output", "")), spec=spec, host=ev.get("host", ""),
                     pid=ev.get("pid", 0))


def _started(record: JobRecord, ev: dict[str, Any]) -> None:
    tid = task_id(record.id, ev["kind"], ev["index"])
    record.attempts[ev["attempt"]] = AttemptRecord(
        ev["attempt"], tid, ev["kind"], ev["index"], ev["number"], ev["worker"], ev["host"],
        ev["t"], speculative=ev["speculative"], sampled=ev["t"])


def _progress(record: JobRecord, ev: dict[str, Any]) -> None:
    a = record.attempts.get(ev["attempt"])
    if a is None or a.outcome != "running":
        return
    if ev.get("progress") is not None:
        a.progress = ev["progress"]
    if ev.get("status") is not None:
        a.status = ev["status"]
    if ev.get("bytes") is not None:
        _sample(record, a, ev["t"], ev["bytes"])


def _sample(record: JobRecord, a: AttemptRecord, t: float, counts: list[int]) -> None:
    """New byte counts of an attempt: the growth since its last report goes into the rates."""
    t0, t1 = a.sampled - record.submitted, t - record.submitted
    for series, old, new in zip(SERIES, (a.read, a.fetched, a.written), counts, strict=True):
        record.rates.add(series, t0, t1, new - old)
    a.read, a.fetched, a.written = (max(n, o) for n, o in
                                    zip(counts, (a.read, a.fetched, a.written), strict=True))
    a.sampled = t


def _done(record: JobRecord, ev: dict[str, Any]) -> None:
    a = record.attempts.get(ev["attempt"])
    if a is None or a.outcome != "running":
        return
    if ev["ok"]:
        _sample(record, a, ev["t"], ev["bytes"])
        a.counters = ev["counters"]
        a.progress = 1.0
    a.outcome = "succeeded" if ev["ok"] else "failed"
    a.error, a.exit_status, a.end, a.stderr = ev["error"], ev["exit_status"], ev["t"], ev["stderr"]


def _ended(outcome: str) -> Any:
    def handler(record: JobRecord, ev: dict[str, Any]) -> None:
        a = record.attempts.get(ev["attempt"])
        if a is not None and a.outcome == "running":
            a.outcome, a.end = outcome, ev["t"]
    return handler


def _lost(record: JobRecord, ev: dict[str, Any]) -> None:
    for a in record.attempts.values():
        if a.worker == ev["worker"] and a.outcome == "running":
            a.outcome, a.end, a.error = "lost", ev["t"], f"worker lost: {ev['reason']}"


def _finished(record: JobRecord, ev: dict[str, Any]) -> None:
    record.state, record.message, record.finished = ev["state"], ev["message"], ev["t"]
    record.counters = ev["counters"]
    for attempt_id, error in ev["failures"].items():  # e.g. timed out: killed, then failed
        a = record.attempts.get(attempt_id)
        if a is not None and a.outcome in ("killed", "running"):
            a.outcome, a.error, a.end = "failed", error, a.end or ev["t"]
    for a in record.attempts.values():
        if a.outcome == "running":
            a.outcome, a.end = "killed", ev["t"]


_FOLDS: dict[str, Any] = {"started": _started, "progress": _progress, "done": _done,
                          "killed": _ended("killed"), "lost": _lost, "finished": _finished}


# -- the manager's side ------------------------------------------------------------------------


class History:
    """Event hooks for the manager's loop thread, a writer thread, and reads for the pages."""

    def __init__(self, config: HistoryConfig) -> None:
        self.root = config.root
        self.max_jobs = max(1, config.max_jobs)
        self.max_bytes = config.max_bytes
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.lock = threading.Lock()
        self.live: dict[str, JobRecord] = {}
        self.recent: OrderedDict[str, JobRecord] = OrderedDict()
        self._jobs_of: dict[str, str] = {}  # attempt id -> job id (writer thread)
        self._logs: dict[str, IO[str]] = {}  # job id -> its open event log (writer thread)
        self.host = socket.gethostname()
        self._thread = threading.Thread(target=self._write_loop, daemon=True, name="history")
        self._thread.start()

    # -- hooks (loop thread): each only queues ---------------------------------------------------
    def job_submitted(self, job: Job) -> None:
        self._put("submitted", job=job.id, spec=_spec_dict(job.spec), maps=len(job.maps),
                  reduces=len(job.reduces), host=self.host, pid=os.getpid())

    def attempt_started(self, spec: TaskSpec, scheduler: Scheduler) -> None:
        attempt = _attempt(scheduler, spec)
        worker = scheduler.workers.get(attempt.worker_id) if attempt else None
        self._put("started", job=spec.job_id, attempt=spec.attempt_id, kind=spec.kind,
                  index=spec.index, number=spec.attempt, worker=worker.id if worker else "?",
                  host=worker.host if worker else "?",
                  speculative=bool(attempt and attempt.speculative))

    def attempt_progress(self, attempt_id: str, msg: dict[str, Any]) -> None:
        progress, status = msg.get("progress"), msg.get("status")
        self._put("progress", attempt=attempt_id,
                  progress=float(progress) if isinstance(progress, (int, float)) else None,
                  status=str(status)[:1000] if status is not None else None,
                  bytes=_byte_counts(msg.get("bytes")))

    def attempt_done(self, attempt_id: str, result: TaskResult, stderr: object) -> None:
        text = tail(stderr) if isinstance(stderr, str) else ""
        c = result.counters
        counts = [c.get("File Input Format Counters", {}).get("Bytes Read", 0),
                  c.get(MFW, {}).get("Reduce shuffle bytes", 0),
                  c.get("File Output Format Counters", {}).get("Bytes Written", 0)]
        self._put("done", attempt=attempt_id, ok=result.ok, error=result.error,
                  exit_status=result.exit_status, counters=c if result.ok else {},
                  bytes=counts, stderr=len(text.encode("utf-8", "replace")), text=text)

    def attempt_killed(self, attempt_id: str) -> None:
        self._put("killed", attempt=attempt_id)

    def worker_lost(self, worker_id: str, reason: str) -> None:
        self._put("lost", worker=worker_id, reason=reason)

    def job_finished(self, job: Job) -> None:
        failures = {h.attempt_id: h.error for t in job.tasks for h in t.history}
        self._put("finished", job=job.id, state=job.state.value, message=job.message,
                  counters=copy.deepcopy(job.counters), failures=failures)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, end running jobs' records (killed), and stop the writer."""
        self.queue.put(None)
        self._thread.join(timeout)

    def _put(self, event: str, **fields: Any) -> None:
        self.queue.put({"e": event, "t": time.time(), **fields})

    # -- reads (any thread) ---------------------------------------------------------------
    def summaries(self) -> list[Summary]:
        """Every job, newest first: running ones from memory, the others from the disk."""
        with self.lock:
            recent = [r.summary(self.root or "") for r in self.recent.values()]
            live = [r.summary(self.root or "") for r in self.live.values()]
        disk = list_summaries([self.root]) if self.root else []
        merged = {s.id: s for s in recent} | {s.id: s for s in disk} | {s.id: s for s in live}
        return sorted(merged.values(), key=lambda s: (s.submitted, s.id), reverse=True)

    def job(self, job_id: str) -> JobRecord | None:
        with self.lock:
            record = self.live.get(job_id) or self.recent.get(job_id)
            if record is not None:
                return record.snapshot()
        return load_job(self.root, job_id) if self.root else None

    def stderr(self, job_id: str, attempt_id: str) -> str | None:
        return read_stderr(self.root, job_id, attempt_id) if self.root else None

    # -- the writer thread -----------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            batch = [self.queue.get()]
            while not self.queue.empty() and len(batch) < 1000:
                batch.append(self.queue.get_nowait())
            for ev in batch:
                if ev is None:
                    self._end_all()
                    return
                try:
                    self._handle(ev)
                except OSError as e:  # a full or read-only disk: the job runs on regardless
                    logger.error("history: event %s not recorded: %s", ev.get("e"), e)
                except Exception:  # noqa: BLE001 - the writer outlives any one bad event
                    logger.exception("history: event %s not recorded", ev.get("e"))
            for log in self._logs.values():
                _flush(log)

    def _handle(self, ev: dict[str, Any]) -> None:
        job_id = ev.get("job") or self._jobs_of.get(ev.get("attempt", ""))
        if ev["e"] == "lost":
            for jid in list(self.live):
                self._apply(jid, ev)
            return
        if job_id is None:
            return
        if ev["e"] == "started":
            self._jobs_of[ev["attempt"]] = job_id
        text = ev.pop("text", "")  # kept in a file of its own, not in the event log
        self._apply(job_id, ev)
        if text:
            self._keep_stderr(job_id, ev["attempt"], text)
        if ev["e"] == "finished":
            self._job_ended(job_id)

    def _apply(self, job_id: str, ev: dict[str, Any]) -> None:
        with self.lock:
            before = self.live.get(job_id)
            record = fold(before, ev)
            if record is None:
                return
            self.live[job_id] = record
        if ev["e"] == "submitted":
            self._open_job(record)
        self._log(job_id, ev)

    def _open_job(self, record: JobRecord) -> None:
        if self.root is None:
            return
        d = job_dir(self.root, record.id)
        os.makedirs(os.path.join(d, "stderr"), exist_ok=True)
        _write_json(os.path.join(d, "summary.json"), dataclasses.asdict(record.summary()))
        self._logs[record.id] = open(os.path.join(d, "events.jsonl"), "a", encoding="utf-8")

    def _log(self, job_id: str, ev: dict[str, Any]) -> None:
        log = self._logs.get(job_id)
        if log is not None:
            log.write(json.dumps(ev, separators=(",", ":")) + "\n")

    def _keep_stderr(self, job_id: str, attempt_id: str, text: str) -> None:
        if self.root is None or not ATTEMPT_ID.fullmatch(attempt_id):
            return
        path = os.path.join(job_dir(self.root, job_id), "stderr", attempt_id)
        with open(path, "w", encoding="utf-8", errors="replace") as f:
            f.write(text)

    def _job_ended(self, job_id: str) -> None:
        """Write the record and summary, drop the event log, prune old jobs."""
        with self.lock:
            record = self.live[job_id]
        log = self._logs.pop(job_id, None)
        if log is not None:
            log.close()
        if self.root is not None:
            try:
                self._save(record)
            except OSError as e:
                logger.error("history: job %s not saved: %s", job_id, e)
        with self.lock:
            del self.live[job_id]
            self.recent[job_id] = record
            while len(self.recent) > RECENT:
                self.recent.popitem(last=False)
        self._jobs_of = {a: j for a, j in self._jobs_of.items() if j != job_id}
        if self.root is not None:
            prune(self.root, self.max_jobs, self.max_bytes, keep=set(self.live))

    def _save(self, record: JobRecord) -> None:
        assert self.root is not None
        d = job_dir(self.root, record.id)
        _write_json(os.path.join(d, "record.json"), record_to_json(record))
        _remove(os.path.join(d, "events.jsonl"))
        size = dir_size(d)
        _write_json(os.path.join(d, "summary.json"), dataclasses.asdict(record.summary("", size)))

    def _end_all(self) -> None:
        """The manager stops: the jobs it was running end with it."""
        for job_id in list(self.live):
            try:
                self._apply(job_id, {"e": "finished", "t": time.time(), "state": "killed",
                                     "message": "manager shut down", "counters":
                                     self.live[job_id].counters, "failures": {}})
                self._job_ended(job_id)
            except (OSError, ValueError) as e:
                logger.error("history: job %s not saved: %s", job_id, e)


def _spec_dict(spec: JobSpec) -> dict[str, Any]:
    return to_dict(spec)


def _attempt(scheduler: Scheduler, spec: TaskSpec) -> Attempt | None:
    """The scheduler's record of a just-assigned attempt (its worker, whether a backup)."""
    job = scheduler.jobs.get(spec.job_id)
    tasks = (job.maps if spec.kind == "map" else job.reduces) if job else []
    return tasks[spec.index].attempts.get(spec.attempt_id) if spec.index < len(tasks) else None


def tail(text: str, limit: int = STDERR_TAIL) -> str:
    """The last `limit` bytes of `text` (UTF-8), from a character boundary."""
    data = text.encode("utf-8", "replace")
    return text if len(data) <= limit else data[-limit:].decode("utf-8", "ignore")


def _byte_counts(value: object) -> list[int] | None:
    """[read, fetched, written] from a progress report, if it is well formed."""
    if (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, int) and 0 <= v < 1 << 62 for v in value)):
        return list(value)
    return None


def _flush(log: IO[str]) -> None:
    try:
        log.flush()
    except OSError as e:
        logger.error("history: cannot write an event log: %s", e)


# -- the disk -------------------------------------------------------------------------------


def job_dir(root: str, job_id: str) -> str:
    """A job's directory; the id is checked so that no request names a path of its own."""
    if not JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return os.path.join(root, job_id)


def job_of_attempt(attempt_id: str) -> str:
    """The job an attempt id belongs to (`attempt_<job number>_<kind>_<task>_<n>`)."""
    return "job_" + "_".join(attempt_id.split("_")[1:3])


def record_to_json(record: JobRecord) -> dict[str, Any]:
    out = dict(vars(record))
    out["attempts"] = [dict(vars(a)) for a in record.attempts.values()]
    out["rates"] = dict(vars(record.rates))
    return out


def record_from_json(data: dict[str, Any]) -> JobRecord:
    attempts = [_build(AttemptRecord, a) for a in data.get("attempts", [])]
    record: JobRecord = _build(JobRecord, {k: v for k, v in data.items()
                                           if k not in ("attempts", "rates")})
    record.attempts = {a.id: a for a in attempts}
    record.rates = _build(Rates, data.get("rates", {}))
    return record


def _build(cls: Any, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def load_job(root: str, job_id: str) -> JobRecord | None:
    """A job's record: the saved one, or its events replayed (its manager may be gone)."""
    try:
        d = job_dir(root, job_id)
    except ValueError:
        return None
    try:
        with open(os.path.join(d, "record.json"), encoding="utf-8") as f:
            return record_from_json(json.load(f))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError) as e:
        logger.warning("history: %s/record.json unreadable: %s", d, e)
        return None
    return _replay(os.path.join(d, "events.jsonl"))


def _replay(path: str) -> JobRecord | None:
    record: JobRecord | None = None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = fold(record, json.loads(line))
                except (ValueError, KeyError, TypeError):
                    break  # a line cut short when the manager died
    except OSError:
        return None
    if record is not None and record.state in RUNNING and not manager_alive(record.host,
                                                                            record.pid):
        record.state, record.message = "lost", "its manager stopped before the job ended"
    return record


def manager_alive(host: str, pid: int) -> bool:
    """Whether the manager that wrote a running job's history still runs (if it ran here)."""
    if host != socket.gethostname() or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_stderr(root: str, job_id: str, attempt_id: str) -> str | None:
    if not ATTEMPT_ID.fullmatch(attempt_id):
        return None
    try:
        path = os.path.join(job_dir(root, job_id), "stderr", attempt_id)
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (OSError, ValueError):
        return None


def list_summaries(roots: list[str]) -> list[Summary]:
    """Every job in these history directories, newest first."""
    found: dict[str, Summary] = {}
    for root in roots:
        for s in _summaries(root):
            found.setdefault(s.id, s)
    return sorted(found.values(), key=lambda s: (s.submitted, s.id), reverse=True)


def _summaries(root: str) -> list[Summary]:
    try:
        names = [n for n in os.listdir(root) if JOB_ID.fullmatch(n)]
    except OSError:
        return []
    out = []
    for name in names:
        s = _read_summary(root, name)
        if s is not None:
            out.append(s)
    return out


def _read_summary(root: str, job_id: str) -> Summary | None:
    try:
        with open(os.path.join(root, job_id, "summary.json"), encoding="utf-8") as f:
            s: Summary = _build(Summary, json.load(f))
    except (OSError, ValueError, TypeError):
        return None
    s.root = root
    if s.state in RUNNING and not manager_alive(s.host, s.pid):
        s.state = "lost"
    return s


def find_job(roots: list[str], job_id: str) -> tuple[str, JobRecord] | None:
    """(history directory, record) of a job in the first directory that has it."""
    for root in roots:
        record = load_job(root, job_id)
        if record is not None:
            return root, record
    return None


def prune(root: str, max_jobs: int, max_bytes: int, keep: set[str]) -> None:
    """Delete the oldest ended jobs beyond `max_jobs` or `max_bytes` (never the newest one,
    never a job still running here or under another live manager)."""
    jobs = sorted(_summaries(root), key=lambda s: (s.submitted, s.id), reverse=True)
    total = 0
    for n, s in enumerate(jobs):
        total += s.bytes
        if n == 0 or s.id in keep or s.state in RUNNING:
            continue
        if n >= max_jobs or total > max_bytes:
            shutil.rmtree(os.path.join(root, s.id), ignore_errors=True)
            logger.info("history: pruned %s (%d bytes)", s.id, s.bytes)


def dir_size(path: str) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(d, name)).st_size
            except OSError:
                pass
    return total


def _write_json(path: str, data: Any) -> None:
    """Whole or not at all: a reader never sees half a file."""
    tmp = f"{path}.tmp"
    text = json.dumps(data, separators=(",", ":"))  # C encoder; json.dump is pure Python
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
