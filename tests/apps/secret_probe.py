#!/usr/bin/env python3
"""A hostile mapper (tests/test_secret.py): it looks everywhere a task can for the cluster
secret, digs its own job token out of its task runner's memory and tries it on the manager,
then counts words exactly like examples/wordcount/map.py, so the job's output is checked too.

Everything it read goes to PROBE_DIR/<attempt>.dump (the test greps it for the secret), what
it found to PROBE_DIR/<attempt>.json. Environment (-cmdenv): PROBE_DIR, SCAN_ROOT (searched
recursively: the workers' directories), PROBE_MANAGER (host:port), PROBE_CA (the cluster CA's
PEM file, on a TLS cluster). Stdlib and hstream.protocol only (a worker host has no more).
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys

FILE_LIMIT = 4 << 20
TOTAL_LIMIT = 64 << 20
TREE_FILES = 20_000
CANDIDATES = 400
#: Replies that would mean the token did something it must not.
GRANTED = {"ok", "status", "accepted", "registered", "logs", "data"}


class Dump:
    """Every byte the probe managed to read, up to TOTAL_LIMIT."""

    def __init__(self, path: str) -> None:
        self.out = open(path, "wb")
        self.size = 0
        self.files = 0

    def add(self, data: bytes) -> None:
        if self.size < TOTAL_LIMIT:
            self.out.write(data[:TOTAL_LIMIT - self.size] + b"\n")
            self.size += len(data)


def read(path: str) -> bytes | None:
    """A regular file's first FILE_LIMIT bytes, None if it is not one or cannot be read."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return os.read(fd, FILE_LIMIT)
        finally:
            os.close(fd)
    except OSError:
        return None


def walk_up(dump: Dump) -> None:
    """Every file in every directory from here up to /."""
    here = os.getcwd()
    while True:
        try:
            names = os.listdir(here)
        except OSError:
            names = []
        for name in names:
            data = read(os.path.join(here, name))
            if data is not None:
                dump.add(data)
                dump.files += 1
        parent = os.path.dirname(here)
        if parent == here:
            return
        here = parent


def walk_tree(root: str, dump: Dump) -> None:
    seen = 0
    for d, _, names in os.walk(root):
        for name in names:
            seen += 1
            if seen > TREE_FILES:
                return
            data = read(os.path.join(d, name))
            if data is not None:
                dump.add(data)
                dump.files += 1


def cmdline(pid: int) -> list[bytes]:
    data = read(f"/proc/{pid}/cmdline") or b""
    return data.split(b"\0")


def daemons() -> list[int]:
    """The manager's and the workers' processes (their command lines are public)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            argv = cmdline(int(name))
            if b"hstream.cluster.worker" in argv or (b"manager" in argv and b"hstream" in argv):
                found.append(int(name))
    return found


def try_proc(pid: int, dump: Dump) -> dict[str, str]:
    """What of a daemon's /proc entries a task can read."""
    out = {"cmdline": " ".join(a.decode(errors="replace") for a in cmdline(pid))[:300]}
    dump.add(b"\0".join(cmdline(pid)))
    for what in ("environ", "maps", "mem"):
        try:
            with open(f"/proc/{pid}/{what}", "rb", buffering=0) as f:
                data = f.read(1 << 16) if what != "mem" else memory(pid)
            dump.add(data)
            out[what] = f"READ {len(data)} bytes"
        except OSError as e:
            out[what] = f"denied ({e.strerror})"
    return out


def memory(pid: int) -> bytes:
    """The writable memory of a process (what ptrace would show)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if perms.startswith("rw") and end - start <= 256 << 20:
                try:
                    mem.seek(start)
                    chunks.append(mem.read(end - start))
                except OSError:
                    continue
    return b"".join(chunks)


def ancestors() -> list[int]:
    """This process's parents, up to (not including) init."""
    found, pid = [], os.getppid()
    while pid > 1:
        found.append(pid)
        stat_line = (read(f"/proc/{pid}/stat") or b"").rsplit(b")", 1)[-1].split()
        pid = int(stat_line[1]) if len(stat_line) > 1 else 0
    return found


def runner() -> int | None:
    """This attempt's task runner: the nearest ancestor running hstream.task (or forked by
    hstream.task.zygote)."""
    return next((pid for pid in ancestors()
                 if any(a == b"hstream.task" or a.startswith(b"hstream.task.")
                        for a in cmdline(pid))), None)


def find_token(report: dict[str, object]) -> object:
    """The runner's memory holds this job's token, as a task is meant to have it: find it
    by trying every 64-hex-digit string in there on the manager."""
    from hstream import protocol

    pid = runner()
    report["runner"] = pid
    if pid is None:
        return None
    try:
        found = re.findall(rb"[0-9a-f]{64}", memory(pid))
    except OSError as e:
        report["runner_memory"] = f"denied ({e.strerror})"
        return None
    candidates = list(dict.fromkeys(found))[:CANDIDATES]
    report["candidates"] = len(candidates)
    job = os.environ["mapreduce_job_id"]
    tls = protocol.TLS(open(os.environ["PROBE_CA"]).read()) if os.environ.get("PROBE_CA") else None
    host, _, port = os.environ["PROBE_MANAGER"].rpartition(":")
    for c in candidates:
        auth = protocol.Auth(bytes.fromhex(c.decode()), job, tls)
        try:
            protocol.connect(host, int(port), auth, timeout=5).close()
            return auth
        except Exception:  # noqa: BLE001 - not the token
            continue
    return None


def try_ops(auth: object) -> dict[str, str]:
    """Everything a job token must not do, each on a connection of its own."""
    from hstream import protocol

    assert isinstance(auth, protocol.Auth)
    job = auth.job_id
    other = "job_1_0001"
    ops = {
        "status": {"op": "status"},
        "kill": {"op": "kill", "job_id": job},
        "logs": {"op": "logs", "job_id": job},
        "shutdown": {"op": "shutdown"},
        "submit": {"op": "submit", "job": {"name": "evil", "inputs": ["/etc/hostname"],
                                            "output": "/tmp/hstream-evil-out", "mapper": "cat",
                                            "reducer": None}},
        "register": {"op": "register", "worker_id": "evil", "host": "127.0.0.1",
                     "shuffle_port": 1, "slots": 1},
        "other job's file": {"op": "get_file", "job_id": other, "name": "secret_probe.py"},
    }
    host, _, port = os.environ["PROBE_MANAGER"].rpartition(":")
    results = {}
    for name, msg in ops.items():
        try:
            chan = protocol.connect(host, int(port), auth, timeout=5)
        except Exception as e:  # noqa: BLE001
            results[name] = f"handshake refused: {type(e).__name__}"
            continue
        try:
            chan.sock.settimeout(10)
            results[name] = str(chan.request(msg).get("op"))
        except Exception as e:  # noqa: BLE001
            results[name] = f"closed: {type(e).__name__}"
        finally:
            chan.close()
    other_job = protocol.Auth(auth.key, other, auth.tls)  # its token, another job's name
    try:
        protocol.connect(host, int(port), other_job, timeout=5).close()
        results["token under another job id"] = "ok"
    except Exception as e:  # noqa: BLE001
        results["token under another job id"] = f"handshake refused: {type(e).__name__}"
    return results


def probe() -> None:
    out = os.environ["PROBE_DIR"]
    name = os.environ.get("mapreduce_task_attempt_id", str(os.getpid()))
    dump = Dump(os.path.join(out, f"{name}.dump"))
    report: dict[str, object] = {"uid": os.getuid(), "cwd": os.getcwd()}
    walk_up(dump)
    if os.environ.get("SCAN_ROOT"):
        walk_tree(os.environ["SCAN_ROOT"], dump)
    dump.add(b"\0".join(f"{k}={v}".encode() for k, v in os.environ.items()))
    above = ancestors()  # above the runner: the worker, and a local cluster's client
    targets = daemons() + above[above.index(runner() or above[0]) + 1:]
    report["daemons"] = [try_proc(pid, dump) for pid in dict.fromkeys(targets)]
    try:
        auth = find_token(report)
    except Exception as e:  # noqa: BLE001 - an hstream without tokens: say so, go on
        report["token_error"] = f"{type(e).__name__}: {e}"
        auth = None
    report["token_found"] = auth is not None
    report["ops"] = try_ops(auth) if auth is not None else {}
    report["granted"] = sorted(k for k, v in report["ops"].items()  # type: ignore[union-attr]
                               if v in GRANTED)
    report["files_read"] = dump.files
    dump.out.close()
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    if os.environ.get("PROBE_DIR"):
        probe()
    for line in sys.stdin:
        for word in line.split():
            print(f"{word}\t1")
