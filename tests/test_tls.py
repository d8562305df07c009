"""Every TCP connection of a cluster from `cluster up` runs inside TLS 1.3, checked against
the cluster's own CA: a sniffer on the wire sees no `-cmdenv` secret, shuffle record or
relayed split (it does with `tls = no`), and a peer with another CA's certificate is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import APPS, assert_same_output, reference, require, wait_for
from testbed import Testbed as Bed
from testbed import have_netns, write_ini

from hstream import protocol
from hstream.cluster import tls
from hstream.errors import ProtocolError

HOSTS = 2
ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = 33


def start_manager(d: Path, auth: protocol.Auth) -> tuple[subprocess.Popen[bytes], int]:
    """A real manager daemon, its credentials on stdin as `cluster up` gives them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hstream", "manager", "--host", "127.0.0.1", "--port", "0",
         "--heartbeat-port", "0", "--secret-file", "-", "--log-file", str(d / "manager.log"),
         "--history-dir", str(d / "history")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(auth.dumps())
    proc.stdin.close()
    return proc, int(json.loads(proc.stdout.readline())["port"])


def status(port: int, auth: protocol.Auth) -> str:
    chan = protocol.connect("127.0.0.1", port, auth, timeout=10)
    try:
        return str(chan.request({"op": "status"})["op"])
    finally:
        chan.close()


def test_peer_with_another_cas_certificate_is_refused(tmp_path: Path) -> None:
    ours = tls.load_or_create_ca(str(tmp_path / "ca" / "ca.pem"), str(tmp_path / "ca" / "ca.key"))
    theirs = tls.load_or_create_ca(str(tmp_path / "x" / "ca.pem"), str(tmp_path / "x" / "ca.key"))
    assert oct((tmp_path / "ca" / "ca.key").stat().st_mode & 0o777) == "0o600"
    secret = protocol.new_secret()
    proc, port = start_manager(tmp_path, protocol.Auth(secret, tls=tls.issue(ours, "manager")))
    try:
        assert status(port, protocol.Auth(secret, tls=protocol.TLS(ours.pem))) == "status"
        assert status(port, protocol.Auth(secret, tls=tls.issue(ours, "worker"))) == "status"
        foreign = tls.issue(theirs, "worker")
        refused = {  # each with the right secret: TLS alone keeps them out
            "a client certificate from another CA":
                protocol.Auth(secret, tls=protocol.TLS(ours.pem, foreign.cert, foreign.key)),
            "a client that trusts another CA": protocol.Auth(secret, tls=foreign),
            "plain TCP": protocol.Auth(secret),
        }
        for what, auth in refused.items():
            with pytest.raises((OSError, ProtocolError, EOFError)):
                status(port, auth)
                pytest.fail(f"{what} was let in")
        assert status(port, protocol.Auth(secret, tls=protocol.TLS(ours.pem))) == "status"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Sniffer:
    """Every TCP payload to or from `net`.* on any interface of this namespace (AF_PACKET),
    one byte stream per interface, direction and connection, for as long as it runs."""

    def __init__(self, net: str) -> None:
        self.net = socket.inet_aton(net + ".0")[:3]
        self.streams: dict[tuple[object, ...], bytearray] = defaultdict(bytearray)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sniffer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.sock.close()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                frame, addr = self.sock.recvfrom(1 << 18)
            except TimeoutError:
                continue
            self._take(frame, addr[0], addr[2])

    def _take(self, frame: bytes, interface: str, direction: int) -> None:
        if frame[12:14] != b"\x08\x00" or frame[14 + 9] != 6:  # IPv4, TCP
            return
        ip = frame[14:]
        src, dst = ip[12:16], ip[16:20]
        if self.net not in (src[:3], dst[:3]):
            return
        ihl = (ip[0] & 15) * 4
        tcp = ip[ihl:struct.unpack("!H", ip[2:4])[0]]
        ports = struct.unpack("!HH", tcp[:4])
        self.streams[(interface, direction, src, dst, *ports)] += tcp[(tcp[12] >> 4) * 4:]

    def flows(self, to: set[int] | None = None, besides: set[int] | None = None
              ) -> list[bytearray]:
        """The byte streams of connections to or from a port in `to` (default: any), and to
        and from no port in `besides`."""
        return [data for key, data in self.streams.items()
                if (to is None or {key[4], key[5]} & to)
                and not (besides and {key[4], key[5]} & besides)]

    def seen(self, marker: bytes, to: set[int] | None = None,
             besides: set[int] | None = None) -> bool:
        """Whether `marker` crossed the wire in the clear (on those connections)."""
        return any(marker in data for data in self.flows(to, besides))


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    why = have_netns()
    require(why is None, why or "")
    with Bed(tmp_path / "bed", HOSTS) as tb:
        yield tb


def _run_job(bed: Bed, tmp: Path, tls_on: bool, markers: dict[str, bytes]
             ) -> tuple[Sniffer, int]:
    """`cluster up` (shared_fs = no: splits and part files go through the manager), one word
    count with a secret in -cmdenv, `cluster down`, all of it under a sniffer."""
    tmp.mkdir()
    ini = write_ini(tmp / "cluster.ini", manager=bed.manager_address, keys=bed.keys,
                    hosts=[f"root@{bed.address(i)}" for i in range(1, HOSTS + 1)],
                    python=sys.executable, workdir=tmp / "work")
    ini.write_text(ini.read_text().replace(
        "shared_fs = yes", f"shared_fs = no\ntls = {'yes' if tls_on else 'no'}"))
    inputs = tmp / "input"
    inputs.mkdir()
    for i in range(8):
        (inputs / f"in{i}.txt").write_bytes(b"".join(
            b"%s w%d %s\n" % (markers["record"], j % 50, markers["split"])
            for j in range(300 + i)))
    env = {**os.environ, "HSTREAM_CONFIG": str(ini)}

    def hs(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hstream", *args], env=env, cwd=tmp,
                              capture_output=True, text=True, timeout=180, check=False)
    with Sniffer(bed.net) as sniffer:
        try:
            up = hs("cluster", "up")
            assert up.returncode == 0, up.stdout + up.stderr
            job = hs("jar-free", "-mapper", str(APPS / "wc_map.py"), "-reducer",
                     str(APPS / "wc_reduce.py"), "-input", str(inputs), "-output",
                     str(tmp / "out"), "-numReduceTasks", "4",
                     "-cmdenv", f"DB_PASSWORD={markers['password'].decode()}")
            assert job.returncode == 0, job.stderr
            port = json.loads((tmp / "work" / "manager" / "cluster.json").read_text())["port"]
        finally:
            down = hs("cluster", "down")
        assert down.returncode == 0, down.stdout + down.stderr
    assert_same_output(tmp / "out", reference(sorted(inputs.iterdir()), str(APPS / "wc_map.py"),
                                              str(APPS / "wc_reduce.py"), tmp))
    for i in range(1, HOSTS + 1):
        wait_for(lambda i=i: not bed.hstream_pids(i), 10, f"host {i} to be empty")
    return sniffer, int(port)


def test_sniffer_sees_nothing_in_the_clear(bed: Bed, tmp_path: Path) -> None:
    markers = {k: f"{k}{secrets.token_hex(8)}".encode() for k in ("password", "record", "split")}
    clear, manager = _run_job(bed, tmp_path / "plain", False, markers)
    # The sniffer works: without TLS it reads the -cmdenv value on its way to the manager,
    # the records between workers (the shuffle: neither the manager's port nor ssh), the
    # splits and part files through the relay.
    assert clear.seen(markers["password"], to={manager}), "sniffer saw no submit"
    assert clear.seen(markers["record"], besides={manager, 22}), "sniffer saw no shuffle"
    assert clear.seen(markers["split"], to={manager}), "sniffer saw no relay"

    markers = {k: f"{k}{secrets.token_hex(8)}".encode() for k in ("password", "record", "split")}
    sniffer, manager = _run_job(bed, tmp_path / "tls", True, markers)
    assert sum(map(len, sniffer.flows(to={manager}))) > 10_000, "the sniffer missed the manager"
    assert sum(map(len, sniffer.flows(besides={manager, 22}))) > 10_000, \
        "the sniffer missed the shuffle"
    for name, marker in markers.items():
        assert not sniffer.seen(marker), f"the {name} crossed the wire in the clear"
    assert not sniffer.seen(b"HSTREAM2"), "a connection without TLS"

