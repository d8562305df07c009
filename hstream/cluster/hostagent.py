"""Runs on a worker host, sent there over SSH by the launcher: install the code, start or stop
a worker.

The launcher runs ``python3 -c 'import sys;exec(sys.stdin.buffer.read(N))' ACTION ARGS-JSON``
and writes this file's source, then the action's input, to the channel's stdin:
nothing but paths reaches the host's command line, and the cluster secret
travels inside the SSH channel only. The answer is one JSON line on stdout.

A worker's home directory holds everything of it: ``code/`` (hstream's
stdlib-only modules, unpacked from the launcher's tarball), ``secret`` (0600),
``worker.pid``, ``worker.log``, ``worker.out`` and ``tasks/``. Every process of
the worker and its tasks carries ``HSTREAM_WORKER_HOME=<home>`` in its
environment or runs below the home, which is how `stop` finds all of them,
even after the worker itself was killed.

Stdlib only, and Python 3.8 syntax at run time: the host may have nothing but
an old python3.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from typing import IO, Any

MARK = "HSTREAM_WORKER_HOME"
MIN_PYTHON = (3, 9)


def probe(args: dict[str, Any], stdin: IO[bytes]) -> dict[str, Any]:
    """Which Python this is, and whether it is new enough for the worker."""
    return {"version": sys.version.split()[0], "executable": sys.executable,
            "ok": sys.version_info[:2] >= MIN_PYTHON}


def start(args: dict[str, Any], stdin: IO[bytes]) -> dict[str, Any]:
    """Start the worker unless the same code already runs there; stdin: secret line + tarball."""
    home = os.path.abspath(os.path.expanduser(args["home"]))
    secret = stdin.readline().decode("ascii").strip()
    tarball = stdin.read()
    os.makedirs(home, mode=0o700, exist_ok=True)
    pid = _read_pid(home)
    stamp = _read(os.path.join(home, "code", "STAMP"))
    if pid and pid in _members(home) and stamp == args["stamp"]:
        return {"state": "running", "pid": pid}
    _stop_members(home, float(args.get("grace", 5)))
    for name in ("code", "tasks"):
        shutil.rmtree(os.path.join(home, name), ignore_errors=True)
    _unpack(tarball, os.path.join(home, "code"))
    with open(os.path.join(home, "code", "STAMP"), "w") as f:
        f.write(args["stamp"])
    secret_file = os.path.join(home, "secret")
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.chmod(secret_file, 0o600)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(home, "code")
    env[MARK] = home
    argv = [sys.executable, "-m", "hstream.cluster.worker"] + list(args["worker_args"]) + [
        "--secret-file", secret_file, "--workdir", os.path.join(home, "tasks"),
        "--log-file", os.path.join(home, "worker.log")]
    with open(os.path.join(home, "worker.out"), "ab") as out:
        proc = subprocess.Popen(argv, cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, start_new_session=True)
    with open(os.path.join(home, "worker.pid"), "w") as f:
        f.write(f"{proc.pid}\n")
    return {"state": "started", "pid": proc.pid}


def stop(args: dict[str, Any], stdin: IO[bytes]) -> dict[str, Any]:
    """End every process of this worker home, then remove the home."""
    home = os.path.abspath(os.path.expanduser(args["home"]))
    ended = _stop_members(home, float(args.get("grace", 5)))
    if args.get("clean", True):
        shutil.rmtree(home, ignore_errors=True)
    return {"ended": ended, "left": len(_members(home))}


def tail(args: dict[str, Any], stdin: IO[bytes]) -> dict[str, Any]:
    """The last lines of the worker's logs: why a worker did not register."""
    home = os.path.abspath(os.path.expanduser(args["home"]))
    lines: list[str] = []
    for name in ("worker.out", "worker.log"):
        lines += _read(os.path.join(home, name)).splitlines()[-int(args.get("lines", 5)):]
    pid = _read_pid(home)
    return {"lines": lines, "alive": bool(pid and pid in _members(home))}


def _stop_members(home: str, grace: float) -> int:
    """SIGTERM the worker (it ends its tasks), SIGKILL whatever is left after `grace` s."""
    found = _members(home)
    if not found:
        return 0
    pid = _read_pid(home)
    for p in ([pid] if pid in found else found):
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _members(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(20):
        left = _members(home)
        if not left:
            break
        for p in left:
            _signal(p, signal.SIGKILL)
        time.sleep(0.05)
    return len(found)


def _members(home: str) -> set[int]:
    """Live processes of this worker home: marked environment, or working directory below it."""
    mark = (f"{MARK}={home}").encode()
    me = {os.getpid(), os.getppid()}
    found: set[int] = set()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        if pid in me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark in f.read().split(b"\0"):
                    found.add(pid)
                    continue
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd == home or cwd.startswith(home + "/"):
            found.add(pid)
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _read_pid(home: str) -> int:
    try:
        return int(_read(os.path.join(home, "worker.pid")).strip() or 0)
    except ValueError:
        return 0


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _unpack(tarball: bytes, dest: str) -> None:
    os.makedirs(dest, mode=0o700)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or member.name.startswith("/") or ".." in member.name.split("/"):
                raise ValueError(f"unsafe path in code tarball: {member.name!r}")
        tar.extractall(dest)


ACTIONS: dict[str, Any] = {"probe": probe, "start": start, "stop": stop, "tail": tail}


def main() -> None:
    action, args = sys.argv[1], json.loads(sys.argv[2])
    try:
        answer = ACTIONS[action](args, sys.stdin.buffer)
    except Exception as e:  # noqa: BLE001 -- the launcher reports it as this host's failure
        answer = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
