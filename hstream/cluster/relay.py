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
data follows as frames, then ``{"op": "end"}``. Stdlib only.
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
from hstream.job import ShipFile, Split, from_dict
from hstream.task.splits import read_split

logger = logging.getLogger(__name__)

OPS = ("read_split", "get_file", "put_output")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


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
    op = msg["op"]
    logger.info("relay %s for %s from %s", op, msg.get("job_id"), chan.peer)
    if op == "read_split":
        split = from_dict(Split, msg["split"])  # type: ignore[arg-type]
        if split.path not in export.inputs:
            raise ProtocolError(f"{chan.peer}: {split.path} is not an input of this job")
        _send_chunks(chan, read_split(split))
    elif op == "get_file":
        path = export.files.get(str(msg.get("name")))
        if path is None:
            raise ProtocolError(f"{chan.peer}: {msg.get('name')!r} is not shipped by this job")
        with open(path, "rb") as f:
            _send_chunks(chan, iter(lambda: f.read(protocol.STREAM_FRAME), b""))
    elif op == "put_output":
        attempt, name = str(msg.get("attempt_id")), str(msg.get("name"))
        if not (_NAME.match(attempt) and _NAME.match(name)):
            raise ProtocolError(f"{chan.peer}: bad output name")
        _receive(chan, os.path.join(export.staging, "_temporary", attempt, name))
        chan.send({"op": "ok"})


def _send_chunks(chan: protocol.Channel, chunks: Iterator[bytes]) -> None:
    chan.send({"op": "data"})
    chan.send_stream(chunks)


def _receive(chan: protocol.Channel, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".part", "wb") as out:
        for body in chan.recv_stream():
            out.write(body)
    os.replace(path + ".part", path)
