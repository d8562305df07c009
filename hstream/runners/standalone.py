"""A Spark standalone cluster on 127.0.0.1 from pyspark's own jars, for the tests and the
benchmark (and to try `--runner spark --master spark://…` on one machine).

The pip package has no start-*.sh scripts, so the Master and each Worker are started with
`bin/spark-class org.apache.spark.deploy.…`, each in its own session: `kill_worker` kills one
like a host dying (the Worker, its executors and their Python workers, with SIGKILL) and
`stop` leaves no process behind. Readiness is read from the daemons' logs, with deadlines.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import IO

import psutil

from hstream.errors import HstreamError

MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    log: str
    out: IO[bytes]


@dataclass
class StandaloneCluster:
    """One Master and `workers` Workers of `cores` cores each; `url` once started."""

    workdir: str
    workers: int = 2
    cores: int = 1
    memory: str = "1g"
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    url: str = ""
    master: Daemon | None = None
    worker_daemons: list[Daemon | None] = field(default_factory=list)

    def __enter__(self) -> StandaloneCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 300) -> str:
        """Start the Master and the Workers; the master's spark:// URL."""
        try:
            self.master = self._spawn("master", [MASTER, "--host", "127.0.0.1", "--port", "0",
                                                 "--webui-port", "0"])
            found = _wait_log(self.master, r"Starting Spark master at (spark://\S+)", timeout)
            self.url = found.group(1)
            started = [self._spawn_worker() for _ in range(self.workers)]  # JVMs start together
            for daemon in started:
                _wait_log(daemon, r"Successfully registered with master", timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def add_worker(self, timeout: float = 300) -> int:
        """Start one more Worker and wait until the Master has it; its index."""
        daemon = self._spawn_worker()
        _wait_log(daemon, r"Successfully registered with master", timeout)
        return len(self.worker_daemons) - 1

    def _spawn_worker(self) -> Daemon:
        index = len(self.worker_daemons)
        work = os.path.join(self.workdir, f"worker{index}")
        daemon = self._spawn(f"worker{index}", [
            WORKER, "--host", "127.0.0.1", "--port", "0", "--webui-port", "0",
            "--cores", str(self.cores), "--memory", self.memory, "--work-dir", work, self.url])
        self.worker_daemons.append(daemon)
        return daemon

    def kill_worker(self, index: int) -> None:
        """SIGKILL a Worker with everything it started, as when its host dies."""
        daemon = self.worker_daemons[index]
        if daemon is not None:
            _kill_tree(daemon.proc.pid, signal.SIGKILL)
            daemon.proc.wait()
            daemon.out.close()
            self.worker_daemons[index] = None

    def stop(self) -> None:
        for index in range(len(self.worker_daemons)):
            self.kill_worker(index)
        if self.master is not None:
            _kill_tree(self.master.proc.pid, signal.SIGKILL)
            self.master.proc.wait()
            self.master.out.close()
            self.master = None

    def _spawn(self, name: str, args: list[str]) -> Daemon:
        home = spark_home()
        os.makedirs(self.workdir, exist_ok=True)
        log = os.path.join(self.workdir, f"{name}.log")
        out = open(log, "ab")
        env = {**self.env, "SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_NO_DAEMONIZE": "1"}
        proc = subprocess.Popen([os.path.join(home, "bin", "spark-class"), *args],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                start_new_session=True)
        return Daemon(proc, log, out)


def spark_home() -> str:
    """pyspark's directory: it holds bin/spark-class and the jars."""
    import pyspark

    return os.path.dirname(os.path.abspath(str(pyspark.__file__)))


def _wait_log(daemon: Daemon, pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        with open(daemon.log, encoding="utf-8", errors="replace") as f:
            found = re.search(pattern, f.read())
        if found:
            return found
        if daemon.proc.poll() is not None or time.monotonic() > deadline:
            with open(daemon.log, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-2000:]
            why = (f"exited with status {daemon.proc.returncode}" if daemon.proc.poll() is not None
                   else f"not ready after {timeout:.0f} s")
            raise HstreamError(f"Spark daemon {why} ({daemon.log}):\n{tail}")
        time.sleep(0.2)


def _kill_tree(pid: int, sig: signal.Signals) -> None:
    """The daemon's session and every descendant (executors start their own process groups)."""
    try:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    for p in family:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
