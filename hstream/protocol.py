"""Authenticated framing for every TCP connection and UDP heartbeat of a cluster.

A port that accepts jobs runs commands, so nothing is parsed before it is
authenticated. The cluster secret never travels: each TCP connection starts
with a nonce exchange that proves both sides hold it, then derives a session
key; every later frame carries a truncated HMAC over (direction, sequence
number, kind, body), so frames cannot be forged, replayed, reordered or moved
to another connection. Heartbeats are single datagrams with their own HMAC and
a sequence number the manager checks.

Two kinds of key open a connection: the cluster secret (daemons and clients: every op), or
a job token, `job_token(secret, job_id)`, which a worker hands its tasks instead of the
secret. A token channel is bound to its job (`Channel.job_id`), servers let it do only that
job's task operations, and refuse it at the handshake once the job is over.

Between hosts every connection runs inside TLS 1.3 (`TLS`: the cluster's own CA, made by
`cluster up`); the HMAC handshake stays the authorization layer inside it.

Frame: ``!I`` body length | 1 byte kind | 16 bytes MAC | body.
Kinds: ``J`` a JSON object with an ``"op"``; ``B`` raw bytes (shuffle data).

Stdlib only: this module runs on worker hosts that have nothing but python3.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import hmac
import json
import logging
import os
import resource
import secrets
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, Any

from hstream.errors import ProtocolError
from hstream.messages import JOB_TOKEN, SECRET

VERSION = 1
MAC_LEN = 16
MAX_FRAME = 64 << 20
#: Data frames of a stream (shuffle, relay) carry this much at most.
STREAM_FRAME = 1 << 20
_HEADER = struct.Struct("!IcB")  # length, kind, reserved (MAC follows)
_SEQ = struct.Struct("!Q")
HANDSHAKE_TIMEOUT = 10.0
#: A server gives an unauthenticated peer this long, in all, to prove it holds the secret.
HANDSHAKE_DEADLINE = 5.0

logger = logging.getLogger(__name__)


def new_secret() -> bytes:
    """A fresh 256-bit cluster secret."""
    return secrets.token_bytes(32)


def read_secret(path: str) -> bytes:
    """Read a secret file written by `write_secret` (hex, one line)."""
    with open(path, encoding="ascii") as f:
        return bytes.fromhex(f.read().strip())


def write_secret(path: str, secret: bytes) -> None:
    """Write the secret so that only the owner can read it, never briefly wider."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret.hex() + "\n")
    os.chmod(path, 0o600)


def job_token(secret: bytes, job_id: str) -> bytes:
    """The key a task of `job_id` authenticates with instead of the secret. Derived, so the
    manager and every worker know it without storing it; it reveals nothing of the secret."""
    return hmac.new(secret, b"job-token:" + job_id.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class TLS:
    """A cluster's TLS material, PEM text: the cluster CA every peer is checked against, and
    this process's certificate and key ("" in a task runner, which only checks servers).
    `cluster up` makes them (cluster/tls.py); daemons get them on stdin and keep them in memory."""

    ca: str
    cert: str = ""
    key: str = field(default="", repr=False)

    def load(self) -> TLS:
        """Build both contexts now: a bad certificate fails at start, not at first use."""
        _ = self.client, self.server
        return self

    @cached_property
    def client(self) -> ssl.SSLContext:
        return _tls_context(self, server=False)

    @cached_property
    def server(self) -> ssl.SSLContext:
        return _tls_context(self, server=True)


def _tls_context(tls: TLS, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # Names are not checked: hosts reach each other by addresses that differ from host to host
    # (NAT, namespaces, a manager bound to 0.0.0.0). The CA is pinned instead: it is this
    # cluster's own, made by `cluster up`, and signs nothing but this cluster's daemons.
    ctx.check_hostname = False
    # Servers check a certificate when one is offered (daemons offer theirs) and let task
    # runners in without one: their job token, inside TLS, is what authorizes them.
    ctx.verify_mode = ssl.CERT_OPTIONAL if server else ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=tls.ca)
    if tls.cert:
        _load_chain(ctx, (tls.key + tls.cert).encode())
    if server:
        ctx.num_tickets = 0  # no session tickets: nothing arrives after the handshake
    return ctx


def _load_chain(ctx: ssl.SSLContext, pem: bytes) -> None:
    """ssl reads a private key from a file only: one in memory (memfd, Linux), else one in a
    private temporary directory for the moment it takes."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("hstream-tls")
        try:
            os.write(fd, pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="hstream-tls-") as d:
        path = os.path.join(d, "chain.pem")
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(pem)
        ctx.load_cert_chain(path)


@dataclass(frozen=True)
class Auth:
    """What a process authenticates with: the cluster secret (`job_id` ""), or one job's token
    (`job_id` set: that job's task operations only), and the cluster's TLS material (None:
    plain TCP, for the embedded cluster, which never leaves loopback)."""

    key: bytes = field(repr=False)
    job_id: str = ""
    tls: TLS | None = None

    def for_job(self, job_id: str) -> Auth:
        """What a task of `job_id` gets: its job's token and the CA, never the secret or a key."""
        assert not self.job_id, "only the cluster secret makes job tokens"
        return Auth(job_token(self.key, job_id), job_id, TLS(self.tls.ca) if self.tls else None)

    def dumps(self) -> bytes:
        """One JSON line, as a daemon or a task runner reads it from its stdin (`read_auth`)."""
        tls = None if self.tls is None else {"ca": self.tls.ca, "cert": self.tls.cert,
                                              "key": self.tls.key}
        record = {"key": self.key.hex(), "job_id": self.job_id, "tls": tls}
        return json.dumps(record).encode() + b"\n"


def read_auth(stream: IO[bytes]) -> Auth:
    """The `Auth.dumps` line on `stream`; a bare hex line is a secret alone (no TLS)."""
    line = stream.readline().strip()
    try:
        if not line.startswith(b"{"):
            return Auth(bytes.fromhex(line.decode("ascii")))
        data = json.loads(line)
        tls = data.get("tls")
        return Auth(bytes.fromhex(data["key"]), str(data.get("job_id") or ""),
                    TLS(str(tls["ca"]), str(tls["cert"]), str(tls["key"])) if tls else None)
    except (ValueError, KeyError, TypeError) as e:
        raise ProtocolError(f"malformed credentials on stdin: {type(e).__name__}") from None


def _as_auth(auth: bytes | Auth) -> Auth:
    return auth if isinstance(auth, Auth) else Auth(auth)


#: prctl(2) option: whether the process may be dumped, ptraced, or its /proc files read.
PR_SET_DUMPABLE = 4


def protect_memory() -> None:
    """Make this process non-dumpable (Linux): a process of the same user, such as a task, can
    then neither ptrace it nor read its /proc/PID/{mem,environ,fd,maps}, so the secret it holds
    stays in it. execve resets the flag, so the commands it starts are ordinary processes.
    A no-op elsewhere."""
    set_dumpable(False)


def set_dumpable(on: bool) -> None:
    """prctl(PR_SET_DUMPABLE): a runner forked by the non-dumpable zygote is made ordinary
    again, as execve would have made it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, int(on), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as e:
        logger.warning("cannot set this process's dumpable flag: %s", e)


def _mac(key: bytes, *parts: bytes | memoryview) -> bytes:
    h = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        h.update(part)
    return h.digest()[:MAC_LEN]


class Channel:
    """One authenticated TCP connection; `send` may be called from several threads."""

    def __init__(self, sock: socket.socket, key: bytes, is_server: bool, peer: str,
                 job_id: str | None = None) -> None:
        self.sock = sock
        self.peer = peer
        #: The job whose token opened this channel; None: the cluster secret (every op).
        self.job_id = job_id
        self._key = key
        self._out_dir = b"S" if is_server else b"C"
        self._in_dir = b"C" if is_server else b"S"
        self._send_seq = 0
        self._recv_seq = 0
        self._send_lock = threading.Lock()
        self._rfile = sock.makefile("rb", buffering=1 << 16)
        self.closed = False

    @property
    def credential(self) -> str:
        """What the peer proved it holds, as `messages.check` takes it."""
        return SECRET if self.job_id is None else JOB_TOKEN

    # -- sending ---------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        self._send_frame(b"J", json.dumps(msg, separators=(",", ":")).encode())

    def send_bytes(self, data: bytes | memoryview) -> None:
        self._send_frame(b"B", data)

    def _send_frame(self, kind: bytes, body: bytes | memoryview) -> None:
        if len(body) > MAX_FRAME:  # the peer would drop the connection: refuse it here
            raise ProtocolError(f"{self.peer}: a frame of {len(body):,} bytes is too large")
        with self._send_lock:
            mac = _mac(self._key, self._out_dir, _SEQ.pack(self._send_seq), kind, body)
            self._send_seq += 1
            header = _HEADER.pack(len(body), kind, 0) + mac
            if len(body) < 65536:
                self.sock.sendall(header + bytes(body))
            else:
                self.sock.sendall(header)
                self.sock.sendall(body)

    # -- receiving -------------------------------------------------------
    def recv_frame(self) -> tuple[bytes, bytes]:
        """Next (kind, body); raises EOFError on a clean close, ProtocolError on a bad frame."""
        header = self._rfile.read(_HEADER.size + MAC_LEN)
        if not header:
            raise EOFError(self.peer)
        if len(header) < _HEADER.size + MAC_LEN:
            raise ProtocolError(f"{self.peer}: truncated frame header")
        length, kind, _ = _HEADER.unpack_from(header)
        if length > MAX_FRAME:
            raise ProtocolError(f"{self.peer}: frame of {length} bytes is too large")
        body = self._rfile.read(length)
        if len(body) < length:
            raise ProtocolError(f"{self.peer}: truncated frame body")
        expect = _mac(self._key, self._in_dir, _SEQ.pack(self._recv_seq), kind, body)
        if not hmac.compare_digest(expect, header[_HEADER.size:]):
            raise ProtocolError(f"{self.peer}: frame failed authentication")
        self._recv_seq += 1
        return kind, body

    def recv(self) -> dict[str, Any]:
        """Next JSON message."""
        kind, body = self.recv_frame()
        if kind != b"J":
            raise ProtocolError(f"{self.peer}: expected a message, got data")
        return self._decode(body)

    def _decode(self, body: bytes) -> dict[str, Any]:
        try:
            msg = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise ProtocolError(f"{self.peer}: malformed message: {e}") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
            raise ProtocolError(f"{self.peer}: message without an op")
        return msg

    def send_stream(self, chunks: Iterable[bytes]) -> None:
        """Data frames of at most STREAM_FRAME bytes, then an `end` message."""
        for chunk in chunks:
            for i in range(0, len(chunk), STREAM_FRAME):
                self.send_bytes(chunk[i:i + STREAM_FRAME])
        self.send({"op": "end"})

    def recv_stream(self) -> Iterator[bytes]:
        """The bodies of data frames up to the `end` message that `send_stream` sends."""
        while True:
            kind, body = self.recv_frame()
            if kind == b"B":
                yield body
                continue
            if self._decode(body)["op"] != "end":
                raise ProtocolError(f"{self.peer}: data stream ended without an end")
            return

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send and wait for the reply (only for channels with one outstanding request)."""
        self.send(msg)
        return self.recv()

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _read_exact(sock: socket.socket, n: int, deadline: float | None = None) -> bytes:
    buf = b""
    while len(buf) < n:
        if deadline is not None:  # a peer trickling a byte at a time still runs out of time
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("handshake not finished in time")
            sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProtocolError("connection closed during handshake")
        buf += chunk
    return buf


_HELLO = b"HSTREAM2"
_NONCE = 16
_PROOF = 32


def _hmac(key: bytes, label: bytes, transcript: bytes) -> bytes:
    return hmac.new(key, label + transcript, hashlib.sha256).digest()


def server_handshake(sock: socket.socket, auth: bytes | Auth, peer: str,
                     jobs: Callable[[str], bool] | None = None) -> Channel:
    """TLS first when `auth` has it; then, before reading any message, the client proves it
    holds the secret, or the token of a job that `jobs` says is active here (the channel is
    then bound to that job), and we prove we hold it too."""
    auth = _as_auth(auth)
    deadline = time.monotonic() + HANDSHAKE_DEADLINE
    sock.settimeout(HANDSHAKE_DEADLINE)
    if auth.tls is not None:
        sock = auth.tls.server.wrap_socket(sock, server_side=True)
    try:
        return _server_proof(sock, auth.key, peer, jobs, deadline)
    except BaseException:
        sock.close()
        raise


def _server_proof(sock: socket.socket, secret: bytes, peer: str,
                  jobs: Callable[[str], bool] | None, deadline: float) -> Channel:
    server_nonce = secrets.token_bytes(_NONCE)
    sock.sendall(_HELLO + server_nonce)
    data = _read_exact(sock, len(_HELLO) + _NONCE + _PROOF + 1, deadline)
    if data[: len(_HELLO)] != _HELLO:
        raise ProtocolError(f"{peer}: not an hstream peer")
    client_nonce, proof = data[len(_HELLO):-1 - _PROOF], data[-1 - _PROOF:-1]
    job = _read_exact(sock, data[-1], deadline)
    job_id = job.decode("ascii", "replace")
    key = _key_for(secret, job_id, jobs, peer)
    transcript = server_nonce + client_nonce + job
    if not hmac.compare_digest(proof, _hmac(key, b"client", transcript)):
        raise ProtocolError(f"{peer}: failed authentication (wrong cluster secret or job token)")
    sock.sendall(_hmac(key, b"server", transcript))
    sock.settimeout(None)
    return Channel(sock, _hmac(key, b"session", transcript), is_server=True, peer=peer,
                   job_id=job_id or None)


def _key_for(secret: bytes, job_id: str, jobs: Callable[[str], bool] | None, peer: str) -> bytes:
    """The key the client claims to hold: the secret, or the token of an active job."""
    if not job_id:
        return secret
    if jobs is None or not jobs(job_id):
        raise ProtocolError(f"{peer}: a token of job {job_id[:80]!r}, which is not active here")
    return job_token(secret, job_id)


def client_handshake(sock: socket.socket, auth: bytes | Auth, peer: str) -> Channel:
    """TLS first when `auth` has it (the server's certificate must come from the cluster's
    CA); then each side proves it holds the key (the secret or `auth.job_id`'s token)."""
    auth = _as_auth(auth)
    sock.settimeout(HANDSHAKE_TIMEOUT)
    if auth.tls is not None:
        sock = auth.tls.client.wrap_socket(sock)
    try:
        return _client_proof(sock, auth, peer)
    except BaseException:
        sock.close()
        raise


def _client_proof(sock: socket.socket, auth: Auth, peer: str) -> Channel:
    hello = _read_exact(sock, len(_HELLO) + _NONCE)
    if hello[: len(_HELLO)] != _HELLO:
        raise ProtocolError(f"{peer}: not an hstream manager or worker")
    server_nonce, client_nonce = hello[len(_HELLO):], secrets.token_bytes(_NONCE)
    job = auth.job_id.encode("ascii")
    transcript = server_nonce + client_nonce + job
    sock.sendall(_HELLO + client_nonce + _hmac(auth.key, b"client", transcript)
                 + bytes([len(job)]) + job)
    answer = _read_exact(sock, _PROOF)
    if not hmac.compare_digest(answer, _hmac(auth.key, b"server", transcript)):
        raise ProtocolError(f"{peer}: server failed authentication (wrong cluster secret, or "
                            "a job token it does not take)")
    sock.settimeout(None)
    return Channel(sock, _hmac(auth.key, b"session", transcript), is_server=False, peer=peer,
                   job_id=auth.job_id or None)


def connect(host: str, port: int, auth: bytes | Auth, timeout: float = 10.0) -> Channel:
    """Open an authenticated channel (inside TLS if `auth` has it) to a manager or worker."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return client_handshake(sock, auth, f"{host}:{port}")
    except BaseException:
        sock.close()
        raise


# -- serving -------------------------------------------------------------------

#: accept() errors that mean "no file descriptors or memory left": wait for some to come back.
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class DropLog:
    """Logs dropped traffic without letting a flood fill the log: the first drop from a source
    is logged with its reason, the others of the next `window` seconds are only counted, then
    summed up in one line ("dropped 19,998 unauthenticated datagrams from 127.0.0.1 in the
    last 10 s") by the next drop from there or by `flush`, which the owner calls now and then."""

    def __init__(self, log: logging.Logger, what: str, window: float = 10.0,
                 sources: int = 256) -> None:
        self.log, self.what, self.window, self.sources = log, what, window, sources
        self.lock = threading.Lock()
        self.seen: dict[str, list[float]] = {}  # source -> [window start, drops not logged]

    def note(self, source: str, reason: str) -> None:
        now = time.monotonic()
        with self.lock:
            if source not in self.seen and len(self.seen) >= self.sources:
                source = "other sources"  # a spoofing flood must not grow this without end
            entry = self.seen.get(source)
            if entry is not None and now - entry[0] < self.window:
                entry[1] += 1
                return
            summary = self._close(source, now)
            self.seen[source] = [now, 0]
        if summary:
            self.log.warning("%s", summary)
        self.log.warning("dropped %s from %s: %s", self.what, source, reason)

    def flush(self) -> None:
        """Sum up every window that has ended."""
        now = time.monotonic()
        with self.lock:
            ended = [s for s, (start, _) in self.seen.items() if now - start >= self.window]
            lines = [self._close(source, now) for source in ended]
        for line in filter(None, lines):
            self.log.warning("%s", line)

    def _close(self, source: str, now: float) -> str:
        start, count = self.seen.pop(source, (now, 0))
        if not count:
            return ""
        return (f"dropped {int(count):,} {self.what}s from {source} "
                f"in the last {max(1.0, now - start):.0f} s")


def _pending_limit() -> int:
    """How many unauthenticated connections may wait at once: a quarter of our descriptors."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 128 if soft == resource.RLIM_INFINITY else max(4, min(128, soft // 4))


class Listener:
    """Accepts connections and serves each authenticated one on a thread of its own.

    Built to outlast a flood: running out of file descriptors (EMFILE, ENFILE) is logged
    once and waited out, never the end of the loop; an unauthenticated peer has
    HANDSHAKE_DEADLINE seconds to prove it holds the secret, and only so many peers may be
    proving it at once (the others are closed at once). Failed handshakes go to `drops`;
    it and `others` are flushed about once a second. `auth` says whether peers come in TLS;
    `jobs` says which jobs' tokens are taken (none if it is None)."""

    def __init__(self, sock: socket.socket, auth: bytes | Auth, serve: Callable[[Channel], None],
                 stopping: threading.Event, drops: DropLog, others: Iterable[DropLog] = (),
                 jobs: Callable[[str], bool] | None = None) -> None:
        self.sock, self.auth, self.serve, self.jobs = sock, auth, serve, jobs
        self.stopping, self.drops, self.logs = stopping, drops, (drops, *others)
        self.pending = threading.BoundedSemaphore(_pending_limit())

    def run(self) -> None:
        self.sock.settimeout(1.0)  # wake up now and then to sum up drops and see `stopping`
        failures = 0
        while not self.stopping.is_set():
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                for log in self.logs:
                    log.flush()
                continue
            except OSError as e:
                if self.stopping.is_set() or e.errno in (errno.EBADF, errno.EINVAL):
                    return  # the socket was closed: we are stopping
                failures = self._back_off(e, failures)
                continue
            if failures:
                logger.warning("accepting connections again after %d failed tries", failures)
                failures = 0
            self._start(conn, addr)

    def _back_off(self, e: OSError, failures: int) -> int:
        """Log the first failure of a run of them; wait longer after each, up to a second."""
        if failures == 0:
            cause = "out of file descriptors" if e.errno in _EXHAUSTED else "failed"
            logger.error("accept() on port %d %s (%s): connections wait until it recovers",
                         self.sock.getsockname()[1], cause, e.strerror or e)
        time.sleep(min(1.0, 0.01 * 2 ** min(failures, 7)))
        return failures + 1

    def _start(self, conn: socket.socket, addr: Any) -> None:
        if not self.pending.acquire(blocking=False):
            conn.close()
            self.drops.note(addr[0], "too many connections still in their handshake")
            return
        try:
            threading.Thread(target=self._handle, args=(conn, addr), daemon=True).start()
        except RuntimeError as e:  # no thread to spare: this peer must try again
            self.pending.release()
            conn.close()
            self.drops.note(addr[0], f"no thread to serve it: {e}")

    def _handle(self, conn: socket.socket, addr: Any) -> None:
        peer = f"{addr[0]}:{addr[1]}"
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            chan = server_handshake(conn, self.auth, peer, self.jobs)
        except (OSError, EOFError, ProtocolError) as e:
            conn.close()
            self.drops.note(addr[0], str(e) or type(e).__name__)
            return
        finally:
            self.pending.release()
        try:
            self.serve(chan)  # which closes the channel when it is done with it
        except Exception:  # noqa: BLE001 - one connection's failure is never the server's
            logger.exception("connection %s failed", peer)
            chan.close()


# -- heartbeats ----------------------------------------------------------------

def pack_heartbeat(secret: bytes, worker_id: str, seq: int,
                   extra: dict[str, Any] | None = None) -> bytes:
    body = json.dumps({"w": worker_id, "s": seq, **(extra or {})}, separators=(",", ":")).encode()
    return _mac(secret, b"hb", body) + body


def unpack_heartbeat(secret: bytes, datagram: bytes) -> dict[str, Any]:
    """The heartbeat's fields; ProtocolError if it is forged or malformed."""
    mac, body = datagram[:MAC_LEN], datagram[MAC_LEN:]
    if len(mac) < MAC_LEN or not hmac.compare_digest(mac, _mac(secret, b"hb", body)):
        raise ProtocolError("heartbeat failed authentication")
    try:
        msg = json.loads(body)
    except ValueError:
        raise ProtocolError("malformed heartbeat") from None
    if (not isinstance(msg, dict) or not isinstance(msg.get("w"), str)
            or not isinstance(msg.get("s"), int)):
        raise ProtocolError("malformed heartbeat")
    return msg
