"""The manager daemon: the scheduler's I/O shell.

Connection threads authenticate peers and turn their messages into events;
the UDP thread turns heartbeats into events; one loop thread owns the
`Scheduler`, applies events in order and carries out the actions it returns
(send a task, kill an attempt, commit output, finish a job). Manager state
therefore changes in one place, on one thread, with no locks around it.

Ops a client may send (each on its own connection, after the handshake):
``submit`` (then progress messages until ``finished``), ``attach`` (the same, for a
job a client follows again after a manager restart), ``status``, ``kill``,
``logs``, ``shutdown``. With a journal (journal.py, on a cluster from `cluster up`)
a restarted manager resumes the jobs its predecessor left unfinished. A worker's
first message is ``register`` (naming the map output it kept); then it sends
``progress`` and ``done``, and receives ``run``, ``kill``, ``job_done``,
``shutdown``. Every message is checked against its schema (`hstream.messages`)
before it becomes an event; one that does not fit, or whose handler fails, is
answered with an error and logged, and the manager goes on. The loop thread does
no blocking file I/O of its own beyond one mkdir or rename per attempt: a
submit's input listing and splitting run on its connection's thread, a job's
commit or clean-up on the publishing thread. Stdlib only.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import queue
import secrets
import shutil
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hstream import errors, messages, protocol
from hstream.cluster import journal, relay
from hstream.cluster.history import History, HistoryConfig
from hstream.cluster.journal import JobRecord, Journal
from hstream.cluster.scheduler import DoneTask, HeldOutput, Scheduler
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
    Sources,
    Task,
)
from hstream.errors import BadMessage, HstreamError, OutputExists, ProtocolError
from hstream.hadoop import streaming
from hstream.hadoop.inputpaths import list_inputs
from hstream.job import (
    ATTEMPT_ID,
    JobSpec,
    MapOutput,
    Split,
    TaskResult,
    cluster_stamp,
    from_dict,
    new_job_id,
    staging_dir,
    to_dict,
)
from hstream.task import procs
from hstream.task.splits import job_splits

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 10.0
#: A client that stops reading its progress must not hold the loop thread for long.
CLIENT_SEND_TIMEOUT = 2.0
#: A job's client hears of its progress at most this often (Hadoop's client polls each second).
PROGRESS_EVERY = 0.25
#: Finished maps wait for a reduce attempt this long at most, gathered into one `sources`
#: message: a job of thousands of small maps would otherwise send one per map and reducer.
#: The last map of a job goes at once: then the reducers wait for nothing else.
SOURCES_HOLD = 0.05
#: After its handshake a peer says what it wants within this long, or is hung up on.
FIRST_MESSAGE_TIMEOUT = 60.0


@dataclass
class Event:
    """Something that happened, applied on the loop thread by `Manager._apply`."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    reply: queue.Queue[Any] | None = None


@dataclass
class Submission:
    """A submitted job made ready off the loop: checked, listed, split, its staging created."""

    id: str
    spec: JobSpec
    files: list[str]
    splits: list[Split]
    staging: str


class Manager:
    def __init__(self, host: str, port: int, heartbeat_port: int, secret: bytes,
                 heartbeat_interval: float = 1.0, heartbeat_missed: int = 10,
                 shared_fs: bool = True, history: History | None = None,
                 tls: protocol.TLS | None = None, journal: Journal | None = None) -> None:
        self.secret = secret
        #: On a cluster from `cluster up`: what a restarted manager resumes from (journal.py).
        self.journal = journal
        #: Jobs the scheduler finished whose output is being published.
        self.publishing: set[str] = set()
        #: The secret and, on a cluster from `cluster up`, this manager's TLS certificate.
        self.auth = protocol.Auth(secret, tls=tls)
        #: Every job's record (history.py): one call per event, queued to its writer thread.
        self.history = history or History(HistoryConfig(None))
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
        self.progress_sent: dict[str, float] = {}  # job id -> when its client last heard; loop
        self.progress_due: set[str] = set()  # jobs whose client is owed a report; loop only
        #: (worker, reduce attempt) -> finished maps not yet sent (`_hold_sources`); loop only.
        self.sources_due: dict[tuple[str, str], list[MapOutput]] = {}
        self.sources_since = 0.0  # when the first of them was held
        self.stopping = threading.Event()
        self._stamp = cluster_stamp()
        self._job_numbers = itertools.count(1)  # next() is atomic: connection threads share it
        self.udp_drops = protocol.DropLog(logger, "unauthenticated datagram")
        self.tcp_drops = protocol.DropLog(logger, "unauthenticated connection")
        self.refused = protocol.DropLog(logger, "malformed message")
        #: Job commits and clean-ups, in order, off the loop thread.
        self.publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")

    # -- threads ---------------------------------------------------------------
    def serve_forever(self) -> None:
        threading.Thread(target=self._accept_loop, daemon=True, name="accept").start()
        threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeats").start()
        logger.info("manager listening on %s:%d (heartbeats on udp %d)", self.host, self.port,
                    self.heartbeat_port)
        try:
            self._execute(self._restore(time.monotonic()))
            self._loop()
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stopping.set()
        self.events.put(Event("wake"))

    def _accept_loop(self) -> None:
        # Job tokens are taken while the job is exported: only tasks of jobs whose data goes
        # through us (shared_fs = no) ever talk to the manager.
        protocol.Listener(self.tcp, self.auth, self._connection, self.stopping,
                          self.tcp_drops, jobs=self.exports.active).run()

    def _heartbeat_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                datagram, addr = self.udp.recvfrom(4096)
            except OSError as e:
                if self.stopping.is_set() or e.errno == errno.EBADF:
                    return
                logger.warning("heartbeat socket: %s", e)
                time.sleep(0.1)
                continue
            try:
                hb = protocol.unpack_heartbeat(self.secret, datagram)
            except ProtocolError as e:
                self.udp_drops.note(addr[0], str(e))
                continue
            self.events.put(Event("heartbeat", {"worker_id": hb["w"], "seq": hb["s"],
                                                "session": str(hb.get("e", ""))}))

    def _connection(self, chan: protocol.Channel) -> None:
        """One authenticated connection: a client's request, a task's relay request, or a
        worker's registration and then its reports."""
        keep, op = False, "?"
        try:
            chan.sock.settimeout(FIRST_MESSAGE_TIMEOUT)
            raw = chan.recv()
            chan.sock.settimeout(None)
            op = str(raw["op"])
            keep = self._request(chan, _checked(chan, raw))
        except BadMessage as e:
            self._refuse(chan, op, e)
        except (OSError, EOFError, ProtocolError) as e:
            logger.warning("connection %s (%s) ended: %s", chan.peer, op, e or "EOF")
        except Exception as e:  # noqa: BLE001 - one request's failure, told to its sender
            logger.exception("connection %s (%s) failed", chan.peer, op)
            self._refuse(chan, op, HstreamError(f"internal error in {op}: {type(e).__name__}: {e}"))
        finally:
            if not keep:
                chan.close()

    def _refuse(self, chan: protocol.Channel, op: str, e: HstreamError) -> None:
        """Answer a malformed request with what is wrong with it. A relay request is refused
        by hanging up: its client expects data, and says the manager refused it."""
        self.refused.note(chan.peer.rpartition(":")[0], str(e))
        if op in relay.OPS:
            return
        try:
            chan.send(_error(e))
        except (OSError, ProtocolError):
            pass

    def _request(self, chan: protocol.Channel, msg: dict[str, Any]) -> bool:
        """Serve one checked request; True if the connection stays open (a submit's, for its
        progress, until the job ends)."""
        op = msg["op"]
        if op == "register":
            self._worker_connection(chan, msg)
        elif op == "submit":
            return self._submit(chan, msg["job"])
        elif op == "attach":
            return self._attach(chan, msg)
        elif op in relay.OPS:
            relay.serve(chan, msg, self.exports)  # file I/O on this thread, not the loop's
        elif op == "shutdown":
            chan.send({"op": "ok"})
            self.stop()
        else:
            chan.send(self._call(op, {"msg": msg}))
        return False

    def _worker_connection(self, chan: protocol.Channel, msg: dict[str, Any]) -> None:
        worker_id = str(msg["worker_id"])
        chan.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(SEND_TIMEOUT))
        try:
            refused = self._call("register", {"chan": chan, "msg": msg})
            if refused is not None:
                raise ProtocolError(f"registration refused: {refused['message']}")
            while True:
                report = self._report(chan, chan.recv())
                if report is not None:
                    self.events.put(Event(report["op"], {"worker_id": worker_id, "msg": report,
                                                         "chan": chan}))
        except Exception as e:  # noqa: BLE001 - however it ends, the loop must hear of it
            if not isinstance(e, (OSError, EOFError, ProtocolError)):
                logger.exception("worker %s: connection failed", worker_id)
            self.events.put(Event("worker_conn_lost", {"worker_id": worker_id, "chan": chan,
                                                       "reason": f"connection lost: {e or 'EOF'}"}))

    def _report(self, chan: protocol.Channel, raw: dict[str, Any]) -> dict[str, Any] | None:
        """A worker's message, checked. A `done` that does not fit its schema still ends its
        attempt, as a failure: no report can take its worker down or outlast maxattempts."""
        try:
            return messages.check(raw, messages.FROM_WORKER)
        except BadMessage as e:
            self.refused.note(chan.peer.rpartition(":")[0], str(e))
            attempt = raw.get("attempt_id")
            if raw["op"] == "done" and isinstance(attempt, str) and ATTEMPT_ID.fullmatch(attempt):
                error = messages.clip(f"its report was refused: {e}", messages.ERROR_CHARS)
                return {"op": "done", "attempt_id": attempt, "result": {"ok": False,
                                                                        "error": error}}
            chan.send(_error(e))
            return None

    def _submit(self, chan: protocol.Channel, job: dict[str, Any]) -> bool:
        """Make the job ready here, on its connection's thread (listing and splitting may be
        slow), then hand it to the loop, which answers `accepted` on the channel."""
        try:
            ready = self._prepare(job)
        except HstreamError as e:
            chan.send(_error(e))
            return False
        chan.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                             _timeval(CLIENT_SEND_TIMEOUT))
        reply = self._call("submit", {"job": ready, "chan": chan})
        if reply["op"] != "accepted":
            shutil.rmtree(ready.staging, ignore_errors=True)
            chan.send(reply)
            return False
        return True

    def _prepare(self, job: dict[str, Any]) -> Submission:
        if len(json.dumps(job)) > messages.MAX_JOB_BYTES:
            raise BadMessage(f"submit.job is larger than {messages.MAX_JOB_BYTES:,} bytes")
        try:
            spec = from_dict(JobSpec, job)
            streaming.check_values(spec.conf)
            _check_output(spec.output)
            files = list_inputs(spec.inputs, spec.conf)
            # Hadoop's goal: mapreduce.job.maps, default 2 (splits are also at most a block).
            goal = int(spec.conf.get("mapreduce.job.maps", spec.num_maps or 2))
            splits = job_splits(files, max(goal, 1), spec.conf)
        except (ValueError, OSError) as e:  # the checks above let none through; say so anyway
            raise HstreamError(f"cannot prepare the job: {e}") from None
        job_id = new_job_id(self._stamp, next(self._job_numbers))
        staging = staging_dir(spec.output, job_id)
        _make_staging(staging)
        spec.shared_fs = self.shared_fs
        return Submission(job_id, spec, files, splits, staging)

    def _call(self, kind: str, data: dict[str, Any]) -> Any:
        """Hand an event to the loop and wait for its answer (every event gets one)."""
        reply: queue.Queue[Any] = queue.Queue()
        self.events.put(Event(kind, data, reply))
        while True:
            try:
                return reply.get(timeout=1.0)
            except queue.Empty:
                if self.stopping.is_set():
                    return {"op": "error", "message": "the manager is shutting down"}

    def status_now(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """What `status` answers, for the web pages; None if the loop does not answer in time."""
        reply: queue.Queue[Any] = queue.Queue()
        self.events.put(Event("status", {"msg": {"op": "status"}}, reply))
        try:
            return dict(reply.get(timeout=timeout))
        except queue.Empty:
            return None

    # -- the loop --------------------------------------------------------------
    def _loop(self) -> None:
        next_tick = time.monotonic()
        while not self.stopping.is_set():
            wake = next_tick
            if self.sources_due:
                wake = min(wake, self.sources_since + SOURCES_HOLD)
            try:
                event = self.events.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                event = Event("wake")
            now = time.monotonic()
            self._execute(self._apply_safely(event, now))
            if self.sources_due and now >= self.sources_since + SOURCES_HOLD:
                self._send_sources()
            if now >= next_tick:
                self._execute(self._apply_safely(Event("tick"), now))
                for job_id in list(self.progress_due):
                    self._progress(job_id)
                self._ping_workers()
                self.udp_drops.flush()
                self.refused.flush()
                next_tick = now + self.heartbeat_interval / 2

    def _apply_safely(self, event: Event, now: float) -> list[Action]:
        """Apply one event; its failure is answered to its sender and logged, never the
        loop's end."""
        try:
            return self._apply(event, now)
        except HstreamError as e:
            logger.warning("%s refused: %s", event.kind, e)
            _answer(event, _error(e))
        except Exception as e:  # noqa: BLE001 - no event may stop the manager
            logger.exception("event %s failed", event.kind)
            _answer(event, {"op": "error", "exit_code": errors.OTHER,
                            "message": f"internal error in {event.kind}: {type(e).__name__}: {e}"})
        return []

    def _ping_workers(self) -> None:
        """Tell every worker we are alive: one whose manager falls silent (a vanished host
        sends no FIN) kills its tasks and leaves instead of waiting forever."""
        for worker_id in list(self.workers):
            self._to_worker(worker_id, {"op": "ping"})

    def _apply(self, event: Event, now: float) -> list[Action]:
        if event.kind == "tick":
            return self.scheduler.tick(now)
        handler: Callable[[Event, float], list[Action]] | None = getattr(
            self, f"_on_{event.kind}", None)
        if handler is None:
            if event.kind != "wake":
                logger.warning("unknown event %s", event.kind)
            return []
        return handler(event, now)

    def _on_register(self, event: Event, now: float) -> list[Action]:
        msg, chan = event.data["msg"], event.data["chan"]
        worker_id = str(msg["worker_id"])
        old = self.workers.pop(worker_id, None)
        session = secrets.token_hex(8)
        held = [HeldOutput(str(h["job_id"]), str(h["attempt_id"]), h.get("counters") or {})
                for h in msg.get("held") or []]
        actions = self.scheduler.add_worker(worker_id, str(msg["host"]), int(msg["shuffle_port"]),
                                            int(msg["slots"]), now, session, held)
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
            self.history.attempt_progress(str(msg["attempt_id"]), msg)
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
        self.history.attempt_done(attempt_id, result, msg.get("stderr"))
        job, task = self.scheduler.job_of(attempt_id), self.scheduler.task_of(attempt_id)
        actions = self.scheduler.attempt_finished(attempt_id, result, now, worker_id)
        if job is not None and task is not None and task.done_attempt == attempt_id:
            self._journal_done(job, task, worker_id)  # before its actions (a job commit) run
        return actions

    def _on_submit(self, event: Event, now: float) -> list[Action]:
        """Queue a job made ready by its connection's thread; from now on the loop owns the
        client's channel, and says `accepted` on it before any progress."""
        job: Submission = event.data["job"]
        chan: protocol.Channel = event.data["chan"]
        self._journal({"t": "submit", "job": job.id, "spec": to_dict(job.spec),
                       "files": job.files, "splits": [to_dict(s) for s in job.splits],
                       "staging": job.staging})
        try:
            chan.send({"op": "accepted", "job_id": job.id, "maps": len(job.splits)})
        except OSError as e:
            raise HstreamError(f"the client of {job.id} went away: {e}") from None
        if not self.shared_fs:
            self.exports.add(job.id, job.files, job.spec.files, job.staging)
        self.clients[job.id] = chan
        _answer(event, {"op": "accepted"})
        actions = self.scheduler.submit(job.id, job.spec, job.splits, job.staging, now)
        self.history.job_submitted(self.scheduler.jobs[job.id])
        return actions

    def _attach(self, chan: protocol.Channel, msg: dict[str, Any]) -> bool:
        """Follow a job again (its client lost a manager that restarted); True if the loop
        now owns the channel, as after a submit."""
        chan.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                             _timeval(CLIENT_SEND_TIMEOUT))
        reply = self._call("attach", {"chan": chan, "msg": msg})
        if reply["op"] == "attached":
            return True
        chan.send(reply)
        return False

    def _on_attach(self, event: Event, now: float) -> list[Action]:
        job = self.scheduler.jobs.get(event.data["msg"]["job_id"])
        if job is None:
            _answer(event, {"op": "error", "message": "no such job: "
                            f"{event.data['msg']['job_id']}", "exit_code": errors.OTHER})
        elif job.state in (JobState.QUEUED, JobState.RUNNING) or job.id in self.publishing:
            chan: protocol.Channel = event.data["chan"]
            chan.send({"op": "attached", "job_id": job.id})
            old = self.clients.pop(job.id, None)
            if old is not None and old is not chan:
                old.close()
            self.clients[job.id] = chan
            _answer(event, {"op": "attached"})
            self._progress(job.id)
        else:
            _answer(event, _finished(job, None))
        return []

    # -- the journal -------------------------------------------------------------
    def _journal(self, record: dict[str, Any]) -> None:
        if self.journal is not None:
            self.journal.append(record)

    def _journal_done(self, job: Job, task: Task, worker_id: str) -> None:
        out = task.output
        self._journal({"t": "done", "job": job.id, "kind": task.kind, "index": task.index,
                       "attempt": task.done_attempt, "worker": worker_id,
                       "host": out.host if out else "", "port": out.port if out else 0,
                       "counters": task.counters,
                       "jobc": job.counters.get("Job Counters", {})})

    def _journal_end(self, job: Job) -> None:
        self._journal({"t": "end", "job": job.id, "state": job.state.value,
                       "message": job.message, "counters": job.counters})

    def _restore(self, now: float) -> list[Action]:
        """Resume what the journal says was unfinished when the last manager died."""
        if self.journal is None:
            return []
        records = self.journal.jobs()
        ended = [r for r in records.values() if r.end is not None][-journal.KEEP_ENDED:]
        for r in ended:
            assert r.end is not None
            self.scheduler.restore_ended(r.id, from_dict(JobSpec, r.spec),
                                         JobState(r.end["state"]), str(r.end["message"]),
                                         r.end["counters"], now)
        actions: list[Action] = []
        for r in records.values():
            if r.end is None:
                actions += self._restore_job(r, now)
        return actions

    def _restore_job(self, r: JobRecord, now: float) -> list[Action]:
        spec = from_dict(JobSpec, r.spec)
        if not os.path.isdir(r.staging):  # its commit's rename happened, or it cannot go on
            ok = r.commit_started and os.path.isdir(spec.output)
            state = JobState.SUCCEEDED if ok else JobState.FAILED
            message = "" if ok else "its staging directory is gone"
            self.scheduler.restore_ended(r.id, spec, state, message, {}, now)
            self._journal_end(self.scheduler.jobs[r.id])
            return []
        # Ours now: a sweep of dead managers' staging (localcluster.sweep_staging) keeps off it.
        try:
            os.makedirs(os.path.join(r.staging, "_temporary"), exist_ok=True)
            procs.write_owner(os.path.join(r.staging, "_temporary"))
        except OSError as e:
            logger.warning("job %s: cannot claim its staging directory: %s", r.id, e)
        outputs = "reduce" if spec.reducer is not None and spec.num_reduces else "map"
        for index in range(len(r.splits) if outputs == "map" else spec.num_reduces):
            if (outputs, index) not in r.done:
                for path in journal.stale_parts(r.staging, index):
                    logger.info("job %s: removing %s, committed by an attempt whose end was "
                                "not journaled", r.id, path)
                    os.unlink(path)
        done = [DoneTask(str(d["kind"]), int(d["index"]), str(d["attempt"]), str(d["worker"]),
                         str(d["host"]), int(d["port"]), d["counters"]) for d in r.done.values()]
        jobc = list(r.done.values())[-1]["jobc"] if r.done else {}
        if not self.shared_fs:
            self.exports.add(r.id, r.files, spec.files, r.staging)
        actions = self.scheduler.restore_job(
            r.id, spec, [from_dict(Split, s) for s in r.splits], r.staging, done, jobc,
            journal.attempt_base(self.journal.generation if self.journal else 1), now)
        self.history.job_submitted(self.scheduler.jobs[r.id])
        logger.info("job %s resumed after a manager restart: %d tasks were done", r.id,
                    len(done))
        return actions

    def _on_kill(self, event: Event, now: float) -> list[Action]:
        job_id = event.data["msg"]["job_id"]
        if job_id not in self.scheduler.jobs:
            _answer(event, {"op": "error", "message": f"no such job: {job_id}"})
            return []
        _answer(event, {"op": "ok"})
        return self.scheduler.kill_job(job_id, now)

    def _on_status(self, event: Event, now: float) -> list[Action]:
        assert event.reply is not None
        event.reply.put({"op": "status", **self._status(now)})
        return []

    def _on_logs(self, event: Event, now: float) -> list[Action]:
        job = self.scheduler.jobs.get(event.data["msg"]["job_id"])
        if job is None:
            _answer(event, {"op": "error", "message": "no such job"})
        else:
            _answer(event, {"op": "logs", "message": job.message, "counters": job.counters})
        return []

    # -- actions ----------------------------------------------------------------
    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                self._do(action)
            except OSError as e:
                logger.error("action %s failed: %s", type(action).__name__, e)
            except Exception:  # noqa: BLE001 - no action may stop the manager
                logger.exception("action %s failed", type(action).__name__)

    def _do(self, action: Action) -> None:
        if isinstance(action, Assign):
            self.history.attempt_started(action.spec, self.scheduler)
            self._prepare_attempt(action)
            self._to_worker(action.worker_id, {"op": "run", "spec": to_dict(action.spec)})
        elif isinstance(action, Kill):
            self.history.attempt_killed(action.attempt_id)
            self._to_worker(action.worker_id, {"op": "kill", "attempt_id": action.attempt_id})
        elif isinstance(action, Progress):
            self._progress(action.job_id)
        elif isinstance(action, JobFinished):
            self._finish_job(action)
        elif isinstance(action, Sources):
            self._hold_sources(action)
        elif isinstance(action, DropWorker):
            self.history.worker_lost(action.worker_id, action.reason)
            chan = self.workers.pop(action.worker_id, None)
            if chan is not None:
                chan.close()

    def _hold_sources(self, action: Sources) -> None:
        """Gather finished maps for their reduce attempt (see SOURCES_HOLD)."""
        if not self.sources_due:
            self.sources_since = time.monotonic()
        self.sources_due.setdefault((action.worker_id, action.attempt_id),
                                    []).extend(action.sources)
        job = self.scheduler.job_of(action.attempt_id)
        if job is not None and job.all_done("map"):
            self._send_sources()

    def _send_sources(self) -> None:
        """Send the finished maps gathered for each reduce attempt, one message each."""
        due, self.sources_due = self.sources_due, {}
        for (worker_id, attempt_id), sources in due.items():
            self._to_worker(worker_id, {"op": "sources", "attempt_id": attempt_id,
                                        "sources": [to_dict(m) for m in sources]})

    def _to_worker(self, worker_id: str, msg: dict[str, Any]) -> None:
        chan = self.workers.get(worker_id)
        if chan is None:
            return
        try:
            chan.send(msg)
        except (OSError, ProtocolError) as e:
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
        """Tell the job's client how far it is, at most every PROGRESS_EVERY seconds (a job of
        thousands of small tasks would otherwise recount them all for every task); a report
        held back goes out on the next tick."""
        chan = self.clients.get(job_id)
        job = self.scheduler.jobs[job_id]
        if chan is None or job.state is not JobState.RUNNING:
            self.progress_due.discard(job_id)
            return
        now = time.monotonic()
        if now - self.progress_sent.get(job_id, 0.0) < PROGRESS_EVERY:
            self.progress_due.add(job_id)
            return
        self.progress_sent[job_id] = now
        self.progress_due.discard(job_id)
        m, r = job.progress()
        failed = job.counters.get("Job Counters", {})
        try:
            chan.send({"op": "progress", "job_id": job_id, "map": m, "reduce": r,
                       "failed": failed.get("Failed map tasks", 0)
                       + failed.get("Failed reduce tasks", 0)})
        except OSError:
            self.clients.pop(job_id, None)

    def _finish_job(self, action: JobFinished) -> None:
        """The job is over for the scheduler; its output is published (or removed) on the
        publishing thread, which then tells the loop (`_on_published`)."""
        job = self.scheduler.jobs[action.job_id]
        self.publishing.add(job.id)
        self.exports.remove(job.id)
        for worker_id in list(self.workers):
            self._to_worker(worker_id, {"op": "job_done", "job_id": job.id})
        self.publisher.submit(self._publish, job, action.state, action.message)

    def _publish(self, job: Job, state: JobState, message: str) -> None:
        exit_code = None
        if state is JobState.SUCCEEDED:
            try:
                self._journal({"t": "commit", "job": job.id})
                _commit_job(job)
            except OutputExists as e:  # another job got there first: Hadoop's message, exit 4
                state, message, exit_code = JobState.FAILED, str(e), e.exit_code
            except (OSError, HstreamError) as e:
                state, message = JobState.FAILED, f"committing output failed: {e}"
        if state is not JobState.SUCCEEDED:
            shutil.rmtree(job.staging, ignore_errors=True)
        self.events.put(Event("published", {"job": job, "state": state, "message": message,
                                             "exit_code": exit_code}))

    def _on_published(self, event: Event, now: float) -> list[Action]:
        job: Job = event.data["job"]
        job.state, job.message = event.data["state"], event.data["message"]
        logger.info("job %s %s %s", job.id, job.state.value, job.message)
        self._journal_end(job)
        self.publishing.discard(job.id)
        self.history.job_finished(job)
        chan = self.clients.pop(job.id, None)
        if chan is not None:
            try:
                chan.send(_finished(job, event.data["exit_code"]))
            except (OSError, ProtocolError):
                pass
            chan.close()
        return []

    def _status(self, now: float) -> dict[str, Any]:
        workers = [{"id": w.id, "host": w.host, "alive": w.alive, "slots": w.slots,
                    "running": sorted(w.running),
                    "last_heartbeat": round(now - w.last_heartbeat, 1)}
                   for w in self.scheduler.workers.values() if not w.ghost]
        jobs = [_job_status(j) for j in self.scheduler.jobs.values()]
        return {"workers": workers, "jobs": jobs, "port": self.port}

    def _shutdown(self) -> None:
        self.publisher.shutdown(wait=True)  # jobs being published finish, and are told so
        while not self.events.empty():
            event = self.events.get()
            if event.kind == "published":
                self._on_published(event, time.monotonic())
        for chan in list(self.workers.values()):
            try:
                chan.send({"op": "shutdown"})
            except OSError:
                pass
        for job in self.scheduler.jobs.values():
            if job.state in (JobState.RUNNING, JobState.QUEUED):
                shutil.rmtree(job.staging, ignore_errors=True)
                job.state, job.message = JobState.KILLED, "manager shut down"
                self._journal_end(job)
        for chan in list(self.clients.values()):
            try:
                chan.send({"op": "finished", "state": "killed", "message": "manager shut down",
                           "counters": {}})
            except OSError:
                pass
        self.tcp.close()
        self.udp.close()
        self.history.close()
        if self.journal is not None:
            self.journal.close()


def _job_status(job: Job) -> dict[str, Any]:
    m, r = job.progress()
    running = [{"attempt": a.id, "worker": a.worker_id, "progress": round(a.fraction, 3),
                "status": a.status} for t in job.tasks for a in t.attempts.values()]
    return {"id": job.id, "name": job.spec.name, "state": job.state.value, "map": m, "reduce": r,
            "output": job.spec.output, "message": job.message, "running": running}


def _finished(job: Job, exit_code: int | None) -> dict[str, Any]:
    return {"op": "finished", "job_id": job.id, "state": job.state.value,
            "message": job.message, "counters": job.counters, "exit_code": exit_code}


def _checked(chan: protocol.Channel, raw: dict[str, Any]) -> dict[str, Any]:
    """A first message, checked against its schema and against the peer's credential: a job
    token may only make relay requests for its own job."""
    msg = messages.check(raw, messages.MANAGER, chan.credential)
    if chan.job_id is not None and msg.get("job_id") != chan.job_id:
        raise BadMessage(f"a token of {chan.job_id} serves that job only")
    return msg


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))


def _error(e: HstreamError) -> dict[str, Any]:
    return {"op": "error", "message": str(e), "exit_code": e.exit_code}


def _answer(event: Event, reply: dict[str, Any]) -> None:
    if event.reply is not None:
        event.reply.put(reply)


def _output_exists(output: str) -> OutputExists:
    return OutputExists(f"Output directory {output} already exists")  # Hadoop's words


def _check_output(output: str) -> None:
    if os.path.lexists(output):
        raise _output_exists(output)
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise HstreamError(f"output directory's parent does not exist: {parent}")


def _make_staging(staging: str) -> None:
    """The job's hidden staging directory beside the output; an unwritable parent (a read-only
    mount, /proc) is the user's error, named."""
    try:
        os.makedirs(os.path.join(staging, "_temporary"))
        # Who owns it: if this manager is killed, the next run knows the staging is stale.
        procs.write_owner(os.path.join(staging, "_temporary"))
    except OSError as e:
        parent = os.path.dirname(staging)
        raise HstreamError(f"cannot write in the output directory's parent {parent}: "
                           f"{e.strerror or e}") from None


def _commit_job(job: Job) -> None:
    """Publish the output: `_SUCCESS` written, scratch removed, then one atomic rename, which
    never replaces another job's output (the loser of a race gets Hadoop's message)."""
    shutil.rmtree(os.path.join(job.staging, "_temporary"), ignore_errors=True)
    if job.spec.conf.get("mapreduce.fileoutputcommitter.marksuccessfuljobs", "true") != "false":
        open(os.path.join(job.staging, "_SUCCESS"), "wb").close()
    _check_output(job.spec.output)
    try:
        os.rename(job.staging, job.spec.output)
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise _output_exists(job.spec.output) from None
        raise


def _watch_parent() -> None:
    """A manager started for one job (local mode) must not outlive the client that started it."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    logger.warning("parent process died: manager exiting")
    os._exit(1)


def run(host: str, port: int, heartbeat_port: int, secret: bytes, heartbeat_interval: float,
        heartbeat_missed: int, exit_with_parent: bool = False,
        ready: Callable[[Manager], None] | None = None, shared_fs: bool = True,
        history: HistoryConfig | None = None, tls: protocol.TLS | None = None,
        journal_path: str | None = None) -> None:
    """Run a manager until it is told to shut down; with a journal, resume its jobs."""
    import signal

    protocol.protect_memory()  # the secret is in here: no task may read this process
    manager = Manager(host, port, heartbeat_port, secret, heartbeat_interval, heartbeat_missed,
                      shared_fs, History(history or HistoryConfig(None)),
                      tls.load() if tls else None, Journal(journal_path) if journal_path else None)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: manager.stop())
    if exit_with_parent:
        threading.Thread(target=_watch_parent, daemon=True).start()
    if ready is not None:
        ready(manager)
    manager.serve_forever()
