"""The worker daemon: registers with the manager, heartbeats, runs task attempts, serves map output.

Threads: the main thread reads the manager's messages; one sends UDP
heartbeats; one accepts shuffle connections (a thread each); one per running
attempt reads the task runner's reports. The worker's only shared state is
`self.tasks`, guarded by `self.lock`.

If the manager connection breaks, or the manager falls silent (it pings every
worker each half heartbeat interval), the worker kills every attempt (their
output may already be re-assigned) and tries to register again for `reconnect`
seconds; a manager that stays away means the worker exits: nothing of it is
left running. Finished map output outlives the connection: the registration
names it (`held`), so a restarted manager (journal.py) need not run those maps
again. An attempt belongs to the registration it was started under: its
result is reported on that connection or not at all, so a worker that was
declared dead never resumes old work.

The cluster secret stays in this process: it comes on stdin at start (never a file, never
argv), the process is non-dumpable (`protocol.protect_memory`), and a task gets its job's
token instead (`protocol.Auth.for_job`), which this worker's shuffle server takes only while
the job is active here. With `--task-user`, a root worker runs its tasks as that account.
Stdlib only: this module runs on hosts that have nothing but python3.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from hstream import messages, protocol
from hstream.errors import BadMessage, ProtocolError
from hstream.job import TaskResult, TaskSpec, from_dict, to_dict
from hstream.task import procs, reporter, shuffle, zygote
from hstream.task.attempt import discard_attempt, reuse_dir
from hstream.task.pooled import Pooled

logger = logging.getLogger(__name__)

REGISTER_TIMEOUT = 30.0
#: The end of an attempt's stderr that goes to the manager with its result (for the history).
STDERR_TAIL = 64 << 10
#: Map attempts a slot may run at once (the manager gives two while a job's maps are short:
#: `Job.maps_per_slot`): as many runners of a job wait for its next map.
MAPS_PER_SLOT = 2
#: Seconds a waiting runner has to exit once its stdin closes, before it is killed.
RETIRE_WAIT = 2.0
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


#: A task runner: forked by the zygote, or (if it cannot) started afresh.
Proc = zygote.Runner | subprocess.Popen[bytes]


@dataclass
class Running:
    spec: TaskSpec
    proc: Proc
    #: The manager connection (registration) the attempt was started under.
    chan: protocol.Channel | None
    #: The attempt's session and cgroup: everything it started, killed when it ends.
    box: procs.Box
    killed: bool = False
    #: Maps a reduce attempt has been told of (its spec's sources, then `sources` messages).
    heard: int = 0


@dataclass
class Idle:
    """A runner waiting for its job's next map, its last map's directory (passed on), and
    the box it waits in, where its next map runs too."""

    proc: Proc
    root: str
    box: procs.Box


@dataclass(frozen=True)
class TaskUser:
    """`[workers] task_user`: the unprivileged account a root worker runs its tasks as, so
    that they can read neither the worker's files nor its memory."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> TaskUser:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"task user {name!r} does not exist on this host") from None
        if pw.pw_uid == 0:
            raise ValueError(f"task user {name!r} is root: name an unprivileged account")
        if os.geteuid() != 0:
            raise ValueError(f"task user {name!r} needs the worker to run as root")
        return cls(name, pw.pw_uid, pw.pw_gid, pw.pw_dir)

    def hand_over(self, spec: TaskSpec, root: str) -> None:
        """The directories the attempt writes: its own, its job's (map output, fetched files)
        and, on a shared filesystem, its output directory in the job's staging area."""
        job_dir = os.path.dirname(os.path.dirname(root))
        for passage in (os.path.dirname(job_dir), os.path.dirname(root)):  # whatever our umask
            os.chmod(passage, 0o711)
        paths = [job_dir, root]
        if spec.shared_fs:
            paths.append(os.path.join(spec.output_dir, "_temporary", spec.attempt_id))
        for path in paths:
            if os.path.isdir(path):
                os.chown(path, self.uid, self.gid)

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "HOME": self.home, "USER": self.name, "LOGNAME": self.name}


class Worker:
    def __init__(self, worker_id: str, manager: tuple[str, int], auth: protocol.Auth, host: str,
                 slots: int, workdir: str, reconnect: float,
                 task_user: TaskUser | None = None) -> None:
        self.id = worker_id
        self.manager = manager
        #: The cluster secret (and this worker's TLS certificate): never handed to a task.
        self.auth = auth
        self.secret = auth.key
        self.task_user = task_user
        #: Jobs that ran an attempt here and are not done: their tokens are taken.
        self.jobs: set[str] = set()
        self.host = host
        self.slots = slots
        self.workdir = workdir
        self.reconnect = reconnect
        self.lock = threading.Lock()
        self.tasks: dict[str, Running] = {}
        #: Finished map attempts whose output is here: attempt id -> its `held` entry.
        self.held: dict[str, dict[str, Any]] = {}
        #: Runners waiting for their job's next map attempt (job id -> runners).
        self.idle: dict[str, list[Idle]] = {}
        #: Finished maps whose output is in a runner's pack: attempt id -> (job id, runner's
        #: pid, where in its pack: `shuffle.append_pack`).
        self.packed: dict[str, tuple[str, int, list[int]]] = {}
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
        self.cgroups = procs.Cgroups()
        self.zygote = zygote.Zygote(with_package(dict(os.environ)))

    # -- lifecycle -------------------------------------------------------------
    def run(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        threading.Thread(target=shuffle.serve, daemon=True, name="shuffle",
                         args=(self.shuffle_sock, self.auth, self.workdir, self.stopping,
                               self._job_active, self._packed)).start()
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
        self.zygote.close()
        try:
            self.shuffle_sock.close()
        except OSError:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.cgroups.close()

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
        chan = protocol.connect(*self.manager, self.auth)
        try:
            chan.sock.settimeout(REGISTER_TIMEOUT)  # a wedged manager must not hold us
            chan.send({"op": "register", "worker_id": self.id, "host": self.host,
                       "shuffle_port": self.shuffle_port, "slots": self.slots,
                       "pid": os.getpid(), "version": protocol.VERSION,
                       "held": self._held()})
            reply = chan.recv()
            if reply["op"] != "registered":
                raise ProtocolError(f"registration refused: {reply}")
            reply = messages.check(reply, messages.TO_WORKER)
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
                try:
                    self._handle(chan, msg)
                except Exception:  # noqa: BLE001 - one message's failure is never the worker's
                    logger.exception("worker %s: handling %s failed", self.id, msg["op"])
        except TimeoutError:
            logger.warning("worker %s: no word from the manager for %.1f s: connection given up",
                           self.id, self.manager_timeout or 0)
        except (OSError, EOFError, ProtocolError) as e:
            logger.warning("worker %s: manager connection lost: %s", self.id, e or "EOF")
        finally:
            self.registered.clear()
            self.chan = None
            chan.close()

    def _handle(self, chan: protocol.Channel, raw: dict[str, Any]) -> None:
        """One message from the manager, checked against its schema (`hstream.messages`)."""
        try:
            msg = messages.check(raw, messages.TO_WORKER)
        except BadMessage as e:
            logger.warning("worker %s: refused a message from the manager: %s", self.id, e)
            return
        op = msg["op"]
        if op == "run":
            self._run(chan, from_dict(TaskSpec, msg["spec"]))
        elif op == "kill":
            self._kill(msg["attempt_id"])
        elif op == "sources":
            self._pass_sources(msg["attempt_id"], msg["sources"])
        elif op == "job_done":
            self._clean_job(msg["job_id"])
        elif op == "shutdown":
            logger.info("worker %s: shutdown requested", self.id)
            self.stopping.set()
        elif op == "error":
            logger.warning("worker %s: the manager refused a message: %s", self.id,
                           msg["message"])

    def _run(self, chan: protocol.Channel, spec: TaskSpec) -> None:
        """Start an attempt; one that cannot start (no memory, no descriptors) is reported
        failed, and the connection goes on."""
        try:
            self._start(spec)
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
            logger.error("worker %s: cannot start %s: %s", self.id, spec.attempt_id, e)
            self._kill(spec.attempt_id)
            with self.lock:
                self.tasks.pop(spec.attempt_id, None)
            result = TaskResult(ok=False, error=f"the worker could not start it: {e}")
            self._send({"op": "done", "attempt_id": spec.attempt_id, "result": to_dict(result)},
                       chan)

    def _send(self, msg: dict[str, Any], chan: protocol.Channel | None) -> bool:
        """Send on `chan` if it is still the current registration's connection."""
        if chan is None or chan is not self.chan:
            return False
        try:
            chan.send(msg)
            return True
        except (OSError, ProtocolError) as e:
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
        root = self._root(spec)
        with self.lock:
            self.jobs.add(spec.job_id)
        idle = self._take_idle(spec.job_id) if spec.kind == "map" else None
        if idle is None or not reuse_dir(idle.root, root, {f.name for f in spec.files}):
            os.makedirs(root, exist_ok=True)
        user = self.task_user
        if user is not None:
            user.hand_over(spec, root)
        reused = idle is not None
        if idle is not None:
            proc, box = idle.proc, idle.box
        else:
            proc = self._spawn(root, user)
            box = procs.Box(self.cgroups, spec.attempt_id)
            box.enter(proc.pid)  # before the runner reads its spec, so before it starts anything
        with self.lock:
            self.tasks[spec.attempt_id] = Running(spec, proc, self.chan, box,
                                                  heard=len(spec.sources))
        assert proc.stdin is not None
        try:
            if reused:  # a runner of this job's last map: the attempt's directory goes first
                proc.stdin.write(json.dumps({"root": root}).encode() + b"\n")
            proc.stdin.write(self.auth.for_job(spec.job_id).dumps())
            proc.stdin.write(json.dumps(to_dict(spec)).encode() + b"\n")
            proc.stdin.flush()
            # A map's runner may take the job's next map this way; a reduce hears of maps
            # that finish later (`_pass_sources`).
            if spec.kind != "map" and len(spec.sources) >= spec.num_maps:
                proc.stdin.close()
        except BrokenPipeError:
            pass
        # A kept thread: a new one's start waits until it runs, which a busy host makes
        # longer than a small map.
        Pooled(target=self._watch, args=(spec, proc), name=spec.attempt_id).start()
        logger.info("worker %s: started %s (pid %d)", self.id, spec.attempt_id, proc.pid)

    def _root(self, spec: TaskSpec) -> str:
        return os.path.join(self.workdir, spec.job_id, "attempts", spec.attempt_id)

    def _spawn(self, root: str, user: TaskUser | None) -> Proc:
        """A runner for the attempt in `root`: forked by the zygote (warm, no interpreter start
        or imports), or started afresh if the zygote cannot."""
        env = dict(os.environ) if user is None else user.environment(dict(os.environ))
        try:
            if self.zygote.sock is None and self.zygote.proc is None:
                self.zygote.start()
            return self.zygote.spawn(root, env, user.uid if user else None,
                                     user.gid if user else None)
        except (OSError, AttributeError) as e:  # AttributeError: no pidfd_open (not Linux)
            logger.warning("worker %s: the zygote cannot start a runner (%s): starting it "
                           "afresh", self.id, e)
        env = with_package(env)
        # -S: the runner needs only the stdlib and hstream (on PYTHONPATH), not site's start-up.
        return subprocess.Popen([sys.executable, "-S", "-m", "hstream.task", root],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, env=env,
                                start_new_session=True, user=user.uid if user else None,
                                group=user.gid if user else None,
                                extra_groups=[] if user else None)

    def _watch(self, spec: TaskSpec, proc: Proc) -> None:
        result: dict[str, Any] | None = None
        told = False  # the manager has the result already
        with self.lock:
            chan, box = self.tasks[spec.attempt_id].chan, self.tasks[spec.attempt_id].box
        root = self._root(spec)
        assert proc.stdout is not None
        for report in reporter.read_reports(proc.stdout):  # checked and bounded
            if "result" not in report:
                self._send({"op": "progress", "attempt_id": spec.attempt_id, **report}, chan)
                continue
            result = report["result"]
            self._note_packed(spec, proc.pid, result)
            stderr = stderr_tail(root)  # before a kept runner's next map may take the directory
            if self._keep_runner(spec, proc, box, result):
                self._done(spec, stderr, result, chan)
                return
            told = self._early_done(spec, stderr, result, chan)
            _close_stdin(proc)  # a map's runner waits for another attempt: none comes
        status = end_attempt(proc, box)
        with self.lock:
            running = self.tasks.pop(spec.attempt_id, None)
        _close_stdin(proc)  # a reduce that heard of every map never got its stdin closed
        if told:
            return
        if running is None or running.killed:
            discard_attempt(spec, root)
            if result is not None:
                logger.info("worker %s: %s finished after it was killed or abandoned: result "
                            "discarded", self.id, spec.attempt_id)
            return
        if result is None:
            result = to_dict(TaskResult(ok=False, error=f"task runner died (status {status})"))
        stderr = stderr_tail(root)
        if not result.get("ok"):  # its space is free before a retry starts
            discard_attempt(spec, root)
        self._done(spec, stderr, result, chan)

    def _keep_runner(self, spec: TaskSpec, proc: Proc, box: procs.Box,
                     result: dict[str, Any]) -> bool:
        """After a map that went well, its runner waits for the job's next map here (Hadoop's
        JVM reuse): a new runner costs a fork, its memory copied page by page as it runs, an
        exit and a reap, more than a small map's own work. What the attempt started is
        killed first, as when a runner ends; a runner of a job no longer here, or one over
        the slots, ends instead."""
        if not self._map_succeeded(spec, result):
            return False
        with self.lock:
            if (self.stopping.is_set() or spec.job_id not in self.jobs
                    or len(self.idle.get(spec.job_id, [])) >= MAPS_PER_SLOT * self.slots):
                return False
        if not box.sweep(proc.pid):
            return False
        with self.lock:  # killed, or the job ended, meanwhile: it ends the usual way
            running = self.tasks.get(spec.attempt_id)
            if running is None or running.killed or spec.job_id not in self.jobs:
                return False
            del self.tasks[spec.attempt_id]
            self.idle.setdefault(spec.job_id, []).append(Idle(proc, self._root(spec), box))
        return True

    def _note_packed(self, spec: TaskSpec, runner: int, result: dict[str, Any]) -> None:
        """Where a map that went well left its output in its runner's pack, before anyone
        hears of it; a result whose location does not fit the job failed."""
        packed = result.pop("packed", None)
        if packed is None or not result.get("ok"):
            return
        if spec.kind != "map" or len(packed) != spec.num_reduces + 1:
            result.update(ok=False, error="the task runner reported a malformed map output place")
            return
        with self.lock:
            self.packed[spec.attempt_id] = (spec.job_id, runner, packed)

    def _packed(self, job_id: str, attempt_id: str) -> tuple[int, list[int]] | None:
        """For the shuffle server: where `attempt_id`'s packed output is, if it is."""
        with self.lock:
            entry = self.packed.get(attempt_id)
        return (entry[1], entry[2]) if entry is not None and entry[0] == job_id else None

    def _take_idle(self, job_id: str) -> Idle | None:
        """A live runner of `job_id` waiting for an attempt, if there is one."""
        dead = []
        taken = None
        with self.lock:
            pool = self.idle.get(job_id, [])
            while pool and taken is None:
                idle = pool.pop()
                if _exited(idle.proc, 0):
                    dead.append(idle)
                else:
                    taken = idle
        for gone in dead:
            _retire(gone)
        return taken

    def _retire_idle(self, job_id: str | None = None) -> None:
        """End the waiting runners of `job_id` (all jobs' if None)."""
        with self.lock:
            jobs = list(self.idle) if job_id is None else [job_id]
            runners = [i for j in jobs for i in self.idle.pop(j, [])]
        for idle in runners:
            _retire(idle)

    def _early_done(self, spec: TaskSpec, stderr: str, result: dict[str, Any],
                    chan: protocol.Channel | None) -> bool:
        """A map's success goes to the manager as soon as its runner reports it: its output is
        complete, and the runner's exit and the sweep of its leftovers (some milliseconds)
        need not hold the slot; a job of thousands of small maps waits for them no more.
        Failures and reduces are told after the sweep, so that a retry or the job's end never
        meets what they left running."""
        if not self._map_succeeded(spec, result):
            return False
        self._done(spec, stderr, result, chan)
        return True

    def _map_succeeded(self, spec: TaskSpec, result: dict[str, Any]) -> bool:
        """A map attempt that went well and still counts (it was not killed meanwhile)."""
        with self.lock:
            running = self.tasks.get(spec.attempt_id)
        return (spec.kind == "map" and bool(result.get("ok")) and running is not None
                and not running.killed)

    def _done(self, spec: TaskSpec, stderr: str, result: dict[str, Any],
              chan: protocol.Channel | None) -> None:
        if result.get("ok") and spec.kind == "map" and spec.num_reduces:
            with self.lock:
                self.held[spec.attempt_id] = {"job_id": spec.job_id,
                                              "attempt_id": spec.attempt_id,
                                              "counters": result.get("counters") or {}}
        if not self._send({"op": "done", "attempt_id": spec.attempt_id, "result": result,
                           "stderr": stderr}, chan):
            logger.warning("worker %s: result of %s dropped: it belongs to a manager connection "
                           "that is gone (the attempt was re-run elsewhere)", self.id,
                           spec.attempt_id)

    def _pass_sources(self, attempt_id: str, sources: list[dict[str, Any]]) -> None:
        """Finished maps for a reduce attempt that started before they were (slowstart): a
        JSON line on its stdin, closed once it has heard of every map."""
        with self.lock:
            running = self.tasks.get(attempt_id)
        stdin = running.proc.stdin if running is not None else None
        if running is None or stdin is None or stdin.closed:
            return
        running.heard += len(sources)
        try:
            stdin.write(json.dumps(sources).encode() + b"\n")
            stdin.flush()
            if running.heard >= running.spec.num_maps:
                stdin.close()
        except (BrokenPipeError, ValueError):  # it ended meanwhile
            pass

    def _kill(self, attempt_id: str) -> None:
        with self.lock:
            running = self.tasks.get(attempt_id)
            if running is not None:
                running.killed = True
        if running is not None:
            kill_group(running.proc, running.box)
            logger.info("worker %s: killed %s", self.id, attempt_id)

    def _kill_all(self, reason: str) -> None:
        with self.lock:
            victims = list(self.tasks.values())
            for r in victims:
                r.killed = True
        for r in victims:
            kill_group(r.proc, r.box)
        self._retire_idle()
        if victims:
            logger.info("worker %s: killed %s: %s", self.id,
                        ", ".join(r.spec.attempt_id for r in victims), reason)

    def _job_active(self, job_id: str) -> bool:
        with self.lock:
            return job_id in self.jobs

    def _held(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.held.values())

    def _clean_job(self, job_id: str) -> None:
        with self.lock:
            self.jobs.discard(job_id)
            self.held = {a: h for a, h in self.held.items() if h["job_id"] != job_id}
            self.packed = {a: p for a, p in self.packed.items() if p[0] != job_id}
        self._retire_idle(job_id)
        if shuffle._ID.match(job_id):
            shutil.rmtree(os.path.join(self.workdir, job_id), ignore_errors=True)

def with_package(env: dict[str, str]) -> dict[str, str]:
    """`env` with hstream on PYTHONPATH, for a Python started with -S (no site-packages)."""
    return {**env, "PYTHONPATH": PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")}


def stderr_tail(root: str) -> str:
    """The last STDERR_TAIL bytes of an attempt's stderr log: its directory goes when the job
    ends, so this is what the manager's history keeps of it."""
    try:
        with open(os.path.join(root, "stderr.log"), "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - STDERR_TAIL))
            return f.read(STDERR_TAIL).decode("utf-8", "replace")
    except OSError:
        return ""


def _close_stdin(proc: Proc) -> None:
    if proc.stdin is not None and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except OSError:
            pass


def _exited(proc: Proc, timeout: float) -> bool:
    """Whether the runner ended within `timeout` seconds (0: now); it is not reaped."""
    if isinstance(proc, zygote.Runner):
        return proc.wait_exit(timeout)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _retire(idle: Idle) -> None:
    """End a waiting runner: told by EOF on its stdin, killed if it does not go at once; its
    box goes with it."""
    proc = idle.proc
    _close_stdin(proc)
    if not _exited(proc, RETIRE_WAIT):
        kill_group(proc)
    idle.box.remove()
    if isinstance(proc, zygote.Runner):
        proc.reap()
    else:
        proc.wait()


def kill_group(proc: Proc, box: procs.Box | None = None) -> None:
    """Kill an attempt's whole session (runner, command, sorts) and its cgroup; gone already
    is fine."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if box is not None:
        box.kill()


def end_attempt(proc: Proc, box: procs.Box) -> int:
    """Wait for the runner, kill whatever the attempt left running (a background child of
    the user's command), then reap: while the runner is a zombie its pid, the session id,
    cannot be reused."""
    if isinstance(proc, zygote.Runner):
        proc.wait_exit()
        box.kill()
        return proc.reap()
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        pass
    box.kill()
    return proc.wait()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hstream worker", description=__doc__)
    p.add_argument("--manager", required=True, help="HOST:PORT of the manager")
    p.add_argument("--secret-file", required=True,
                   help="- to read the credentials (protocol.Auth) from stdin, as `cluster up` "
                        "and the local cluster do; or a file holding the secret (no TLS)")
    p.add_argument("--task-user", default=None,
                   help="run tasks as this unprivileged account (the worker must be root)")
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
    protocol.protect_memory()  # before the secret comes in
    try:
        auth = (protocol.read_auth(sys.stdin.buffer) if args.secret_file == "-"
                else protocol.Auth(protocol.read_secret(args.secret_file)))
        if auth.tls is not None:
            auth.tls.load()
        task_user = TaskUser.lookup(args.task_user) if args.task_user else None
    except (OSError, ValueError, ProtocolError) as e:
        logger.error("worker cannot start: %s", e)
        return 2
    host, _, port = args.manager.rpartition(":")
    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    worker = Worker(worker_id, (host.strip("[]"), int(port)), auth, args.host, args.slots,
                    args.workdir, args.reconnect, task_user)
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
