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
from hstream.job import ShipFile, Split, from_dict, to_dict
from hstream.splits import read_split

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


# -- task side -----------------------------------------------------------------------


def _connect(manager: str, secret: bytes) -> protocol.Channel:
    host, _, port = manager.rpartition(":")
    return protocol.connect(host.strip("[]"), int(port), secret)


def _download(manager: str, secret: bytes, request: dict[str, object]) -> Iterator[bytes]:
    chan = _connect(manager, secret)
    try:
        head = chan.request(request)
        if head["op"] != "data":
            raise OSError(f"manager refused {request['op']}: {head}")
        yield from chan.recv_stream()
    finally:
        chan.close()


def read_remote_split(manager: str, secret: bytes, job_id: str, split: Split) -> Iterator[bytes]:
    """The split's lines, read on the manager's host."""
    return _download(manager, secret, {"op": "read_split", "job_id": job_id, "split": to_dict(split)})


def fetch_file(manager: str, secret: bytes, job_id: str, name: str, dest: str) -> None:
    """Copy a shipped file from the manager's host (atomically, so attempts can share it)."""
    if os.path.exists(dest):
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{os.getpid()}.part"
    with open(tmp, "wb") as out:
        for chunk in _download(manager, secret, {"op": "get_file", "job_id": job_id, "name": name}):
            out.write(chunk)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


def upload_output(manager: str, secret: bytes, job_id: str, attempt_id: str, path: str) -> None:
    """Send a finished part file to the job's staging area on the manager's host."""
    chan = _connect(manager, secret)
    try:
        chan.send({"op": "put_output", "job_id": job_id, "attempt_id": attempt_id,
                   "name": os.path.basename(path)})
        with open(path, "rb") as f:
            chan.send_stream(iter(lambda: f.read(protocol.STREAM_FRAME), b""))
        reply = chan.recv()
        if reply["op"] != "ok":
            raise OSError(f"manager refused the output: {reply}")
    finally:
        chan.close()
