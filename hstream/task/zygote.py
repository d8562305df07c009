"""Warm task runners: a process with the task code imported that forks one runner per attempt.

Starting `python -m hstream.task` costs a new interpreter and its imports (about 0.1 CPU-s
here), which dominates a small task: 5,000 one-kilobyte maps spent most of their time
starting runners. A worker starts one zygote (`python -m hstream.task.zygote`); for each
attempt it sends the attempt's directory, environment and account, with the two pipe ends
(stdin and stdout of the runner) as SCM_RIGHTS, over a SOCK_SEQPACKET socket pair. The
zygote forks; the child becomes a session leader, takes the pipes as 0 and 1, drops to the
task account and runs `hstream.task.__main__.main`, exactly as a freshly started runner
would. The worker sees the runner through `Runner` (a pidfd tells it when the runner ends);
the zygote reaps it only when the worker asks, after it has killed what the attempt left,
so the session id is never reused meanwhile.

The zygote holds no secret (the job's token goes down the runner's stdin) and is
non-dumpable, so a task cannot ptrace it to reach other jobs' runners (the runners it forks
are made dumpable again, as a fresh process would be); it is single-threaded
so that fork is safe, and it exits when the worker's end of the socket closes (its runners
then notice their parent is gone and kill their sessions). Stdlib only.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from hstream import protocol

logger = logging.getLogger(__name__)

#: Largest request (the environment makes most of it).
MAX_REQUEST = 1 << 20
_STATUS_UNKNOWN = -1


# -- the zygote --------------------------------------------------------------------------------


def serve(sock: socket.socket) -> None:
    """Fork a runner per spawn request and reap one per reap request, until the worker goes."""
    from hstream.hadoop import command, properties
    from hstream.task import __main__ as runner  # everything a runner imports, once

    protocol.protect_memory()
    for key in properties.job_view({}):  # Hadoop's property tables and their variable names,
        command.env_name(key)            # made once for every runner
    gc.freeze()  # what is here now stays shared with every runner: their collections skip it
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, MAX_REQUEST, 2)
        except (ConnectionError, OSError):
            return
        if not data:
            return
        request = json.loads(data)
        if request["op"] == "spawn":
            pid = _fork(request, fds, sock, runner.main)
            sock.send(json.dumps({"pid": pid}).encode())
        else:
            sock.send(json.dumps({"status": _reap(int(request["pid"]))}).encode())


def _fork(request: dict[str, Any], fds: list[int], sock: socket.socket,
          main: Any) -> int:
    pid = os.fork()
    if pid == 0:  # the runner
        code = 70
        try:
            sock.close()
            code = _become_runner(request, fds, main)
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    return pid


def _become_runner(request: dict[str, Any], fds: list[int], main: Any) -> int:
    os.setsid()
    os.dup2(fds[0], 0)
    os.dup2(fds[1], 1)
    for fd in fds:
        os.close(fd)
    os.chdir(request["root"])
    if request.get("uid") is not None:
        os.setgroups([])
        os.setgid(int(request["gid"]))
        os.setuid(int(request["uid"]))
    protocol.set_dumpable(True)  # as a freshly executed runner: only the zygote is protected
    os.environ.clear()
    os.environ.update(request["env"])
    code = main([request["root"]])
    sys.stdout.flush()
    return int(code)


def _reap(pid: int) -> int:
    """The runner's exit status (negative: the signal that killed it)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return _STATUS_UNKNOWN
    return os.waitstatus_to_exitcode(status)


# -- the worker's side -------------------------------------------------------------------------


@dataclass
class Runner:
    """A runner the zygote forked, as the worker sees it: pid, its stdin and stdout, and a
    pidfd that becomes readable when it ends."""

    pid: int
    stdin: Any
    stdout: Any
    pidfd: int
    zygote: Zygote
    returncode: int | None = None

    def wait_exit(self, timeout: float | None = None) -> bool:
        """Whether the runner has ended (it is not reaped: its pid and session stay taken)."""
        return bool(select.select([self.pidfd], [], [], timeout)[0])

    def reap(self) -> int:
        if self.returncode is None:
            self.wait_exit()
            self.returncode = self.zygote.reap(self.pid)
            os.close(self.pidfd)
        return self.returncode


@dataclass
class Zygote:
    """The worker's handle on its zygote. `spawn` raises OSError when the zygote is gone;
    the worker then starts runners the slow way."""

    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    sock: socket.socket | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "hstream.task.zygote", str(theirs.fileno())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=[theirs.fileno()],
            env=self.env)
        theirs.close()
        self.sock = mine

    def spawn(self, root: str, env: dict[str, str], uid: int | None = None,
              gid: int | None = None) -> Runner:
        """A runner for the attempt in `root`, started as a new session."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        request = {"op": "spawn", "root": root, "env": env, "uid": uid, "gid": gid}
        try:
            pid = int(self._call(request, [in_r, out_w])["pid"])
            pidfd = os.pidfd_open(pid)
        except BaseException:
            for fd in (in_w, out_r):
                os.close(fd)
            raise
        finally:
            os.close(in_r)
            os.close(out_w)
        return Runner(pid, os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb"), pidfd, self)

    def reap(self, pid: int) -> int:
        try:
            return int(self._call({"op": "reap", "pid": pid})["status"])
        except OSError:  # the zygote is gone; its orphans were reaped by init
            return _STATUS_UNKNOWN

    def _call(self, request: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        with self.lock:
            if self.sock is None:
                raise OSError("no zygote")
            try:
                socket.send_fds(self.sock, [json.dumps(request).encode()], fds or [])
                reply = self.sock.recv(4096)
            except OSError:
                self.close()
                raise
            if not reply:
                self.close()
                raise OSError("the zygote is gone")
            answer: dict[str, Any] = json.loads(reply)
            return answer

    def close(self) -> None:
        """The zygote exits when its socket closes."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the worker's Ctrl-C ends it at once
    serve(socket.socket(fileno=int(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
