"""Job data through the manager, for clusters whose hosts share no filesystem (`shared_fs = no`).

The manager's host holds the input, the shipped files and the output; a task
on another host reads its split, fetches shipped files and uploads its part
file over an authenticated connection to the manager. The manager serves only
what an active job declared: its input files (split by split, cut at line
boundaries on the manager's side, so the task sees exactly what a local read
would give) and its shipped files; uploads land only in that job's staging
area, under the attempt's own name, and are committed like local output.

Ops (one per connection, after the handshake): ``read_split`` {job_id, split},
``get_file`` {job_id, name}, ``put_output`` {job_id, attempt_id, name}; the
data follows as frames, then ``{"op": "end"}``.

Every id that becomes a path is checked against what the manager issued for that
very job: a split's file must be one of its inputs (and unchanged since submit);
a shipped name one it declared; an upload's attempt id must have the job's number
and the shape the manager gives attempt ids, its attempt directory must exist
(the manager makes it when it launches the attempt), and its file name must be a
part file's. Stdlib only.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from hstream import protocol
from hstream.errors import ProtocolError
from hstream.job import ShipFile, Split, from_dict, job_number, plain_name
from hstream.task.splits import InputChanged, check_unchanged, codec_of, read_split

logger = logging.getLogger(__name__)

OPS = ("read_split", "get_file", "put_output")
#: What a task uploads: its part file, maybe compressed (`Attempt.output_writer`).
_PART = re.compile(r"part-[0-9]{5,9}(?:\.gz|\.bz2|\.deflate)?")


@dataclass
class Export:
    """What one job may read from, and write to, the manager's host."""

    inputs: set[str]
    files: dict[str, str]  # shipped name -> path
    staging: str


@dataclass
class Exports:
    """The manager's registry of active jobs' exports; connection threads only read it."""

    jobs: dict[str, Export] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, job_id: str, inputs: list[str], files: list[ShipFile], staging: str) -> None:
        with self.lock:
            self.jobs[job_id] = Export(set(inputs), {f.name: f.path for f in files}, staging)

    def remove(self, job_id: str) -> None:
        with self.lock:
            self.jobs.pop(job_id, None)

    def active(self, job_id: str) -> bool:
        """Whether `job_id` is exported: its tasks' tokens are taken only while it is."""
        with self.lock:
            return job_id in self.jobs

    def get(self, job_id: object) -> Export:
        with self.lock:
            export = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if export is None:
            raise ProtocolError(f"no active job {job_id!r}")
        return export


# -- manager side --------------------------------------------------------------------


def serve(chan: protocol.Channel, msg: dict[str, object], exports: Exports) -> None:
    """Answer one relay request; anything outside the job's exports is refused."""
    export = exports.get(msg.get("job_id"))
    job_id, op = str(msg.get("job_id")), msg["op"]
    logger.info("relay %s for %s from %s", op, job_id, chan.peer)
    if op == "read_split":
        _serve_split(chan, msg.get("split"), export)
    elif op == "get_file":
        name = msg.get("name")
        path = export.files.get(name) if isinstance(name, str) and plain_name(name) else None
        if path is None:
            raise ProtocolError(f"{chan.peer}: {name!r} is not shipped by this job")
        with open(path, "rb") as f:
            _send_chunks(chan, iter(lambda: f.read(protocol.STREAM_FRAME), b""))
    elif op == "put_output":
        attempt_dir = _attempt_dir(chan.peer, job_id, msg.get("attempt_id"), export)
        name = msg.get("name")
        if not (isinstance(name, str) and _PART.fullmatch(name)):
            raise ProtocolError(f"{chan.peer}: {name!r} is not a part file name")
        _receive(chan, os.path.join(attempt_dir, name))
        chan.send({"op": "ok"})


def _serve_split(chan: protocol.Channel, raw: object, export: Export) -> None:
    try:
        split = from_dict(Split, raw)
    except (ValueError, TypeError) as e:
        raise ProtocolError(f"{chan.peer}: bad split: {e}") from None
    if split.path not in export.inputs or split.codec != codec_of(split.path):
        raise ProtocolError(f"{chan.peer}: {split.path!r} is not an input of this job")
    try:  # a changed file is the task's failure, told to it by name
        check_unchanged(split, os.stat(split.path))
    except (InputChanged, FileNotFoundError) as e:
        chan.send({"op": "error", "message": str(e)})
        return
    _send_chunks(chan, read_split(split))


def attempt_id_pattern(job_id: str) -> re.Pattern[str]:
    """Attempt ids the manager issues for this job (`job.attempt_id`)."""
    return re.compile(rf"attempt_{re.escape(job_number(job_id))}_[mr]_[0-9]{{6,9}}_[0-9]{{1,6}}")


def _attempt_dir(peer: str, job_id: str, attempt: object, export: Export) -> str:
    """The upload's directory: an attempt of this job that the manager launched."""
    if not (isinstance(attempt, str) and attempt_id_pattern(job_id).fullmatch(attempt)):
        raise ProtocolError(f"{peer}: {attempt!r} is not an attempt of {job_id}")
    path = os.path.join(export.staging, "_temporary", attempt)
    if not os.path.isdir(path) or os.path.islink(path):
        raise ProtocolError(f"{peer}: {attempt} was not launched (or its job has ended)")
    return path


def _send_chunks(chan: protocol.Channel, chunks: Iterator[bytes]) -> None:
    chan.send({"op": "data"})
    chan.send_stream(chunks)


def _receive(chan: protocol.Channel, path: str) -> None:
    with open(path + ".part", "wb") as out:
        for body in chan.recv_stream():
            out.write(body)
    os.replace(path + ".part", path)
