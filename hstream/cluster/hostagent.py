"""Runs on a worker host, sent there over SSH by the launcher: install the code, start or stop
a worker.

The launcher runs ``python3 -c 'import sys;exec(sys.stdin.buffer.read(N))' ACTION ARGS-JSON``
and writes this file's source, then the action's input, to the channel's stdin:
nothing but paths reaches the host's command line, and the cluster secret
travels inside the SSH channel only. The answer is one JSON line on stdout.

The worker's credentials (the secret, and on a TLS cluster its certificate and key) go
from this agent's stdin to the worker's stdin: no file on the host ever holds them, so a
task has nothing to find by walking up from its directory, and the worker keeps them in
its memory (it is non-dumpable).

A worker's home directory (0700; 0711 with a `task_user`, whose tasks pass through it)
holds everything of it: ``code/`` (hstream's stdlib-only modules, unpacked from the launcher's
tarball), ``worker.pid``, ``worker.log``, ``worker.out`` and ``tasks/``. Every task
process carries ``HSTREAM_WORKER_HOME=<home>`` in its environment or runs below the home;
the worker names its home on its command line (its environment is unreadable: it is
non-dumpable). That is how `stop` finds all of them, even after the worker was killed.

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
    """Start the worker unless the same code already runs there; stdin: the worker's
    credentials (one line, for its stdin), then the code tarball."""
    home = os.path.abspath(os.path.expanduser(args["home"]))
    credentials = stdin.readline()
    tarball = stdin.read()
    mode = 0o711 if "--task-user" in args["worker_args"] else 0o700
    os.makedirs(home, mode=mode, exist_ok=True)
    os.chmod(home, mode)
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
    _remove(os.path.join(home, "secret"))  # left by an hstream that wrote it there
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(home, "code")
    env[MARK] = home
    argv = [sys.executable, "-m", "hstream.cluster.worker"] + list(args["worker_args"]) + [
        "--secret-file", "-", "--workdir", os.path.join(home, "tasks"),
        "--log-file", _private(os.path.join(home, "worker.log"))]
    with open(_private(os.path.join(home, "worker.out")), "ab") as out:
        proc = subprocess.Popen(argv, cwd=home, env=env, stdin=subprocess.PIPE, stdout=out,
                                stderr=out, start_new_session=True)
    assert proc.stdin is not None
    try:
        proc.stdin.write(credentials)
        proc.stdin.close()
    except BrokenPipeError:  # it died at once: `tail` tells why
        pass
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
    """Live processes of this worker home: marked environment, working directory below it, or
    (the worker itself, whose environment and cwd are unreadable) a worker whose command line
    names a path below it."""
    mark = (f"{MARK}={home}").encode()
    me = {os.getpid(), os.getppid()}
    found: set[int] = set()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        if pid not in me and (_names_home(pid, home) or _marked(pid, mark, home)):
            found.add(pid)
    return found


def _below(path: str, home: str) -> bool:
    return path == home or path.startswith(home + "/")


def _names_home(pid: int, home: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return "hstream.cluster.worker" in argv and any(_below(arg, home) for arg in argv)


def _marked(pid: int, mark: bytes, home: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if mark in f.read().split(b"\0"):
                return True
        return _below(os.readlink(f"/proc/{pid}/cwd"), home)
    except OSError:
        return False


def _private(path: str) -> str:
    """`path`, created 0600 if it is not there yet (logs: other users have no business there)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    return path


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


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
    os.makedirs(dest, mode=0o755)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or member.name.startswith("/") or ".." in member.name.split("/"):
                raise ValueError(f"unsafe path in code tarball: {member.name!r}")
        tar.extractall(dest)
    for root, dirs, _ in os.walk(dest):  # a task_user's runner imports it, whatever our umask
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)


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
