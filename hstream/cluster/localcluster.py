"""The embedded local cluster: a real manager and N real workers on loopback, for one job.

The same daemons as a remote cluster, started as processes of their own and
stopped after the job. They bind 127.0.0.1 only (so no TLS), get a fresh secret on
their stdin (no file holds it: the run directory, where tasks run, has nothing to
steal), and exit by themselves if this process dies (the manager watches its parent;
workers exit when the manager is gone). This process holds the secret too, so it is
made non-dumpable like the daemons: the tasks are its descendants.
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
from hstream.task import procs

logger = logging.getLogger(__name__)

RUN_PREFIX = "hstream-local-"
OUTPUTS_FILE = "outputs"
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
    #: Where the manager serves the status pages (loopback, like everything here).
    web_port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: The -output of the job(s) this cluster runs: recorded in the run directory, so that
    #: if this process is killed the next run finds their staging directories.
    outputs: list[str] = field(default_factory=list)

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
        self.rundir = self._make_rundir()
        protocol.protect_memory()
        self.secret = protocol.new_secret()
        manager = self._daemon(
            [sys.executable, "-m", "hstream", *(["-v"] if self.verbose else []), "manager",
             "--host", LOOPBACK, "--port", "0", "--heartbeat-port", "0",
             "--secret-file", "-", "--heartbeat-interval", str(self.heartbeat_interval),
             "--heartbeat-missed", str(self.heartbeat_missed), "--exit-with-parent",
             "--shared-fs" if self.shared_fs else "--no-shared-fs", "--web-port", "0",
             "--log-file", os.path.join(self.rundir, "manager.log")], subprocess.PIPE)
        assert manager.stdout is not None
        line = manager.stdout.readline()
        if not line:
            raise HstreamError(f"local manager failed to start (see {self.rundir}/manager.log)")
        ports = json.loads(line)
        self.port, self.web_port = int(ports["port"]), int(ports.get("web_port") or 0)
        for i in range(self.workers):
            self._daemon(
                [sys.executable, "-m", "hstream.cluster.worker",
                 "--manager", f"{LOOPBACK}:{self.port}",
                 "--secret-file", "-", "--host", LOOPBACK, "--slots", str(self.slots),
                 "--workdir", os.path.join(self.rundir, f"worker{i}"), "--worker-id", f"local{i}",
                 "--reconnect", "0", "--log-file", os.path.join(self.rundir, f"worker{i}.log"),
                 *(["-v"] if self.verbose else [])])
        self._wait_registered()

    def _daemon(self, argv: list[str], stdout: int | None = None) -> subprocess.Popen[bytes]:
        """Start a daemon in its own session and hand it the secret on its stdin."""
        # Their stderr (a crash, a log line that could not be written to a full disk) goes to
        # the run directory, never to the user's terminal.
        with open(os.path.join(self.rundir, "stderr.log"), "ab") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=stdout, stderr=err,
                                    start_new_session=True)
        self.procs.append(proc)
        assert proc.stdin is not None
        try:
            proc.stdin.write(protocol.Auth(self.secret).dumps())
            proc.stdin.close()
        except BrokenPipeError:  # it died at once: _wait_registered says so
            pass
        return proc

    def _make_rundir(self) -> str:
        """A private run directory in $TMPDIR, owned by this process: once it is gone, the
        next run removes it and the staging directories of the outputs it recorded."""
        sweep_stale(self.outputs)
        tmp = tempfile.gettempdir()
        try:
            rundir = tempfile.mkdtemp(prefix=RUN_PREFIX)
            procs.write_owner(rundir)
            with open(os.path.join(rundir, OUTPUTS_FILE), "w", encoding="utf-8") as f:
                f.writelines(os.path.abspath(o) + "\n" for o in self.outputs)
        except OSError as e:
            raise HstreamError(f"cannot set up the local cluster in {tmp}: "
                               f"{e.strerror or e}") from None
        return rundir

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


def sweep_stale(outputs: list[str] | None = None) -> None:
    """Remove what runs killed with SIGKILL left behind: local run directories in $TMPDIR
    (logs, work files) whose owner process is gone, and the staging directories of their
    outputs, and of `outputs`, whose manager is gone. A live run's are never touched: each
    records its owner's pid and start time."""
    parents = {os.path.dirname(os.path.abspath(o)) for o in outputs or ()}
    tmp = tempfile.gettempdir()
    for name in _listdir(tmp):
        rundir = os.path.join(tmp, name)
        if name.startswith(RUN_PREFIX) and procs.owner_gone(rundir):
            parents |= {os.path.dirname(o) for o in _recorded_outputs(rundir)}
            logger.info("removing %s: its run was killed", rundir)
            shutil.rmtree(rundir, ignore_errors=True)
    for parent in parents:
        sweep_staging(parent)


def sweep_staging(parent: str) -> None:
    """Remove staging directories (`.NAME.hstream-JOB`) in `parent` whose manager is gone."""
    for name in _listdir(parent):
        staging = os.path.join(parent, name)
        if name.startswith(".") and ".hstream-" in name and procs.owner_gone(
                os.path.join(staging, "_temporary")):
            logger.info("removing %s: the manager of its job was killed", staging)
            shutil.rmtree(staging, ignore_errors=True)


def _recorded_outputs(rundir: str) -> list[str]:
    try:
        with open(os.path.join(rundir, OUTPUTS_FILE), encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except OSError:
        return []


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
