"""`cluster up` / `cluster down`: the manager on this machine, a worker on every host over SSH.

A host needs only sshd and a python3. The launcher brings hstream's own
stdlib-only code (a tarball of this package, the manager's exact version) and
the cluster secret through the SSH channel's stdin to `hostagent`, which
unpacks the code into the worker's home, writes the secret as a 0600 file and
starts the worker detached (its own session, stdin from /dev/null, output to a
file), so it outlives the SSH session. Host keys are checked against
known_hosts: an unknown key is refused unless the user accepts new keys, a
changed key always is. Hosts are handled in parallel; every step prints one
numbered line, and every failed host is reported with its reason.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import io
import json
import logging
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import paramiko

import hstream
from hstream import protocol
from hstream.cluster import clusterstate, hostagent, tls
from hstream.cluster.client import Client
from hstream.cluster.config import ClusterConfig, Host
from hstream.errors import HstreamError, ProtocolError

logger = logging.getLogger(__name__)

PACKAGE_DIR = os.path.dirname(os.path.abspath(hstream.__file__))
MANAGER_START_TIMEOUT = 15.0
MANAGER_STOP_TIMEOUT = 10.0
AGENT_TIMEOUT = 60.0
WORKER_STOP_GRACE = 5.0

Say = Callable[[str], None]


class HostFailure(Exception):
    """One host's step failed; the message is the reason printed for it."""


@dataclass
class HostResult:
    index: int
    host: Host
    worker_id: str
    ok: bool = False
    reason: str = ""
    address: str = ""
    seconds: float = 0.0
    client: paramiko.SSHClient | None = field(default=None, repr=False)


# -- the code a host runs ------------------------------------------------------------
def code_bundle() -> tuple[bytes, str]:
    """hstream's modules as a reproducible .tar.gz, and a stamp naming version + content."""
    files = []
    for root, dirs, names in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        files += [os.path.join(root, n) for n in sorted(names) if n.endswith((".py", ".tsv"))]
    digest = hashlib.sha256()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path in files:
            with open(path, "rb") as f:
                data = f.read()
            name = "hstream/" + os.path.relpath(path, PACKAGE_DIR)
            digest.update(name.encode() + b"\0" + data + b"\0")
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), f"{hstream.__version__}+{digest.hexdigest()[:12]}"


def worker_id(host: Host) -> str:
    """A host's worker id: its address, with the port when not 22."""
    return host.host if host.port == 22 else f"{host.host}:{host.port}"


def worker_home(cfg: ClusterConfig, host: Host) -> str:
    """One directory per worker below the host's workdir (hosts may share a filesystem)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in worker_id(host))
    return f"{cfg.for_host(host, 'workdir').rstrip('/')}/{safe}"


# -- ssh -------------------------------------------------------------------------------
def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's spelling: SHA256:<base64 without padding>."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _UnknownKey(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown host key, naming it; or, when asked, trust it and remember it."""

    def __init__(self, known_hosts: str, accept: bool, lock: threading.Lock) -> None:
        self.known_hosts = known_hosts
        self.accept = accept
        self.lock = lock

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        fp = f"{key.get_name()} {fingerprint(key)}"
        if not self.accept:
            raise HostFailure(f"unknown host key {fp}: not in {self.known_hosts} "
                              "(verify it, then add it or use --accept-new-host-keys)")
        with self.lock:
            os.makedirs(os.path.dirname(self.known_hosts) or ".", exist_ok=True)
            with open(self.known_hosts, "a", encoding="ascii") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        logger.warning("added host key of %s to %s: %s", hostname, self.known_hosts, fp)


def ssh_connect(cfg: ClusterConfig, host: Host, accept_new: bool,
                lock: threading.Lock) -> paramiko.SSHClient:
    """An authenticated SSH connection whose host key matched known_hosts."""
    client = paramiko.SSHClient()
    if os.path.exists(cfg.known_hosts):
        try:
            client.load_host_keys(cfg.known_hosts)
        except (OSError, paramiko.SSHException) as e:
            raise HostFailure(f"cannot read known_hosts {cfg.known_hosts}: {e}") from None
    client.set_missing_host_key_policy(_UnknownKey(cfg.known_hosts, accept_new, lock))
    user = host.user or getpass.getuser()
    try:
        client.connect(host.host, port=host.port, username=user, key_filename=cfg.ssh_key,
                       look_for_keys=cfg.ssh_key is None, allow_agent=cfg.ssh_key is None,
                       timeout=cfg.connect_timeout, banner_timeout=cfg.connect_timeout,
                       auth_timeout=cfg.connect_timeout)
    except HostFailure:
        client.close()
        raise
    except paramiko.BadHostKeyException as e:
        client.close()
        raise HostFailure(f"host key CHANGED: offered {e.key.get_name()} {fingerprint(e.key)}, "
                          f"{cfg.known_hosts} has {fingerprint(e.expected_key)}; refusing "
                          "(if the change is expected, remove the old line)") from None
    except paramiko.AuthenticationException as e:
        client.close()
        raise HostFailure(f"ssh authentication as {user} failed: {e}") from None
    except TimeoutError:
        client.close()
        raise HostFailure(f"ssh: no answer within {cfg.connect_timeout:g} s") from None
    except (OSError, EOFError, paramiko.SSHException) as e:
        client.close()
        raise HostFailure(f"ssh: {e}") from None
    return client


def run_agent(client: paramiko.SSHClient, python: str, action: str, args: dict[str, Any],
              payload: bytes = b"", timeout: float = AGENT_TIMEOUT) -> dict[str, Any]:
    """Run one `hostagent` action with the host's python; source + payload go via stdin."""
    source = _agent_source()
    loader = f"import sys;exec(sys.stdin.buffer.read({len(source)}))"
    command = f"{python} -c {shlex.quote(loader)} {action} {shlex.quote(json.dumps(args))}"
    try:
        stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
        stdin.write(source + payload)
        stdin.flush()
        stdin.channel.shutdown_write()
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
        status = stdout.channel.recv_exit_status()
    except (OSError, EOFError, paramiko.SSHException) as e:
        raise HostFailure(f"ssh: {action} failed: {e or type(e).__name__}") from None
    if status == 127:
        raise HostFailure(f"python not found: {python!r} ({_last(err)})")
    try:
        answer = dict(json.loads(out.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise HostFailure(f"{action} failed (exit {status}): {_last(err) or _last(out)}") from None
    if "error" in answer:
        raise HostFailure(f"{action} failed: {answer['error']}")
    return answer


def _agent_source() -> bytes:
    with open(hostagent.__file__, "rb") as f:
        return f.read()


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# -- the manager ----------------------------------------------------------------------
def manager_log(cfg: ClusterConfig) -> str:
    return os.path.join(cfg.manager_workdir, "manager.log")


def manager_client(cfg: ClusterConfig) -> Client | None:
    """A client of the running manager of this cluster.ini, or None if it is not up."""
    state = clusterstate.read_state(cfg)
    if state is None or not os.path.exists(cfg.secret_file):
        return None
    try:
        client = Client(clusterstate.connect_address(str(state["host"])),
                        int(str(state["port"])), clusterstate.client_auth(cfg, state))
        chan = protocol.connect(client.host, client.port, client.auth, timeout=3)
        chan.request({"op": "status"})
        chan.close()
    except (OSError, EOFError, ProtocolError):
        return None
    return client


def start_manager(cfg: ClusterConfig, say: Say) -> Client:
    """Start the manager detached here, unless this cluster's manager already answers."""
    os.makedirs(cfg.manager_workdir, mode=0o700, exist_ok=True)
    client = manager_client(cfg)
    if client is not None:
        state = clusterstate.read_state(cfg) or {}
        say(f"manager: already running on {client.host}:{client.port} (pid {state.get('pid')})")
        return client
    if not os.path.exists(cfg.secret_file):
        protocol.write_secret(cfg.secret_file, protocol.new_secret())
    os.chmod(cfg.secret_file, 0o600)
    auth = protocol.Auth(protocol.read_secret(cfg.secret_file),
                         tls=tls.issue(cluster_ca(cfg), "manager") if cfg.tls else None)
    out_path = os.path.join(cfg.manager_workdir, "manager.out")
    port, heartbeat_port = _ports(cfg)
    supervisor = ["-m", "hstream.cluster.supervisor"] if cfg.restart else ["-m", "hstream"]
    with open(out_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, *supervisor, "manager", "--host", cfg.manager_host,
             "--port", str(port), "--heartbeat-port", str(heartbeat_port),
             "--journal", cfg.journal_file,
             "--secret-file", "-",
             "--heartbeat-interval", str(cfg.heartbeat_interval),
             "--heartbeat-missed", str(cfg.heartbeat_missed), "--log-file", manager_log(cfg),
             "--shared-fs" if cfg.shared_fs else "--no-shared-fs",
             "--web-port", str(cfg.web_port), "--history-dir", cfg.history_dir,
             "--history-max-jobs", str(cfg.history_max_jobs),
             "--history-max-mb", str(cfg.history_max_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out,
            cwd=cfg.manager_workdir, start_new_session=True)
    _hand(proc, auth.dumps())
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], MANAGER_START_TIMEOUT)
    line = proc.stdout.readline() if ready else b""
    proc.stdout.close()
    if not line:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with open(out_path, errors="replace") as f:
            why = _last(f.read()[-4000:])
        raise HstreamError(f"manager failed to start on {cfg.manager_host}:{cfg.port}: "
                           f"{why or 'no reason given'} (see {manager_log(cfg)})")
    info = json.loads(line)
    clusterstate.write_state(cfg, int(info["port"]), int(info["heartbeat_port"]), proc.pid,
                             info.get("web_port"), tls=cfg.tls)
    say(f"manager: started on {cfg.manager_host}:{info['port']} (udp {info['heartbeat_port']}), "
        f"pid {proc.pid}, {'TLS' if cfg.tls else 'no TLS'}, log {manager_log(cfg)}")
    return Client(clusterstate.connect_address(cfg.manager_host), int(info["port"]),
                  protocol.Auth(auth.key, tls=protocol.TLS(auth.tls.ca) if auth.tls else None))


def _ports(cfg: ClusterConfig) -> tuple[int, int]:
    """The manager's ports: a manager started again (it died) takes its predecessor's, which
    the workers waiting for it (`[workers] reconnect`) know."""
    state = clusterstate.read_state(cfg) or {}
    port = cfg.port or int(str(state.get("port") or 0))
    heartbeat_port = cfg.heartbeat_port or int(str(state.get("heartbeat_port") or 0))
    return port, heartbeat_port


def cluster_ca(cfg: ClusterConfig) -> tls.CA:
    """The cluster's CA (made by the first `cluster up`, removed by `cluster down`)."""
    return tls.load_or_create_ca(cfg.ca_file, cfg.ca_key_file)


def _worker_credentials(manager: Client, worker: str, ca: tls.CA | None) -> bytes:
    """A worker's `protocol.Auth` line: the secret and, on a TLS cluster, a certificate of its
    own. It travels inside the SSH channel to the host agent, which hands it to the worker."""
    key = manager.auth.key if isinstance(manager.auth, protocol.Auth) else manager.auth
    return protocol.Auth(key, tls=tls.issue(ca, worker) if ca else None).dumps()


def _hand(proc: subprocess.Popen[bytes], credentials: bytes) -> None:
    """Give a daemon its credentials on its stdin: no file or argv ever holds them."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(credentials)
        proc.stdin.close()
    except BrokenPipeError:  # it died at once; the caller says why
        pass


def stop_manager(cfg: ClusterConfig, say: Say) -> None:
    """Ask the manager to shut down (it stops its workers); kill it if it does not exit."""
    state = clusterstate.read_state(cfg)
    client = manager_client(cfg)
    if client is not None:
        try:
            client.request({"op": "shutdown"})
        except (OSError, EOFError, HstreamError) as e:
            logger.info("shutdown request: %s", e)
    pid = int(str(state["pid"])) if state else 0
    if pid and _is_manager(pid, cfg):
        deadline = time.monotonic() + MANAGER_STOP_TIMEOUT
        while _is_manager(pid, cfg) and time.monotonic() < deadline:
            time.sleep(0.05)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if _is_manager(pid, cfg):
                _killpg(pid, sig)
                time.sleep(0.5)
        say(f"manager: stopped (pid {pid})")
    else:
        say("manager: not running")
    for path in (cfg.state_file, cfg.secret_file, cfg.journal_file):  # jobs end with it
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    shutil.rmtree(os.path.dirname(cfg.ca_key_file), ignore_errors=True)  # the CA dies too


def _is_manager(pid: int, cfg: ClusterConfig) -> bool:
    """Is `pid` still this cluster's manager (not a zombie, not a recycled pid)?"""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"manager" in argv and manager_log(cfg).encode() in argv


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


# -- the hosts -----------------------------------------------------------------------
class Launcher:
    """Brings a cluster.ini's hosts up or down, all hosts in parallel."""

    def __init__(self, cfg: ClusterConfig, say: Say, accept_new_host_keys: bool = False) -> None:
        self.cfg = cfg
        self.accept_new = accept_new_host_keys
        self._say = say
        self._lock = threading.Lock()
        self._keys_lock = threading.Lock()

    def say(self, r: HostResult, text: str) -> None:
        with self._lock:
            self._say(f"[{r.index}/{len(self.cfg.hosts)}] {r.host}: {text}")

    def results(self) -> list[HostResult]:
        return [HostResult(i + 1, h, worker_id(h)) for i, h in enumerate(self.cfg.hosts)]

    def up(self) -> list[HostResult]:
        """Manager, then workers; returns every host's result (ok or the reason it failed)."""
        started = time.monotonic()
        manager = start_manager(self.cfg, self._say)
        auth = manager.auth if isinstance(manager.auth, protocol.Auth) else None
        ca = cluster_ca(self.cfg) if auth is not None and auth.tls is not None else None
        bundle = code_bundle()
        results = self.results()
        self._parallel(lambda r: self._start_host(r, manager, bundle, ca), results)
        self._await_registration(manager, [r for r in results if r.ok])
        for r in results:
            if r.client is not None:
                r.client.close()
                r.client = None
            r.seconds = time.monotonic() - started
        return results

    def down(self) -> list[HostResult]:
        stop_manager(self.cfg, self._say)
        results = self.results()
        self._parallel(self._stop_host, results)
        return results

    def _parallel(self, step: Callable[[HostResult], None], results: list[HostResult]) -> None:
        def guarded(r: HostResult) -> None:
            try:
                step(r)
            except HostFailure as e:
                r.ok, r.reason = False, str(e)
                self.say(r, f"FAILED: {e}")
            except Exception as e:  # one host's surprise must not hide the others' results
                logger.exception("host %s", r.host)
                r.ok, r.reason = False, f"{type(e).__name__}: {e}"
                self.say(r, f"FAILED: {r.reason}")

        with ThreadPoolExecutor(max_workers=min(32, len(results))) as pool:
            list(pool.map(guarded, results))

    def _start_host(self, r: HostResult, manager: Client, bundle: tuple[bytes, str],
                    ca: tls.CA | None) -> None:
        t0 = time.monotonic()
        r.client = client = ssh_connect(self.cfg, r.host, self.accept_new, self._keys_lock)
        transport = client.get_transport()
        assert transport is not None
        r.address = transport.getpeername()[0]
        self.say(r, f"ssh ok ({r.address}, {time.monotonic() - t0:.2f} s)")
        python = self.cfg.for_host(r.host, "python")
        probe = run_agent(client, python, "probe", {})
        if not probe["ok"]:
            raise HostFailure(f"python {probe['version']} at {probe['executable']} is too old "
                              f"(needs {'.'.join(map(str, hostagent.MIN_PYTHON))}+)")
        self.say(r, f"python {probe['version']} found ({probe['executable']})")
        manager_host = self.cfg.manager_host
        if manager_host in ("", "0.0.0.0"):
            manager_host = transport.sock.getsockname()[0]  # type: ignore[union-attr]
        worker_args = ["--manager", f"{manager_host}:{manager.port}", "--host", r.address,
                       "--slots", self.cfg.for_host(r.host, "slots"), "--worker-id", r.worker_id,
                       "--reconnect", f"{self.cfg.reconnect:g}"]
        if self.cfg.task_user:
            worker_args += ["--task-user", self.cfg.task_user]
        tarball, stamp = bundle
        ca_id = ca.pem if ca is not None else "no tls"
        stamp += "/" + hashlib.sha256(json.dumps([worker_args, ca_id]).encode()).hexdigest()[:8]
        answer = run_agent(client, python, "start",
                           {"home": worker_home(self.cfg, r.host), "stamp": stamp,
                            "worker_args": worker_args, "grace": WORKER_STOP_GRACE},
                           _worker_credentials(manager, r.worker_id, ca) + tarball)
        verb = "already running" if answer["state"] == "running" else "started"
        self.say(r, f"worker {verb} (pid {answer['pid']}, hstream {stamp.split('/')[0]})")
        r.ok = True

    def _await_registration(self, manager: Client, results: list[HostResult]) -> None:
        deadline = time.monotonic() + self.cfg.register_timeout
        waiting = {r.worker_id: r for r in results}
        while waiting:
            try:
                workers = {w["id"]: w for w in manager.status()["workers"] if w["alive"]}
            except (OSError, EOFError, HstreamError) as e:
                raise HstreamError(f"lost the manager while workers registered: {e} "
                                   f"(see {manager_log(self.cfg)})") from None
            for wid in [w for w in waiting if w in workers]:
                self.say(waiting.pop(wid), f"worker registered ({workers[wid]['slots']} slots)")
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for r in waiting.values():
            r.ok = False
            r.reason = f"worker did not register within {self.cfg.register_timeout:g} s"
            try:
                assert r.client is not None
                python = self.cfg.for_host(r.host, "python")
                tail = run_agent(r.client, python, "tail", {"home": worker_home(self.cfg, r.host)})
                if tail["lines"]:
                    r.reason += f": {tail['lines'][-1]}"
            except HostFailure as e:
                logger.info("no log tail from %s: %s", r.host, e)
            self.say(r, f"FAILED: {r.reason}")

    def _stop_host(self, r: HostResult) -> None:
        client = ssh_connect(self.cfg, r.host, self.accept_new, self._keys_lock)
        try:
            answer = run_agent(client, self.cfg.for_host(r.host, "python"), "stop",
                               {"home": worker_home(self.cfg, r.host), "grace": WORKER_STOP_GRACE})
        finally:
            client.close()
        if answer["left"]:
            raise HostFailure(f"{answer['left']} processes would not die")
        ended = answer["ended"]
        self.say(r, f"stopped ({ended} process{'es' if ended != 1 else ''} ended), "
                    "workdir removed")
        r.ok = True
