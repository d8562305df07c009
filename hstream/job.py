"""The data that travels: a submitted job, the task attempts cut from it, their results.

These dataclasses are the message payloads between client, manager, worker and
task runner; `to_dict`/`from_dict` are their JSON form. Stdlib only.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: The shapes of the ids the manager issues (`new_job_id`, `task_id`, `attempt_id`).
JOB_ID = re.compile(r"job_[0-9]{1,24}_[0-9]{4,9}")
ATTEMPT_ID = re.compile(r"attempt_[0-9]{1,24}_[0-9]{4,9}_[mr]_[0-9]{6,9}_[0-9]{1,6}")


def to_dict(obj: Any) -> dict[str, Any]:
    """`dataclasses.asdict`, without its deep copy of every leaf: these messages hold
    strings, numbers, lists and dicts, and a map's spec and result go through here several
    times per attempt (a job of thousands of small maps spent a tenth of its runners' time
    in `asdict`)."""
    return {name: _plain(getattr(obj, name)) for name in _field_names(type(obj))}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _plain(value: Any) -> Any:
    """A copy of `value` made of plain JSON-able containers (as `asdict` makes one)."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, tuple):
        return type(value)(*map(_plain, value)) if hasattr(value, "_fields") else tuple(
            _plain(v) for v in value)
    return copy.deepcopy(value)


def from_dict(cls: type[T], data: Any) -> T:
    """Build a dataclass from its dict form, nested dataclasses included; ValueError names
    what is missing or not an object (receivers check the schema first, see messages.py)."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name, value in data.items():
        if name not in names:
            continue
        sub = _NESTED.get((cls.__name__, name))
        if sub is not None and value is not None:
            value = ([from_dict(sub, v) for v in value] if isinstance(value, list)
                     else from_dict(sub, value))
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ValueError(f"{cls.__name__}: {e}") from None


def plain_name(name: str) -> bool:
    """A name that stays inside the directory it is joined to: no `/`, no `..`, no NUL."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


@dataclass
class ShipFile:
    """A file every task sees in its working directory under `name` (`-file`, `-files a#name`)."""

    path: str
    name: str
    archive: bool = False


@dataclass
class JobSpec:
    """A streaming job as the client resolved it from the command line."""

    name: str
    inputs: list[str]
    output: str
    mapper: str
    reducer: str | None
    combiner: str | None = None
    num_reduces: int = 1
    num_maps: int | None = None
    files: list[ShipFile] = field(default_factory=list)
    cmdenv: dict[str, str] = field(default_factory=dict)
    conf: dict[str, str] = field(default_factory=dict)
    lazy_output: bool = False
    #: Where the client ran, so relative commands resolve like they did there.
    cwd: str = ""
    #: Set by the manager: False when hosts share no filesystem and data goes through it.
    shared_fs: bool = True


@dataclass
class Split:
    """A byte range of one input file, cut at line boundaries when it is read."""

    path: str
    start: int
    length: int
    #: "" for plain files, "gz" or "bz2" (such files are one split each).
    codec: str = ""
    #: The file's size and mtime when the job was submitted (-1: not recorded): reading
    #: checks them, so a file changed under a running job fails the attempt.
    size: int = -1
    mtime_ns: int = -1
    #: CombineTextInputFormat: the file ranges this one split packs together (then `path`,
    #: `start` and `length` describe the first).
    parts: list[Split] = field(default_factory=list)
    #: StreamXmlRecordReader (`-inputreader`): its settings (begin, end, slowmatch, maxrec,
    #: lookahead) and how a record reaches the mapper (key_suffix); empty for line records.
    reader: dict[str, str] = field(default_factory=dict)


@dataclass
class MapOutput:
    """Where a reducer fetches one map's partitions from."""

    map_index: int
    attempt_id: str
    host: str
    port: int


@dataclass
class TaskSpec:
    """Everything a task runner needs to run one attempt, on any host."""

    job_id: str
    kind: str  # "map" or "reduce"
    index: int
    attempt: int
    num_reduces: int
    command: str
    combiner: str | None
    conf: dict[str, str]
    env: dict[str, str]
    files: list[ShipFile]
    #: Where a committed output file goes (reduce, or map of a map-only job).
    output_dir: str
    split: Split | None = None
    sources: list[MapOutput] = field(default_factory=list)
    #: A reduce's number of maps: when `sources` has fewer (it started before every map was
    #: done: slowstart), the others arrive on the runner's stdin as they finish.
    num_maps: int = 0
    lazy_output: bool = False
    shared_fs: bool = True
    #: The manager's HOST:PORT, filled in by the worker (for data through the manager).
    manager: str = ""

    @property
    def task_id(self) -> str:
        return task_id(self.job_id, self.kind, self.index)

    @property
    def attempt_id(self) -> str:
        return attempt_id(self.job_id, self.kind, self.index, self.attempt)


@dataclass
class TaskResult:
    """What a finished attempt reports."""

    ok: bool
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Output file written by this attempt (reduce / map-only), relative to output_dir.
    output_file: str | None = None
    error: str = ""
    #: A reducer that could not fetch this map's output reports it instead of failing.
    fetch_failed_map: int | None = None
    exit_status: int | None = None
    stderr_tail: list[str] = field(default_factory=list)
    #: A small map's output, appended to its runner's pack file (`shuffle.append_pack`):
    #: [offset, bytes of partition 0, of partition 1, …]. For its worker only.
    packed: list[int] | None = None


def staging_dir(output: str, job_id: str) -> str:
    """Where a job's output is assembled: hidden, next to -output, renamed onto it at commit."""
    parent, name = os.path.split(os.path.abspath(output))
    return os.path.join(parent, f".{name}.hstream-{job_number(job_id)}")


_stamp_lock = threading.Lock()
_last_ms = 0


def cluster_stamp() -> str:
    """What tells one manager's job ids from another's: Hadoop's cluster timestamp (ms), a new
    millisecond for each manager in this process, then this process's id. Two managers started
    in the same millisecond on one machine (concurrent local runs) are different processes, so
    their ids differ; the millisecond comes first and is 13 digits, so the join is unambiguous."""
    global _last_ms
    with _stamp_lock:
        _last_ms = ms = max(int(time.time() * 1000), _last_ms + 1)
    return f"{ms}{os.getpid()}"


def new_job_id(stamp: str, number: int) -> str:
    """Hadoop's `job_<cluster timestamp>_<NNNN>`, with `cluster_stamp` as the timestamp."""
    return f"job_{stamp}_{number:04d}"


def job_number(job_id: str) -> str:
    return job_id.split("_", 1)[1]


def task_id(job_id: str, kind: str, index: int) -> str:
    return f"task_{job_number(job_id)}_{kind[0]}_{index:06d}"


def attempt_id(job_id: str, kind: str, index: int, attempt: int) -> str:
    return f"attempt_{job_number(job_id)}_{kind[0]}_{index:06d}_{attempt}"


_NESTED: dict[tuple[str, str], type] = {
    ("JobSpec", "files"): ShipFile,
    ("TaskSpec", "files"): ShipFile,
    ("TaskSpec", "split"): Split,
    ("Split", "parts"): Split,
    ("TaskSpec", "sources"): MapOutput,
}
