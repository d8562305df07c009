"""The manager's journal: what a restarted manager needs to resume its jobs.

An append-only file in the manager's workdir, one JSON record a line, each line
`<crc32 hex> <json>` and fsync'd before the manager acts on what it records.
Replay reads lines until the first one whose checksum fails: a crash mid-write
leaves at most a torn last line, which is ignored and cut off before the next
append. Records:

- ``gen``: a manager started; its number (1, 2, …) offsets the attempt numbers of
  the jobs it restores, so attempt ids after a restart never collide with earlier ones.
- ``submit``: a job's JobSpec, input files, split list and staging directory,
  written before the client hears ``accepted``.
- ``done``: a task's winning attempt, its worker and where a map's output lives
  (host, shuffle port, attempt id), its counters and the job's ``Job Counters``.
- ``commit``: the job's final rename is about to happen.
- ``end``: the job is over (its state, message and counters).

Commit safety, reasoned through:

- A task commits by one rename of its part file into the staging directory, then its
  ``done`` is journaled. A crash in between leaves a part file whose task the journal
  calls unfinished: on replay the part files of unfinished tasks are removed before the
  task runs again (`stale_parts`), so the re-run commits once and nothing is duplicated.
- The job commits by writing ``_SUCCESS`` into the staging directory and renaming it,
  whole, onto the output path; ``commit`` is journaled first. The rename is atomic, so
  at any crash either the staging directory (with every part file) exists and the output
  does not, or the output exists complete with its ``_SUCCESS``. Replay of a job with
  ``commit`` but no ``end``: staging present, so the commit is redone (it is idempotent);
  staging gone and output present, so it succeeded. A ``_SUCCESS`` without complete
  output cannot be produced: ``_SUCCESS`` only ever appears inside the staging directory
  after every task is done, and only the rename makes it visible.
- A job without ``commit`` resumes: its tasks run until all are done, then it commits.

Stdlib only (the manager's side, but kept as small as the rest of cluster/).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: Attempt numbers per manager generation: a restored task's attempts start at gen * this.
ATTEMPTS_PER_GENERATION = 1000
#: Attempt ids carry at most six digits of attempt number (`hstream.job.ATTEMPT_ID`).
MAX_GENERATION = 999
#: Ended jobs a restarted manager still shows (`job status`), the newest ones.
KEEP_ENDED = 100


@dataclass
class JobRecord:
    """One job as the journal tells it."""

    id: str
    spec: dict[str, Any]
    files: list[str]
    splits: list[dict[str, Any]]
    staging: str
    #: (kind, index) -> its `done` record.
    done: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    commit_started: bool = False
    end: dict[str, Any] | None = None


def attempt_base(generation: int) -> int:
    """The first attempt number a task restored by this generation uses."""
    return min(max(generation - 1, 0), MAX_GENERATION) * ATTEMPTS_PER_GENERATION


def _line(record: dict[str, Any]) -> bytes:
    body = json.dumps(record, separators=(",", ":"), sort_keys=True)
    return f"{zlib.crc32(body.encode()):08x} {body}\n".encode()


def _parse(line: bytes) -> dict[str, Any] | None:
    """A record, or None if the line is torn or corrupt."""
    if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        record = json.loads(body)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def read(path: str) -> tuple[list[dict[str, Any]], int]:
    """Every good record, and the byte length they fill (what follows is torn)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], 0
    records, good = [], 0
    for line in data.splitlines(keepends=True):
        record = _parse(line)
        if record is None:
            logger.warning("journal %s: torn or corrupt record at byte %d ignored, with the "
                           "%d bytes after it", path, good, len(data) - good)
            break
        records.append(record)
        good += len(line)
    return records, good


def jobs(records: list[dict[str, Any]]) -> dict[str, JobRecord]:
    """The jobs the records tell of, in submission order."""
    found: dict[str, JobRecord] = {}
    for r in records:
        kind, job = r.get("t"), found.get(str(r.get("job")))
        if kind == "submit":
            found[r["job"]] = JobRecord(r["job"], r["spec"], r["files"], r["splits"],
                                        r["staging"])
        elif job is None:
            continue
        elif kind == "done":
            job.done[(r["kind"], int(r["index"]))] = r
        elif kind == "commit":
            job.commit_started = True
        elif kind == "end":
            job.end = r
    return found


class Journal:
    """The open journal; `append` may be called from any thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.records, good = read(path)
        gens = [int(r["gen"]) for r in self.records if r.get("t") == "gen"]
        self.generation = max(gens, default=0) + 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.ftruncate(fd, good)  # the torn tail, if any, goes before anything follows it
        os.lseek(fd, good, os.SEEK_SET)
        self._fd = fd
        self._lock = threading.Lock()
        self.append({"t": "gen", "gen": self.generation})

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and fsync it: once this returns, a restart will see it."""
        line = _line(record)
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)

    def jobs(self) -> dict[str, JobRecord]:
        """The jobs recorded before this manager started."""
        return jobs(self.records)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


def stale_parts(staging: str, index: int) -> list[str]:
    """The part file an unfinished task (a reduce, or a map of a map-only job) may have
    committed before a crash (see the docstring)."""
    prefix = f"part-{index:05d}"
    try:
        names = os.listdir(staging)
    except OSError:
        return []
    return [os.path.join(staging, n) for n in names if n == prefix or n.startswith(prefix + ".")]
