"""`[manager] restart = yes`: a small parent that starts the manager again when it dies.

`cluster up` runs ``python -m hstream.cluster.supervisor manager ARGS…`` instead of
``python -m hstream manager ARGS…``. The supervisor keeps the credentials it got on stdin
(non-dumpable, like the manager) to hand each manager it starts; it relays the first
manager's ready line to `cluster up`, and starts later ones on the same ports, so workers
waiting for their manager (`[workers] reconnect`) find it. A manager that exits cleanly
(`cluster down`'s shutdown) ends the supervisor; one that dies (a crash, kill -9) is
started again after RESTART_PAUSE, and resumes its jobs from its journal (journal.py).
SIGTERM, SIGINT or SIGHUP stop the manager and then the supervisor.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time

from hstream import protocol

logger = logging.getLogger(__name__)

#: Seconds between a manager's death and its successor's start.
RESTART_PAUSE = 0.5


def _with_ports(argv: list[str], ready: bytes) -> list[str]:
    """The manager's arguments with the ports its first start was given (0 means any)."""
    try:
        info = json.loads(ready)
    except ValueError:
        return argv
    out = list(argv)
    for flag, key in (("--port", "port"), ("--heartbeat-port", "heartbeat_port")):
        if flag in out and key in info:
            out[out.index(flag) + 1] = str(info[key])
    return out


def _start(argv: list[str], credentials: bytes, first: bool) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "hstream", *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE if first else subprocess.DEVNULL)
    assert proc.stdin is not None
    try:
        proc.stdin.write(credentials)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    return proc


def _relay_ready(proc: subprocess.Popen[bytes]) -> bytes:
    """Pass the manager's ready line on to `cluster up`, which then stops reading us."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    try:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
        sys.stdout.close()
    except OSError:
        pass
    return line


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    protocol.protect_memory()  # the credentials are in here
    credentials = sys.stdin.buffer.read()
    stopping = False
    proc = _start(argv, credentials, first=True)

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        proc.terminate()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    argv = _with_ports(argv, _relay_ready(proc))
    while True:
        status = proc.wait()
        if stopping or status == 0:
            return status
        logger.warning("manager (pid %d) died with status %d: starting it again", proc.pid,
                       status)
        time.sleep(RESTART_PAUSE)
        proc = _start(argv, credentials, first=False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
