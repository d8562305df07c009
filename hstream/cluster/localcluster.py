"""The embedded local cluster: a real manager and N real workers on loopback, for one job.

The same daemons as a remote cluster, started as processes of their own and
stopped after the job. They bind 127.0.0.1 only, share a fresh secret through
a 0600 file in a private directory, and exit by themselves if this process
dies (the manager watches its parent; workers exit when the manager is gone).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from hstream import protocol
from hstream.errors import HstreamError, ProtocolError

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOOPBACK = "127.0.0.1"


@dataclass
class LocalCluster:
    workers: int
    slots: int = 1
    heartbeat_interval: float = 1.0
    heartbeat_missed: int = 10
    verbose: bool = False
    #: False runs tasks as if no host shared a filesystem: data goes through the manager.
    shared_fs: bool = True
    rundir: str = ""
    secret: bytes = b""
    port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.rundir = tempfile.mkdtemp(prefix="hstream-local-")
        self.secret = protocol.new_secret()
        secret_file = os.path.join(self.rundir, "secret")
        protocol.write_secret(secret_file, self.secret)
        manager = subprocess.Popen(
            [sys.executable, "-m", "hstream", *(["-v"] if self.verbose else []), "manager",
             "--host", LOOPBACK, "--port", "0", "--heartbeat-port", "0",
             "--secret-file", secret_file, "--heartbeat-interval", str(self.heartbeat_interval),
             "--heartbeat-missed", str(self.heartbeat_missed), "--exit-with-parent",
             "--shared-fs" if self.shared_fs else "--no-shared-fs",
             "--log-file", os.path.join(self.rundir, "manager.log")],
            stdout=subprocess.PIPE, start_new_session=True)
        self.procs.append(manager)
        assert manager.stdout is not None
        line = manager.stdout.readline()
        if not line:
            raise HstreamError(f"local manager failed to start (see {self.rundir}/manager.log)")
        self.port = int(json.loads(line)["port"])
        for i in range(self.workers):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "hstream.cluster.worker",
                 "--manager", f"{LOOPBACK}:{self.port}",
                 "--secret-file", secret_file, "--host", LOOPBACK, "--slots", str(self.slots),
                 "--workdir", os.path.join(self.rundir, f"worker{i}"), "--worker-id", f"local{i}",
                 "--reconnect", "0", "--log-file", os.path.join(self.rundir, f"worker{i}.log"),
                 *(["-v"] if self.verbose else [])],
                stdin=subprocess.DEVNULL, start_new_session=True))
        self._wait_registered()

    def _wait_registered(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            status = self.status()
            if sum(w["alive"] for w in status["workers"]) >= self.workers:
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.05)
        raise HstreamError(f"local workers failed to register (logs in {self.rundir})")

    def status(self) -> dict[str, Any]:
        chan = protocol.connect(LOOPBACK, self.port, self.secret)
        try:
            return chan.request({"op": "status"})
        finally:
            chan.close()

    def stop(self) -> None:
        """Shut the daemons down; whatever does not exit in time is killed with its tasks."""
        if self.port:
            try:
                chan = protocol.connect(LOOPBACK, self.port, self.secret, timeout=2)
                chan.request({"op": "shutdown"})
                chan.close()
            except (OSError, EOFError, ProtocolError):
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        if self.rundir and not os.environ.get("HSTREAM_KEEP_RUNDIR"):
            shutil.rmtree(self.rundir, ignore_errors=True)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
