"""Authenticated framing for every TCP connection and UDP heartbeat of a cluster.

A port that accepts jobs runs commands, so nothing is parsed before it is
authenticated. The cluster secret never travels: each TCP connection starts
with a nonce exchange that proves both sides hold it, then derives a session
key; every later frame carries a truncated HMAC over (direction, sequence
number, kind, body), so frames cannot be forged, replayed, reordered or moved
to another connection. Heartbeats are single datagrams with their own HMAC and
a sequence number the manager checks.

Frame: ``!I`` body length | 1 byte kind | 16 bytes MAC | body.
Kinds: ``J`` a JSON object with an ``"op"``; ``B`` raw bytes (shuffle data).

Stdlib only: this module runs on worker hosts that have nothing but python3.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from hstream.errors import ProtocolError

VERSION = 1
MAC_LEN = 16
MAX_FRAME = 64 << 20
#: Data frames of a stream (shuffle, relay) carry this much at most.
STREAM_FRAME = 1 << 20
_HEADER = struct.Struct("!IcB")  # length, kind, reserved (MAC follows)
_SEQ = struct.Struct("!Q")
HANDSHAKE_TIMEOUT = 10.0


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


def _mac(key: bytes, *parts: bytes | memoryview) -> bytes:
    h = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        h.update(part)
    return h.digest()[:MAC_LEN]


class Channel:
    """One authenticated TCP connection; `send` may be called from several threads."""

    def __init__(self, sock: socket.socket, key: bytes, is_server: bool, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self._key = key
        self._out_dir = b"S" if is_server else b"C"
        self._in_dir = b"C" if is_server else b"S"
        self._send_seq = 0
        self._recv_seq = 0
        self._send_lock = threading.Lock()
        self._rfile = sock.makefile("rb", buffering=1 << 16)
        self.closed = False

    # -- sending ---------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        self._send_frame(b"J", json.dumps(msg, separators=(",", ":")).encode())

    def send_bytes(self, data: bytes | memoryview) -> None:
        self._send_frame(b"B", data)

    def _send_frame(self, kind: bytes, body: bytes | memoryview) -> None:
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
        try:
            msg = json.loads(body)
        except ValueError as e:
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
            if json.loads(body).get("op") != "end":
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


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProtocolError("connection closed during handshake")
        buf += chunk
    return buf


_HELLO = b"HSTREAM1"


def server_handshake(sock: socket.socket, secret: bytes, peer: str) -> Channel:
    """Prove the client knows the secret (and that we do) before reading any message."""
    sock.settimeout(HANDSHAKE_TIMEOUT)
    server_nonce = secrets.token_bytes(16)
    sock.sendall(_HELLO + server_nonce)
    data = _read_exact(sock, len(_HELLO) + 16 + 32)
    if data[: len(_HELLO)] != _HELLO:
        raise ProtocolError(f"{peer}: not an hstream peer")
    client_nonce = data[len(_HELLO): len(_HELLO) + 16]
    proof = data[len(_HELLO) + 16:]
    expect = hmac.new(secret, b"client" + server_nonce + client_nonce, hashlib.sha256).digest()
    if not hmac.compare_digest(proof, expect):
        raise ProtocolError(f"{peer}: failed authentication (wrong cluster secret)")
    sock.sendall(hmac.new(secret, b"server" + server_nonce + client_nonce, hashlib.sha256).digest())
    sock.settimeout(None)
    key = hmac.new(secret, b"session" + server_nonce + client_nonce, hashlib.sha256).digest()
    return Channel(sock, key, is_server=True, peer=peer)


def client_handshake(sock: socket.socket, secret: bytes, peer: str) -> Channel:
    sock.settimeout(HANDSHAKE_TIMEOUT)
    hello = _read_exact(sock, len(_HELLO) + 16)
    if hello[: len(_HELLO)] != _HELLO:
        raise ProtocolError(f"{peer}: not an hstream manager or worker")
    server_nonce = hello[len(_HELLO):]
    client_nonce = secrets.token_bytes(16)
    proof = hmac.new(secret, b"client" + server_nonce + client_nonce, hashlib.sha256).digest()
    sock.sendall(_HELLO + client_nonce + proof)
    answer = _read_exact(sock, 32)
    expect = hmac.new(secret, b"server" + server_nonce + client_nonce, hashlib.sha256).digest()
    if not hmac.compare_digest(answer, expect):
        raise ProtocolError(f"{peer}: server failed authentication (wrong cluster secret)")
    sock.settimeout(None)
    key = hmac.new(secret, b"session" + server_nonce + client_nonce, hashlib.sha256).digest()
    return Channel(sock, key, is_server=False, peer=peer)


def connect(host: str, port: int, secret: bytes, timeout: float = 10.0) -> Channel:
    """Open an authenticated channel to a manager or worker."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return client_handshake(sock, secret, f"{host}:{port}")
    except BaseException:
        sock.close()
        raise


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
