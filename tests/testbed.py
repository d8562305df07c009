"""Fake hosts for cluster tests: sshd on loopback, or N network namespaces each with its own sshd.

A Python version of shared/research/testbed.md. Host i is namespace
`<prefix>-h<i>` with address <net>.(10+i) on a veth into bridge `<prefix>-br`
(the manager's side, <net>.1); each runs `sshd -D -e` as a child of the test
so that it is reaped. `kill(i)` crashes a host (every process in its namespace,
SIGKILL), `cut(i)` unplugs its cable, `udp_drop(i, pct)` silently drops that
share of the UDP it sends (root-side ingress; an in-namespace drop makes
sendto fail instead). `close()` removes everything, whatever happened before.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def have_netns() -> str | None:
    """Why namespace hosts cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "nft", "ssh-keygen"):
        if not shutil.which(tool):
            return f"needs {tool}"
    if not os.path.exists(SSHD):
        return "needs sshd (openssh-server)"
    return None


def have_sshd() -> str | None:
    if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
        return "needs sshd and ssh-keygen (openssh-server)"
    if os.geteuid() != 0:
        return "needs root (sshd with its own config)"
    return None


def keygen(path: Path) -> str:
    """An ed25519 key pair; returns the public key's `type base64`."""
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True)
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sshd_config(d: Path, name: str, address: str, port: int) -> Path:
    conf = d / f"sshd_{name}.conf"
    conf.write_text("\n".join([
        f"ListenAddress {address}", f"Port {port}", f"HostKey {d / 'hostkey'}",
        f"PidFile {d / f'sshd_{name}.pid'}", f"AuthorizedKeysFile {d / 'authorized_keys'}",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PrintMotd no",
        "Subsystem sftp internal-sftp", ""]))
    return conf


def _listening(address: str, port: int, netns: str | None) -> bool:
    argv = ["ss", "-Hltn", f"sport = {port}"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    out = subprocess.run(argv, check=False, capture_output=True, text=True).stdout
    return address in out


@dataclass
class Sshd:
    """One sshd in the foreground, a child of this process."""
    d: Path
    name: str
    address: str
    port: int
    netns: str | None = None
    private_tmp: bool = False
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        conf = sshd_config(self.d, self.name, self.address, self.port)
        argv = [SSHD, "-D", "-e", "-f", str(conf)]
        if self.private_tmp:  # a host of its own /tmp: every session there sees an empty tmpfs
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount -t tmpfs hstream-test /tmp && exec "$@"', "sh", *argv]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        # No HSTREAM_TEST_TAG: sshd is the fake host, not a process the test leaves behind.
        env = {k: v for k, v in os.environ.items() if k != "HSTREAM_TEST_TAG"}
        with open(self.d / f"sshd_{self.name}.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env=env)
        deadline = time.monotonic() + 10
        while not _listening(self.address, self.port, self.netns):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd {self.name} did not start: "
                                   f"{(self.d / f'sshd_{self.name}.log').read_text()[-500:]}")
            time.sleep(0.025)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass
class Keys:
    """A client key, a host key shared by the fake hosts, and the test's own known_hosts."""
    d: Path
    client: Path = field(init=False)
    host_public: str = field(init=False)
    known_hosts: Path = field(init=False)

    def __post_init__(self) -> None:
        self.d.mkdir(parents=True, exist_ok=True)
        self.client = self.d / "client"
        keygen(self.client)
        self.host_public = keygen(self.d / "hostkey")
        (self.d / "authorized_keys").write_text(Path(f"{self.client}.pub").read_text())
        self.known_hosts = self.d / "known_hosts"
        self.known_hosts.write_text("")

    def trust(self, address: str, port: int = 22) -> None:
        entry = address if port == 22 else f"[{address}]:{port}"
        with open(self.known_hosts, "a") as f:
            f.write(f"{entry} {self.host_public}\n")


class LoopbackHost:
    """sshd on 127.0.0.1 at a free port."""

    def __init__(self, d: Path) -> None:
        self.keys = Keys(d)
        self.sshd = Sshd(d, "lo", "127.0.0.1", free_port())

    def __enter__(self) -> LoopbackHost:  # noqa: PYI034
        try:
            self.sshd.start()
        except BaseException:
            self.sshd.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.sshd.stop()


class Testbed:
    """N hosts in network namespaces on a private bridge; always `close()` it (context manager)."""

    def __init__(self, d: Path, n: int, private_tmp: bool = False) -> None:
        """`private_tmp`: each host mounts its own /tmp (so `d` must not be below /tmp)."""
        tag = f"{random.randrange(16 ** 4):04x}"
        self.prefix = f"t{tag}"
        self.net = f"10.{random.randrange(100, 250)}.{random.randrange(256)}"
        self.manager_address = f"{self.net}.1"
        self.bridge = f"{self.prefix}-br"
        self.n = n
        self.keys = Keys(d)
        self.d = d
        self.sshds: dict[int, Sshd] = {}
        self.private_tmp = private_tmp

    def ns(self, i: int) -> str:
        return f"{self.prefix}-h{i}"

    def veth(self, i: int) -> str:
        return f"{self.prefix}-v{i}"

    def address(self, i: int) -> str:
        return f"{self.net}.{10 + i}"

    def __enter__(self) -> Testbed:  # noqa: PYI034
        try:
            self.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def up(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.manager_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            _ip("netns", "add", ns)
            _ip("link", "add", self.veth(i), "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", self.veth(i), "master", self.bridge, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            self.keys.trust(self.address(i))
            self.sshds[i] = Sshd(self.d, f"h{i}", self.address(i), 22, ns, self.private_tmp)
            self.sshds[i].start()

    def pids(self, i: int) -> set[int]:
        out = subprocess.run(["ip", "netns", "pids", self.ns(i)], check=False, capture_output=True,
                             text=True).stdout
        return {int(p) for p in out.split()}

    def hstream_pids(self, i: int) -> set[int]:
        """Live processes in host i other than its sshd (zombies are already dead)."""
        sshd = self.sshds.get(i)
        keep = {sshd.proc.pid} if sshd and sshd.proc else set()
        out = set()
        for pid in self.pids(i) - keep:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                        continue
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().startswith(SSHD.encode()):
                        continue  # a connection of sshd itself, closing
            except OSError:
                continue
            out.add(pid)
        return out

    def kill(self, i: int) -> None:
        """Crash host i: SIGKILL everything in its namespace (sshd too)."""
        for pid in self.pids(i):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if i in self.sshds:
            self.sshds[i].stop()

    def restart_sshd(self, i: int) -> None:
        """"Reboot" host i: its sshd comes back (its workers do not)."""
        self.sshds[i].stop()
        self.sshds[i].start()

    def cut(self, i: int) -> None:
        _ip("link", "set", self.veth(i), "down")

    def heal(self, i: int) -> None:
        _ip("link", "set", self.veth(i), "up")

    def udp_drop(self, i: int, percent: int) -> None:
        table = f"{self.prefix}_udp"
        subprocess.run(["nft", "add", "table", "netdev", table], check=True)
        subprocess.run(["nft", "delete", "chain", "netdev", table, f"u{i}"], check=False,
                       capture_output=True)
        if percent == 0:
            return
        subprocess.run(["nft", "add", "chain", "netdev", table, f"u{i}",
                        f"{{ type filter hook ingress device {self.veth(i)} priority 0; }}"],
                       check=True)
        subprocess.run(["nft", "add", "rule", "netdev", table, f"u{i}", "meta", "l4proto",
                        "udp", "numgen", "random", "mod", "100", "lt", str(percent), "drop"],
                       check=True)

    def close(self) -> None:
        """Remove every namespace, veth, bridge and nft table; kill what ran in them."""
        for i in range(1, self.n + 1):
            if i in self.sshds:
                self.sshds[i].stop()
            for pid in self.pids(i):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", self.ns(i)], check=False, capture_output=True)
            # a netns and its veth can outlive `ip netns del` (orphaned TCP sockets)
            subprocess.run(["ip", "link", "del", self.veth(i)], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)
        subprocess.run(["nft", "delete", "table", "netdev", f"{self.prefix}_udp"], check=False,
                       capture_output=True)


@contextmanager
def system_user(name: str) -> Iterator[pwd.struct_passwd]:
    """An unprivileged account (for `[workers] task_user`), made if missing and then removed."""
    try:
        existing: pwd.struct_passwd | None = pwd.getpwnam(name)
    except KeyError:
        existing = None
    if existing is not None:
        yield existing
        return
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@contextmanager
def public_dir(prefix: str) -> Iterator[Path]:
    """A directory every user may enter (0755, outside pytest's private /tmp/pytest-of-root):
    for clusters whose tasks run as another user."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def write_ini(path: Path, *, manager: str, hosts: list[str], keys: Keys, python: str,
              workdir: Path, slots: int = 2, interval: float = 0.2, missed: int = 10,
              extra: str = "") -> Path:
    """A cluster.ini for a test: ports chosen by the kernel, short heartbeats."""
    path.write_text(f"""[manager]
host = {manager}
port = 0
heartbeat_port = 0
workdir = {workdir}/manager

[workers]
hosts = {", ".join(hosts)}
slots = {slots}
python = {python}
workdir = {workdir}/workers
reconnect = 30
register_timeout = 20

[ssh]
key = {keys.client}
known_hosts = {keys.known_hosts}
connect_timeout = 5

[heartbeat]
interval = {interval}
missed = {missed}

[cluster]
shared_fs = yes
{extra}""")
    return path
