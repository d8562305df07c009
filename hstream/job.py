"""The data that travels: a submitted job, the task attempts cut from it, their results.

These dataclasses are the message payloads between client, manager, worker and
task runner; `to_dict`/`from_dict` are their JSON form. Stdlib only.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a dataclass from its dict form, nested dataclasses included."""
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name, value in data.items():
        f = hints.get(name)
        if f is None:
            continue
        sub = _NESTED.get((cls.__name__, name))
        if sub is not None and value is not None:
            value = ([from_dict(sub, v) for v in value] if isinstance(value, list)
                     else from_dict(sub, value))
        kwargs[name] = value
    return cls(**kwargs)


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


def staging_dir(output: str, job_id: str) -> str:
    """Where a job's output is assembled: hidden, next to -output, renamed onto it at commit."""
    parent, name = os.path.split(os.path.abspath(output))
    return os.path.join(parent, f".{name}.hstream-{job_number(job_id)}")


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
    ("TaskSpec", "sources"): MapOutput,
}
