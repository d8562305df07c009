"""The worker daemon: registers with the manager, heartbeats, runs task attempts, serves map output.

Threads: the main thread reads the manager's messages; one sends UDP
heartbeats; one accepts shuffle connections (a thread each); one per running
attempt reads the task runner's reports. The worker's only shared state is
`self.tasks`, guarded by `self.lock`.

If the manager connection breaks, or the manager falls silent (it pings every
worker each half heartbeat interval), the worker kills every attempt (their
output may already be re-assigned) and tries to register again for `reconnect`
seconds; a manager that stays away means the worker exits: nothing of it is
left running. An attempt belongs to the registration it was started under: its
result is reported on that connection or not at all, so a worker that was
declared dead never resumes old work. Stdlib only: this module runs on hosts
that have nothing but python3.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from hstream import protocol
from hstream.errors import ProtocolError
from hstream.job import TaskResult, TaskSpec, from_dict, to_dict
from hstream.task import shuffle

logger = logging.getLogger(__name__)

REGISTER_TIMEOUT = 30.0
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Running:
    spec: TaskSpec
    proc: subprocess.Popen[bytes]
    #: The manager connection (registration) the attempt was started under.
    chan: protocol.Channel | None
    killed: bool = False


class Worker:
    def __init__(self, worker_id: str, manager: tuple[str, int], secret: bytes, host: str,
                 slots: int, workdir: str, reconnect: float) -> None:
        self.id = worker_id
        self.manager = manager
        self.secret = secret
        self.host = host
        self.slots = slots
        self.workdir = workdir
        self.reconnect = reconnect
        self.lock = threading.Lock()
        self.tasks: dict[str, Running] = {}
        self.chan: protocol.Channel | None = None
        self.stopping = threading.Event()
        self.heartbeat_interval = 1.0
        self.heartbeat_port = 0
        self.session = ""
        self.manager_timeout: float | None = None
        self.registered = threading.Event()
        self._hb_seq = 0
        self.shuffle_sock = socket.create_server((host, 0))
        self.shuffle_port = self.shuffle_sock.getsockname()[1]

    # -- lifecycle -------------------------------------------------------------
    def run(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        threading.Thread(target=self._serve_shuffle, daemon=True, name="shuffle").start()
        threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeat").start()
        try:
            while not self.stopping.is_set():
                if not self._connect():
                    logger.error("worker %s: manager %s:%d unreachable, exiting", self.id,
                                 *self.manager)
                    break
                self._serve_manager()
                self._kill_all("lost the manager")
        finally:
            self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self._kill_all("worker stopping")
        try:
            self.shuffle_sock.close()
        except OSError:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _connect(self) -> bool:
        """Register, retrying for `reconnect` seconds; False if the manager stays away."""
        deadline = time.monotonic() + self.reconnect
        while not self.stopping.is_set():
            try:
                self.chan = self._register()
                self.registered.set()
                logger.info("worker %s registered with %s:%d", self.id, *self.manager)
                return True
            except (OSError, EOFError, ProtocolError) as e:
                if time.monotonic() >= deadline:
                    logger.error("worker %s: cannot register: %s", self.id, e)
                    return False
                time.sleep(0.2)
        return False

    def _register(self) -> protocol.Channel:
        chan = protocol.connect(*self.manager, self.secret)
        try:
            chan.sock.settimeout(REGISTER_TIMEOUT)  # a wedged manager must not hold us
            chan.send({"op": "register", "worker_id": self.id, "host": self.host,
                       "shuffle_port": self.shuffle_port, "slots": self.slots,
                       "pid": os.getpid(), "version": protocol.VERSION})
            reply = chan.recv()
            if reply["op"] != "registered":
                raise ProtocolError(f"registration refused: {reply}")
            self.heartbeat_interval = float(reply["heartbeat_interval"])
            self.heartbeat_port = int(reply["heartbeat_port"])
            self.session = str(reply.get("session", ""))
            timeout = reply.get("manager_timeout")
            self.manager_timeout = float(timeout) if timeout else None
            chan.sock.settimeout(self.manager_timeout)
            return chan
        except BaseException:
            chan.close()
            raise

    def _serve_manager(self) -> None:
        chan = self.chan
        assert chan is not None
        try:
            while not self.stopping.is_set():
                msg = chan.recv()
                op = msg["op"]
                if op == "run":
                    self._start(from_dict(TaskSpec, msg["spec"]))
                elif op == "kill":
                    self._kill(msg["attempt_id"])
                elif op == "job_done":
                    self._clean_job(msg["job_id"])
                elif op == "ping":
                    pass
                elif op == "shutdown":
                    logger.info("worker %s: shutdown requested", self.id)
                    self.stopping.set()
                else:
                    logger.warning("worker %s: unknown op %r ignored", self.id, op)
        except TimeoutError:
            logger.warning("worker %s: no word from the manager for %.1f s: connection given up",
                           self.id, self.manager_timeout or 0)
        except (OSError, EOFError, ProtocolError) as e:
            logger.warning("worker %s: manager connection lost: %s", self.id, e or "EOF")
        finally:
            self.registered.clear()
            self.chan = None
            chan.close()

    def _send(self, msg: dict[str, Any], chan: protocol.Channel | None) -> bool:
        """Send on `chan` if it is still the current registration's connection."""
        if chan is None or chan is not self.chan:
            return False
        try:
            chan.send(msg)
            return True
        except OSError as e:
            logger.warning("worker %s: send failed: %s", self.id, e)
            return False

    # -- heartbeats ----------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.manager[0] else socket.AF_INET,
                             socket.SOCK_DGRAM)
        while not self.stopping.is_set():
            if self.registered.wait(0.2) and self.heartbeat_port:
                # Sequence numbers grow across re-registrations, so old datagrams never replay.
                self._hb_seq = max(self._hb_seq + 1, time.time_ns() // 1000)
                datagram = protocol.pack_heartbeat(self.secret, self.id, self._hb_seq,
                                                   {"running": len(self.tasks), "e": self.session})
                try:
                    sock.sendto(datagram, (self.manager[0], self.heartbeat_port))
                except OSError as e:  # a dropped route or firewall: keep trying
                    logger.debug("heartbeat send failed: %s", e)
                self.stopping.wait(self.heartbeat_interval)
        sock.close()

    # -- tasks ---------------------------------------------------------------
    def _start(self, spec: TaskSpec) -> None:
        spec.manager = f"{self.manager[0]}:{self.manager[1]}"
        root = os.path.join(self.workdir, spec.job_id, "attempts", spec.attempt_id)
        os.makedirs(root, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        # -S: the runner needs only the stdlib and hstream (on PYTHONPATH), not site's start-up.
        proc = subprocess.Popen([sys.executable, "-S", "-m", "hstream.task", root],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, env=env,
                                start_new_session=True)
        with self.lock:
            self.tasks[spec.attempt_id] = Running(spec, proc, self.chan)
        assert proc.stdin is not None
        try:
            proc.stdin.write(self.secret.hex().encode() + b"\n")
            proc.stdin.write(json.dumps(to_dict(spec)).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        threading.Thread(target=self._watch, args=(spec, proc), daemon=True,
                         name=spec.attempt_id).start()
        logger.info("worker %s: started %s (pid %d)", self.id, spec.attempt_id, proc.pid)

    def _watch(self, spec: TaskSpec, proc: subprocess.Popen[bytes]) -> None:
        result: dict[str, Any] | None = None
        with self.lock:
            chan = self.tasks[spec.attempt_id].chan
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if "result" in report:
                result = report["result"]
            else:
                self._send({"op": "progress", "attempt_id": spec.attempt_id, **report}, chan)
        status = proc.wait()
        with self.lock:
            running = self.tasks.pop(spec.attempt_id, None)
        if running is None or running.killed:
            if result is not None:
                logger.info("worker %s: %s finished after it was killed or abandoned: result "
                            "discarded", self.id, spec.attempt_id)
            return
        if result is None:
            result = to_dict(TaskResult(ok=False, error=f"task runner died (status {status})"))
        if not self._send({"op": "done", "attempt_id": spec.attempt_id, "result": result}, chan):
            logger.warning("worker %s: result of %s dropped: it belongs to a manager connection "
                           "that is gone (the attempt was re-run elsewhere)", self.id,
                           spec.attempt_id)

    def _kill(self, attempt_id: str) -> None:
        with self.lock:
            running = self.tasks.get(attempt_id)
            if running is not None:
                running.killed = True
        if running is not None:
            kill_group(running.proc)
            logger.info("worker %s: killed %s", self.id, attempt_id)

    def _kill_all(self, reason: str) -> None:
        with self.lock:
            victims = list(self.tasks.values())
            for r in victims:
                r.killed = True
        for r in victims:
            kill_group(r.proc)
        if victims:
            logger.info("worker %s: killed %s: %s", self.id,
                        ", ".join(r.spec.attempt_id for r in victims), reason)

    def _clean_job(self, job_id: str) -> None:
        if shuffle._ID.match(job_id):
            shutil.rmtree(os.path.join(self.workdir, job_id), ignore_errors=True)

    # -- shuffle server --------------------------------------------------------
    def _serve_shuffle(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, addr = self.shuffle_sock.accept()
            except OSError:
                return
            threading.Thread(target=self._shuffle_conn, args=(sock, addr), daemon=True).start()

    def _shuffle_conn(self, sock: socket.socket, addr: Any) -> None:
        peer = f"{addr[0]}:{addr[1]}"
        try:
            chan = protocol.server_handshake(sock, self.secret, peer)
            while True:
                msg = chan.recv()
                if msg["op"] != "fetch":
                    raise ProtocolError(f"{peer}: unexpected op {msg['op']!r}")
                shuffle.serve_fetch(chan, msg, self.workdir)
        except EOFError:
            pass
        except (OSError, ProtocolError) as e:
            logger.warning("shuffle connection %s dropped: %s", peer, e)
        finally:
            sock.close()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill an attempt's whole session (runner, command, sorts); gone already is fine."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hstream worker", description=__doc__)
    p.add_argument("--manager", required=True, help="HOST:PORT of the manager")
    p.add_argument("--secret-file", required=True, help="cluster secret file, or - for stdin")
    p.add_argument("--host", default="127.0.0.1", help="address to serve map output on")
    p.add_argument("--slots", type=int, default=1)
    p.add_argument("--workdir", required=True)
    p.add_argument("--worker-id", default=None)
    p.add_argument("--reconnect", type=float, default=10.0,
                   help="seconds to keep trying to (re-)register")
    p.add_argument("--log-file", default=None)
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        filename=args.log_file,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.secret_file == "-":
        secret = bytes.fromhex(sys.stdin.readline().strip())
    else:
        secret = protocol.read_secret(args.secret_file)
    host, _, port = args.manager.rpartition(":")
    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    worker = Worker(worker_id, (host.strip("[]"), int(port)), secret, args.host, args.slots,
                    args.workdir, args.reconnect)
    def stop(*_: object) -> None:
        worker.stopping.set()
        _close(worker)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    worker.run()
    return 0


def _close(worker: Worker) -> None:
    chan = worker.chan
    if chan is not None:
        chan.close()


if __name__ == "__main__":
    sys.exit(main())
