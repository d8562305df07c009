"""How a client finds the cluster that `hstream cluster up` started from a cluster.ini."""

from __future__ import annotations

import json
import logging
import os

from hstream import protocol
from hstream.cluster import config
from hstream.errors import ProtocolError

logger = logging.getLogger(__name__)


def write_state(cfg: config.ClusterConfig, port: int, heartbeat_port: int, pid: int,
                web_port: int | None = None, tls: bool = False) -> None:
    os.makedirs(cfg.manager_workdir, exist_ok=True)
    tmp = cfg.state_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"host": cfg.manager_host, "port": port, "heartbeat_port": heartbeat_port,
                   "pid": pid, "web_port": web_port, "tls": tls}, f)
    os.replace(tmp, cfg.state_file)


def read_state(cfg: config.ClusterConfig) -> dict[str, object] | None:
    try:
        with open(cfg.state_file, encoding="utf-8") as f:
            return dict(json.load(f))
    except (OSError, ValueError):
        return None


def connect_address(host: str) -> str:
    """A manager bound to every address is reached on loopback from its own host."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def client_auth(cfg: config.ClusterConfig, state: dict[str, object]) -> protocol.Auth:
    """What a client of the running cluster connects with: the secret, and the cluster's CA
    (`tls/ca.pem`, not secret) when the manager was started with TLS."""
    secret = protocol.read_secret(cfg.secret_file)
    if not state.get("tls"):
        return protocol.Auth(secret)
    with open(cfg.ca_file, encoding="ascii") as f:
        return protocol.Auth(secret, tls=protocol.TLS(f.read()))


def find_running(explicit_config: str | None) -> tuple[str, int, protocol.Auth] | None:
    """(host, port, auth) of a reachable manager for the cluster.ini in effect, else None."""
    path = config.find_config(explicit_config)
    if path is None:
        return None
    cfg = config.load(path)
    state = read_state(cfg)
    if state is None or not os.path.exists(cfg.secret_file):
        return None
    host, port = connect_address(str(state["host"])), int(str(state["port"]))
    try:
        auth = client_auth(cfg, state)
        chan = protocol.connect(host, port, auth, timeout=3)
        chan.request({"op": "status"})
        chan.close()
    except (OSError, EOFError, ProtocolError) as e:
        logger.info("cluster of %s is not up (%s): using a local cluster", path, e)
        return None
    return host, port, auth
