"""cluster.ini: where the manager listens, which hosts run workers, how to reach them.

Resolved once into frozen dataclasses. Precedence: built-in defaults <
cluster.ini < command-line flags. Every bad value is a ConfigError naming the
file, the section and the key.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from hstream.errors import ConfigError

DEFAULT_PORT = 6000
DEFAULT_HEARTBEAT_PORT = 6001
DEFAULT_HEARTBEAT_INTERVAL = 1.0
#: Missed heartbeats before a worker is dead. Several, never one: UDP drops datagrams.
DEFAULT_HEARTBEAT_MISSED = 10
#: Seconds a worker keeps trying to re-register after losing the manager, then exits.
DEFAULT_RECONNECT = 60.0
#: Seconds `cluster up` waits for a started worker to register.
DEFAULT_REGISTER_TIMEOUT = 30.0
#: What a `task_user` may look like (POSIX portable user names).
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
#: Keys a `[host NAME]` section may override for one host.
HOST_KEYS = ("slots", "python", "workdir")


@dataclass(frozen=True)
class Host:
    user: str | None
    host: str
    port: int = 22

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != 22 else ""
        return f"{user}{self.host}{port}"


@dataclass(frozen=True)
class ClusterConfig:
    path: str
    manager_host: str
    port: int
    heartbeat_port: int
    manager_workdir: str
    hosts: tuple[Host, ...]
    slots: int
    python: str
    worker_workdir: str
    ssh_key: str | None
    known_hosts: str
    connect_timeout: float
    heartbeat_interval: float
    heartbeat_missed: int
    shared_fs: bool
    reconnect: float = DEFAULT_RECONNECT
    register_timeout: float = DEFAULT_REGISTER_TIMEOUT
    #: `[host NAME]` sections: per-host slots/python/workdir, keyed by NAME.
    host_settings: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    #: `[cluster] tls`: every TCP connection inside TLS 1.3, checked against the cluster's CA.
    tls: bool = True
    #: `[workers] task_user`: workers running as root run their tasks as this account.
    task_user: str = ""
    #: The status pages' port (0: any free port), and how much job history is kept.
    web_port: int = 0
    history_max_jobs: int = 100
    history_max_mb: int = 100
    #: `[manager] restart`: a supervisor process starts the manager again if it dies.
    restart: bool = False

    def for_host(self, host: Host, key: str) -> str:
        """A per-host setting (`[host NAME]`, NAME = host or host:port), else [workers]' one."""
        for name, items in self.host_settings:
            if name in (host.host, f"{host.host}:{host.port}", str(host)):
                value = dict(items).get(key)
                if value is not None:
                    return value
        return str(getattr(self, {"workdir": "worker_workdir"}.get(key, key)))

    @property
    def state_file(self) -> str:
        """Written by `cluster up`: how clients find the running manager."""
        return os.path.join(self.manager_workdir, "cluster.json")

    @property
    def secret_file(self) -> str:
        return os.path.join(self.manager_workdir, "secret")

    @property
    def ca_file(self) -> str:
        """The cluster CA's certificate (not secret): clients check the manager against it."""
        return os.path.join(self.manager_workdir, "tls", "ca.pem")

    @property
    def ca_key_file(self) -> str:
        """The CA's key (0600, in a 0700 directory): `cluster up` signs daemons' certificates
        with it."""
        return os.path.join(self.manager_workdir, "tls", "ca.key")

    @property
    def history_dir(self) -> str:
        """Where the manager keeps the history of the cluster's jobs."""
        return os.path.join(self.manager_workdir, "history")

    @property
    def journal_file(self) -> str:
        """The manager's journal (journal.py): what a restarted manager resumes."""
        return os.path.join(self.manager_workdir, "journal")


def find_config(explicit: str | None) -> str | None:
    """The cluster.ini in effect: --config, then $HSTREAM_CONFIG, then ./cluster.ini."""
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError(f"cluster config not found: {explicit}")
        return explicit
    env = os.environ.get("HSTREAM_CONFIG")
    if env:
        if not os.path.isfile(env):
            raise ConfigError(f"cluster config not found: {env} (from HSTREAM_CONFIG)")
        return env
    return "cluster.ini" if os.path.isfile("cluster.ini") else None


def parse_host(text: str, where: str) -> Host:
    text = text.strip()
    user, _, rest = text.rpartition("@")
    host, port = rest, 22
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = _port(tail[1:], where)
    elif rest.count(":") == 1:
        host, p = rest.split(":")
        port = _port(p, where)
    if not host:
        raise ConfigError(f"{where}: bad host: {text!r}")
    return Host(user or None, host, port)


def _port(text: str, where: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"{where}: bad port: {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: port out of range: {port}")
    return port


def load(path: str) -> ClusterConfig:
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise ConfigError(f"cannot read cluster config {path}: {e.strerror}") from None
    except configparser.Error as e:
        raise ConfigError(f"{path}: {str(e).splitlines()[0]}") from None

    def get(section: str, key: str, default: str | None = None) -> str:
        if parser.has_option(section, key):
            return parser.get(section, key).strip()
        if default is None:
            raise ConfigError(f"{path}: [{section}] {key} is missing")
        return default

    def number(section: str, key: str, default: str,
               kind: Callable[[str], float] = int) -> float:
        text = get(section, key, default)
        try:
            value = kind(text)
        except ValueError:
            raise ConfigError(f"{path}: [{section}] {key} must be a number: {text!r}") from None
        if value < 0:
            raise ConfigError(f"{path}: [{section}] {key} must not be negative: {text!r}")
        return value

    hosts_text = get("workers", "hosts")
    hosts = tuple(parse_host(h, f"{path}: [workers] hosts") for h in hosts_text.split(",")
                  if h.strip())
    if not hosts:
        raise ConfigError(f"{path}: [workers] hosts is empty")
    def yes(section: str, key: str, default: str) -> bool:
        value = get(section, key, default).lower()
        if value not in ("yes", "no", "true", "false", "1", "0"):
            raise ConfigError(f"{path}: [{section}] {key} must be yes or no: {value!r}")
        return value in ("yes", "true", "1")

    task_user = get("workers", "task_user", "")
    if task_user and not _USER.fullmatch(task_user):
        raise ConfigError(f"{path}: [workers] task_user is not a user name: {task_user!r}")
    key = get("ssh", "key", "")
    return ClusterConfig(
        reconnect=number("workers", "reconnect", str(DEFAULT_RECONNECT), float),
        register_timeout=number("workers", "register_timeout", str(DEFAULT_REGISTER_TIMEOUT),
                                float),
        host_settings=_host_sections(parser, path),
        web_port=int(number("manager", "web_port", str(_web_port(get("manager", "port", "0"))))),
        history_max_jobs=int(number("history", "max_jobs", "100")),
        history_max_mb=int(number("history", "max_mb", "100")),
        restart=yes("manager", "restart", "no"),
        path=os.path.abspath(path),
        manager_host=get("manager", "host"),
        port=int(number("manager", "port", str(DEFAULT_PORT))),
        heartbeat_port=int(number("manager", "heartbeat_port", str(DEFAULT_HEARTBEAT_PORT))),
        manager_workdir=os.path.expanduser(get("manager", "workdir", "/var/tmp/hstream")),
        hosts=hosts,
        slots=int(number("workers", "slots", "2")) or 1,
        python=get("workers", "python", "python3"),
        worker_workdir=get("workers", "workdir", "/var/tmp/hstream-worker"),
        ssh_key=os.path.expanduser(key) if key else None,
        known_hosts=os.path.expanduser(get("ssh", "known_hosts", "~/.ssh/known_hosts")),
        connect_timeout=number("ssh", "connect_timeout", "10", float),
        heartbeat_interval=number("heartbeat", "interval", str(DEFAULT_HEARTBEAT_INTERVAL), float),
        heartbeat_missed=int(number("heartbeat", "missed", str(DEFAULT_HEARTBEAT_MISSED))) or 1,
        shared_fs=yes("cluster", "shared_fs", "yes"),
        tls=yes("cluster", "tls", "yes"),
        task_user=task_user,
    )


def _web_port(port: str) -> int:
    """Two above the manager's port by default; any free one when that is chosen freely."""
    return int(port) + 2 if port.isdigit() and int(port) else 0


def _host_sections(parser: configparser.ConfigParser, path: str
                   ) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    out = []
    for section in parser.sections():
        if not section.startswith("host "):
            continue
        items = tuple((k, v.strip()) for k, v in parser.items(section))
        for k, v in items:
            if k not in HOST_KEYS:
                raise ConfigError(f"{path}: [{section}] {k}: unknown key "
                                  f"(a host section may set {', '.join(HOST_KEYS)})")
            if k == "slots" and not v.isdigit():
                raise ConfigError(f"{path}: [{section}] slots must be a number: {v!r}")
        out.append((section[5:].strip(), items))
    return tuple(out)
