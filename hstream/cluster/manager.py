"""The manager daemon: the scheduler's I/O shell.

Connection threads authenticate peers and turn their messages into events;
the UDP thread turns heartbeats into events; one loop thread owns the
`Scheduler`, applies events in order and carries out the actions it returns
(send a task, kill an attempt, commit output, finish a job). Manager state
therefore changes in one place, on one thread, with no locks around it.

Ops a client may send (each on its own connection, after the handshake):
``submit`` (then progress messages until ``finished``), ``status``, ``kill``,
``logs``, ``shutdown``. A worker's first message is ``register``; then it sends
``progress`` and ``done``, and receives ``run``, ``kill``, ``job_done``,
``shutdown``. Stdlib only.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hstream import protocol
from hstream.cluster import relay
from hstream.cluster.scheduler import Scheduler
from hstream.cluster.state import (
    Action,
    Assign,
    DropWorker,
    Heartbeat,
    Job,
    JobFinished,
    JobState,
    Kill,
    Progress,
)
from hstream.errors import HstreamError, ProtocolError
from hstream.hadoop.inputpaths import list_inputs
from hstream.job import JobSpec, TaskResult, from_dict, staging_dir, to_dict
from hstream.task.splits import job_splits

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 10.0


@dataclass
class Event:
    """Something that happened, applied on the loop thread by `Manager._apply`."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    reply: queue.Queue[Any] | None = None


class Manager:
    def __init__(self, host: str, port: int, heartbeat_port: int, secret: bytes,
                 heartbeat_interval: float = 1.0, heartbeat_missed: int = 10,
                 shared_fs: bool = True) -> None:
        self.secret = secret
        #: False: hosts share no filesystem, so tasks read input and write output through us.
        self.shared_fs = shared_fs
        self.exports = relay.Exports()
        self.heartbeat_interval = heartbeat_interval
        #: A worker that hears nothing (not even a ping) from us for this long gives up on us.
        self.manager_timeout = 2 * heartbeat_interval * heartbeat_missed
        self.scheduler = Scheduler(heartbeat_interval * heartbeat_missed)
        self.events: queue.Queue[Event] = queue.Queue()
        self.tcp = socket.create_server((host, port), reuse_port=False)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.udp = socket.socket(family, socket.SOCK_DGRAM)
        self.udp.bind((host, heartbeat_port))
        self.host = host
        self.port = self.tcp.getsockname()[1]
        self.heartbeat_port = self.udp.getsockname()[1]
        self.workers: dict[str, protocol.Channel] = {}  # loop thread only
        self.clients: dict[str, protocol.Channel] = {}  # job id -> submitting client; loop only
        self.stopping = threading.Event()
        self._job_seq = 0
        self._epoch = int(time.time() * 1000)

    # -- threads ---------------------------------------------------------------
    def serve_forever(self) -> None:
        threading.Thread(target=self._accept_loop, daemon=True, name="accept").start()
        threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeats").start()
        logger.info("manager listening on %s:%d (heartbeats on udp %d)", self.host, self.port,
                    self.heartbeat_port)
        try:
            self._loop()
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stopping.set()
        self.events.put(Event("wake"))

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, addr = self.tcp.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._connection, args=(sock, addr), daemon=True).start()

    def _heartbeat_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                datagram, addr = self.udp.recvfrom(4096)
            except OSError:
                return
            try:
                hb = protocol.unpack_heartbeat(self.secret, datagram)
            except ProtocolError as e:
                logger.warning("dropped datagram from %s: %s", addr[0], e)
                continue
            self.events.put(Event("heartbeat", {"worker_id": hb["w"], "seq": hb["s"],
                                                "session": str(hb.get("e", ""))}))

    def _connection(self, sock: socket.socket, addr: Any) -> None:
        peer = f"{addr[0]}:{addr[1]}"
        try:
            chan = protocol.server_handshake(sock, self.secret, peer)
            msg = chan.recv()
        except (OSError, EOFError, ProtocolError) as e:
            logger.warning("rejected connection from %s: %s", peer, e)
            sock.close()
            return
        chan.sock.settimeout(None)
        op = msg["op"]
        try:
            if op == "register":
                self._worker_connection(chan, msg)
            else:
                self._client_request(chan, msg)
        except (OSError, EOFError, ProtocolError, KeyError, ValueError, TypeError) as e:
            logger.warning("connection %s (%s) ended: %s", peer, op, e)
        finally:
            if op != "submit":
                chan.close()

    def _worker_connection(self, chan: protocol.Channel, msg: dict[str, Any]) -> None:
        worker_id = str(msg["worker_id"])
        chan.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                             _timeval(SEND_TIMEOUT))
        self._call("register", {"chan": chan, "msg": msg})
        try:
            while True:
                m = chan.recv()
                self.events.put(Event(m["op"], {"worker_id": worker_id, "msg": m, "chan": chan}))
        except (OSError, EOFError, ProtocolError) as e:
            self.events.put(Event("worker_conn_lost", {"worker_id": worker_id, "chan": chan,
                                                       "reason": f"connection lost: {e or 'EOF'}"}))

    def _client_request(self, chan: protocol.Channel, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "submit":
            reply = self._call("submit", {"msg": msg, "chan": chan})
            chan.send(reply)
            if reply["op"] != "accepted":
                chan.close()
            return
        if op in ("status", "kill", "logs"):
            chan.send(self._call(op, {"msg": msg}))
        elif op in relay.OPS:
            relay.serve(chan, msg, self.exports)  # file I/O on this thread, not the loop's
        elif op == "shutdown":
            chan.send({"op": "ok"})
            self.stop()
        else:
            raise ProtocolError(f"unknown op {op!r}")

    def _call(self, kind: str, data: dict[str, Any]) -> Any:
        reply: queue.Queue[Any] = queue.Queue()
        self.events.put(Event(kind, data, reply))
        return reply.get()

    # -- the loop --------------------------------------------------------------
    def _loop(self) -> None:
        next_tick = time.monotonic()
        while not self.stopping.is_set():
            try:
                event = self.events.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                event = Event("tick")
            now = time.monotonic()
            try:
                actions = self._apply(event, now)
            except HstreamError as e:
                actions = []
                if event.reply is not None:
                    event.reply.put({"op": "error", "message": str(e), "exit_code": e.exit_code})
            self._execute(actions)
            if now >= next_tick:
                self._execute(self.scheduler.tick(now))
                self._ping_workers()
                next_tick = now + self.heartbeat_interval / 2

    def _ping_workers(self) -> None:
        """Tell every worker we are alive: one whose manager falls silent (a vanished host
        sends no FIN) kills its tasks and leaves instead of waiting forever."""
        for worker_id in list(self.workers):
            self._to_worker(worker_id, {"op": "ping"})

    def _apply(self, event: Event, now: float) -> list[Action]:
        handler: Callable[[Event, float], list[Action]] | None = getattr(
            self, f"_on_{event.kind}", None)
        if handler is None:
            if event.kind not in ("tick", "wake"):
                logger.warning("unknown event %s", event.kind)
            return []
        return handler(event, now)

    def _on_register(self, event: Event, now: float) -> list[Action]:
        msg, chan = event.data["msg"], event.data["chan"]
        worker_id = str(msg["worker_id"])
        old = self.workers.pop(worker_id, None)
        session = secrets.token_hex(8)
        actions = self.scheduler.add_worker(worker_id, str(msg["host"]), int(msg["shuffle_port"]),
                                            int(msg["slots"]), now, session)
        if old is not None and old is not chan:
            old.close()
        self.workers[worker_id] = chan
        chan.send({"op": "registered", "heartbeat_interval": self.heartbeat_interval,
                   "heartbeat_port": self.heartbeat_port, "session": session,
                   "manager_timeout": self.manager_timeout})
        assert event.reply is not None
        event.reply.put(None)
        return actions

    def _on_heartbeat(self, event: Event, now: float) -> list[Action]:
        worker_id = event.data["worker_id"]
        verdict = self.scheduler.heartbeat(worker_id, int(event.data["seq"]), now,
                                           event.data["session"])
        if verdict is Heartbeat.REREGISTER:
            # Closing its connection is how a worker is told: it kills its attempts and
            # registers afresh; it never resumes what it ran before.
            logger.info("heartbeat from unknown or dead worker %s: it must re-register", worker_id)
            chan = self.workers.pop(worker_id, None)
            if chan is not None:
                chan.close()
        return []

    def _on_worker_conn_lost(self, event: Event, now: float) -> list[Action]:
        worker_id = event.data["worker_id"]
        if self.workers.get(worker_id) is not event.data["chan"]:
            return []  # an old connection of a worker that already re-registered
        self.workers.pop(worker_id, None)
        return self.scheduler.worker_lost(worker_id, event.data["reason"], now)

    def _on_ping(self, event: Event, now: float) -> list[Action]:
        return []

    def _on_progress(self, event: Event, now: float) -> list[Action]:
        worker_id = event.data["worker_id"]
        if self.workers.get(worker_id) is event.data["chan"]:
            msg = event.data["msg"]
            fraction = msg.get("progress")
            status = msg.get("status")
            self.scheduler.attempt_progress(
                str(msg["attempt_id"]), now, worker_id,
                float(fraction) if isinstance(fraction, (int, float)) else None,
                str(status) if status is not None else None)
            job = self.scheduler.job_of(str(msg["attempt_id"]))
            if job is not None:
                self._progress(job.id)  # the client prints only when a percentage changes
        return []

    def _on_done(self, event: Event, now: float) -> list[Action]:
        """An attempt ended. Believed only from the connection its worker registered with
        (a worker declared dead may still talk on an old one), and committed only if it is
        the task's first success."""
        worker_id, msg = event.data["worker_id"], event.data["msg"]
        attempt_id = str(msg["attempt_id"])
        if self.workers.get(worker_id) is not event.data["chan"]:
            logger.info("attempt %s: report from worker %s, declared dead, ignored", attempt_id,
                        worker_id)
            return []
        result = from_dict(TaskResult, msg["result"])
        if result.ok and result.output_file:
            if self.scheduler.may_commit(attempt_id, worker_id):
                try:
                    self._commit_task(attempt_id, result.output_file)
                except OSError as e:
                    result = TaskResult(ok=False, error=f"committing its output failed: {e}",
                                        counters=result.counters)
            else:
                logger.info("attempt %s: not committed (its task is done or it is no longer "
                            "running)", attempt_id)
        return self.scheduler.attempt_finished(attempt_id, result, now, worker_id)

    def _on_submit(self, event: Event, now: float) -> list[Action]:
        spec = from_dict(JobSpec, event.data["msg"]["job"])
        job_id = self._new_job_id()
        staging = staging_dir(spec.output, job_id)
        _check_output(spec.output)
        files = list_inputs(spec.inputs)
        slots = sum(w.slots for w in self.scheduler.workers.values() if w.alive) or 1
        goal = int(spec.conf.get("mapreduce.job.maps", 0)) or spec.num_maps or 2 * slots
        splits = job_splits(files, goal, spec.conf)
        os.makedirs(os.path.join(staging, "_temporary"))
        spec.shared_fs = self.shared_fs
        if not self.shared_fs:
            self.exports.add(job_id, files, spec.files, staging)
        self.clients[job_id] = event.data["chan"]
        assert event.reply is not None
        event.reply.put({"op": "accepted", "job_id": job_id, "maps": len(splits)})
        return self.scheduler.submit(job_id, spec, splits, staging, now)

    def _new_job_id(self) -> str:
        self._job_seq += 1
        return f"job_{self._epoch}_{self._job_seq:04d}"

    def _on_kill(self, event: Event, now: float) -> list[Action]:
        job_id = str(event.data["msg"]["job_id"])
        known = job_id in self.scheduler.jobs
        assert event.reply is not None
        event.reply.put({"op": "ok" if known else "error", "message": f"no such job: {job_id}"})
        return self.scheduler.kill_job(job_id, now)

    def _on_status(self, event: Event, now: float) -> list[Action]:
        assert event.reply is not None
        event.reply.put({"op": "status", **self._status(now)})
        return []

    def _on_logs(self, event: Event, now: float) -> list[Action]:
        job = self.scheduler.jobs.get(str(event.data["msg"].get("job_id")))
        assert event.reply is not None
        if job is None:
            event.reply.put({"op": "error", "message": "no such job"})
        else:
            event.reply.put({"op": "logs", "message": job.message, "counters": job.counters})
        return []

    # -- actions ----------------------------------------------------------------
    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                self._do(action)
            except OSError as e:
                logger.error("action %s failed: %s", type(action).__name__, e)

    def _do(self, action: Action) -> None:
        if isinstance(action, Assign):
            self._prepare_attempt(action)
            self._to_worker(action.worker_id, {"op": "run", "spec": to_dict(action.spec)})
        elif isinstance(action, Kill):
            self._to_worker(action.worker_id, {"op": "kill", "attempt_id": action.attempt_id})
        elif isinstance(action, Progress):
            self._progress(action.job_id)
        elif isinstance(action, JobFinished):
            self._finish_job(action)
        elif isinstance(action, DropWorker):
            chan = self.workers.pop(action.worker_id, None)
            if chan is not None:
                chan.close()

    def _to_worker(self, worker_id: str, msg: dict[str, Any]) -> None:
        chan = self.workers.get(worker_id)
        if chan is None:
            return
        try:
            chan.send(msg)
        except OSError as e:
            self.events.put(Event("worker_conn_lost", {"worker_id": worker_id, "chan": chan,
                                                       "reason": f"send failed: {e}"}))

    def _prepare_attempt(self, action: Assign) -> None:
        """Create the attempt's private output directory (reduces and map-only maps): the
        manager makes it, so once the job is published or cleaned up a late attempt finds
        nowhere to write."""
        spec = action.spec
        if spec.kind == "reduce" or spec.num_reduces == 0:
            try:
                os.makedirs(os.path.join(spec.output_dir, "_temporary", spec.attempt_id),
                            exist_ok=True)
            except OSError as e:  # the attempt will fail writing, and say why
                logger.error("attempt %s: cannot create its output directory: %s",
                             spec.attempt_id, e)

    def _commit_task(self, attempt_id: str, output_file: str) -> None:
        """Rename the attempt's output to its final name; never over an existing one."""
        job = self.scheduler.job_of(attempt_id)
        assert job is not None
        if os.path.basename(output_file) != output_file or output_file.startswith("."):
            raise OSError(f"bad output file name {output_file!r}")
        src = os.path.join(job.staging, "_temporary", attempt_id, output_file)
        dst = os.path.join(job.staging, output_file)
        if os.path.lexists(dst):
            raise FileExistsError(f"{dst} is committed already")
        os.rename(src, dst)
        logger.info("attempt %s committed %s", attempt_id, output_file)

    def _progress(self, job_id: str) -> None:
        chan = self.clients.get(job_id)
        job = self.scheduler.jobs[job_id]
        if chan is None or job.state is not JobState.RUNNING:
            return
        m, r = job.progress()
        try:
            chan.send({"op": "progress", "job_id": job_id, "map": m, "reduce": r})
        except OSError:
            self.clients.pop(job_id, None)

    def _finish_job(self, action: JobFinished) -> None:
        job = self.scheduler.jobs[action.job_id]
        state, message = action.state, action.message
        if state is JobState.SUCCEEDED:
            try:
                _commit_job(job)
            except (OSError, HstreamError) as e:
                state, message = JobState.FAILED, f"committing output failed: {e}"
                job.state, job.message = state, message
        if state is not JobState.SUCCEEDED:
            shutil.rmtree(job.staging, ignore_errors=True)
        self.exports.remove(job.id)
        logger.info("job %s %s %s", job.id, state.value, message)
        for worker_id in list(self.workers):
            self._to_worker(worker_id, {"op": "job_done", "job_id": job.id})
        chan = self.clients.pop(job.id, None)
        if chan is not None:
            try:
                chan.send({"op": "finished", "job_id": job.id, "state": state.value,
                           "message": message, "counters": job.counters})
            except OSError:
                pass
            chan.close()

    def _status(self, now: float) -> dict[str, Any]:
        workers = [{"id": w.id, "host": w.host, "alive": w.alive, "slots": w.slots,
                    "running": sorted(w.running),
                    "last_heartbeat": round(now - w.last_heartbeat, 1)}
                   for w in self.scheduler.workers.values()]
        jobs = [_job_status(j) for j in self.scheduler.jobs.values()]
        return {"workers": workers, "jobs": jobs, "port": self.port}

    def _shutdown(self) -> None:
        for chan in list(self.workers.values()):
            try:
                chan.send({"op": "shutdown"})
            except OSError:
                pass
        for job in self.scheduler.jobs.values():
            if job.state in (JobState.RUNNING, JobState.QUEUED):
                shutil.rmtree(job.staging, ignore_errors=True)
        for chan in list(self.clients.values()):
            try:
                chan.send({"op": "finished", "state": "killed", "message": "manager shut down",
                           "counters": {}})
            except OSError:
                pass
        self.tcp.close()
        self.udp.close()


def _job_status(job: Job) -> dict[str, Any]:
    m, r = job.progress()
    running = [{"attempt": a.id, "worker": a.worker_id, "progress": round(a.fraction, 3),
                "status": a.status} for t in job.tasks for a in t.attempts.values()]
    return {"id": job.id, "name": job.spec.name, "state": job.state.value, "map": m, "reduce": r,
            "output": job.spec.output, "message": job.message, "running": running}


def _timeval(seconds: float) -> bytes:
    import struct
    return struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))


def _check_output(output: str) -> None:
    from hstream.errors import OutputExists
    if os.path.lexists(output):
        raise OutputExists(f"output directory already exists: {output}")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise HstreamError(f"output directory's parent does not exist: {parent}")


def _commit_job(job: Job) -> None:
    """Publish the output: `_SUCCESS` written, scratch removed, then one atomic rename."""
    shutil.rmtree(os.path.join(job.staging, "_temporary"), ignore_errors=True)
    if job.spec.conf.get("mapreduce.fileoutputcommitter.marksuccessfuljobs", "true") != "false":
        open(os.path.join(job.staging, "_SUCCESS"), "wb").close()
    _check_output(job.spec.output)
    os.rename(job.staging, job.spec.output)


def _watch_parent() -> None:
    """A manager started for one job (local mode) must not outlive the client that started it."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    logger.warning("parent process died: manager exiting")
    os._exit(1)


def run(host: str, port: int, heartbeat_port: int, secret: bytes, heartbeat_interval: float,
        heartbeat_missed: int, exit_with_parent: bool = False,
        ready: Callable[[Manager], None] | None = None, shared_fs: bool = True) -> None:
    """Run a manager until it is told to shut down."""
    import signal

    manager = Manager(host, port, heartbeat_port, secret, heartbeat_interval, heartbeat_missed,
                      shared_fs)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: manager.stop())
    if exit_with_parent:
        threading.Thread(target=_watch_parent, daemon=True).start()
    if ready is not None:
        ready(manager)
    manager.serve_forever()
