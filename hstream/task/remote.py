"""A task's side of the manager's relay (`shared_fs = no`): read a split on the manager's host,
fetch a shipped file, upload a finished part file. The server side is `cluster/relay.py`.
Every call authenticates with the job's token (`protocol.Auth.for_job`), never the secret.
Stdlib only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from hstream import protocol
from hstream.job import Split, to_dict


def _connect(manager: str, auth: protocol.Auth) -> protocol.Channel:
    host, _, port = manager.rpartition(":")
    return protocol.connect(host.strip("[]"), int(port), auth)


def _download(manager: str, auth: protocol.Auth, request: dict[str, object]) -> Iterator[bytes]:
    chan = _connect(manager, auth)
    try:
        head = chan.request(request)
        if head["op"] != "data":
            raise OSError(f"manager refused {request['op']}: {head}")
        yield from chan.recv_stream()
    finally:
        chan.close()


def read_remote_split(manager: str, auth: protocol.Auth, job_id: str,
                      split: Split) -> Iterator[bytes]:
    """The split's lines, read on the manager's host."""
    request: dict[str, object] = {"op": "read_split", "job_id": job_id, "split": to_dict(split)}
    return _download(manager, auth, request)


def fetch_file(manager: str, auth: protocol.Auth, job_id: str, name: str, dest: str) -> None:
    """Copy a shipped file from the manager's host (atomically, so attempts can share it)."""
    if os.path.exists(dest):
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{os.getpid()}.part"
    with open(tmp, "wb") as out:
        for chunk in _download(manager, auth, {"op": "get_file", "job_id": job_id, "name": name}):
            out.write(chunk)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


def upload_output(manager: str, auth: protocol.Auth, job_id: str, attempt_id: str,
                  path: str) -> None:
    """Send a finished part file to the job's staging area on the manager's host."""
    chan = _connect(manager, auth)
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
