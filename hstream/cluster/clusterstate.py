"""How a client finds the cluster that `hstream cluster up` started from a cluster.ini."""

from __future__ import annotations

import json
import logging
import os

from hstream import protocol
from hstream.cluster import config
from hstream.errors import ProtocolError

logger = logging.getLogger(__name__)


def write_state(cfg: config.ClusterConfig, port: int, heartbeat_port: int, pid: int) -> None:
    os.makedirs(cfg.manager_workdir, exist_ok=True)
    tmp = cfg.state_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"host": cfg.manager_host, "port": port, "heartbeat_port": heartbeat_port,
                   "pid": pid}, f)
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


def find_running(explicit_config: str | None) -> tuple[str, int, bytes] | None:
    """(host, port, secret) of a reachable manager for the cluster.ini in effect, else None."""
    path = config.find_config(explicit_config)
    if path is None:
        return None
    cfg = config.load(path)
    state = read_state(cfg)
    if state is None or not os.path.exists(cfg.secret_file):
        return None
    host, port = connect_address(str(state["host"])), int(str(state["port"]))
    secret = protocol.read_secret(cfg.secret_file)
    try:
        chan = protocol.connect(host, port, secret, timeout=3)
        chan.request({"op": "status"})
        chan.close()
    except (OSError, EOFError, ProtocolError) as e:
        logger.info("cluster of %s is not up (%s): using a local cluster", path, e)
        return None
    return host, port, secret
