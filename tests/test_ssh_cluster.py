"""`hstream cluster up/status/down` over SSH against an sshd on loopback, and job commands.

The host is a real sshd on 127.0.0.1 at a free port, with a generated host key
and client key and the test's own known_hosts file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, assert_same_output, reference, require, run_hstream
from testbed import LoopbackHost, have_sshd, write_ini

EXAMPLE = ROOT / "examples" / "wordcount"
MAPPER, REDUCER = str(EXAMPLE / "map.py"), str(EXAMPLE / "reduce.sh")
DEBIAN_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackHost]:
    why = have_sshd()
    require(why is None, why or "")
    with LoopbackHost(tmp_path_factory.mktemp("sshd")) as h:
        yield h


def _ini(host: LoopbackHost, tmp: Path, python: str = sys.executable, trust: bool = True) -> Path:
    known = host.keys.known_hosts
    known.write_text("")
    if trust:
        host.keys.trust("127.0.0.1", host.sshd.port)
    return write_ini(tmp / "cluster.ini", manager="127.0.0.1", keys=host.keys, python=python,
                     hosts=[f"root@127.0.0.1:{host.sshd.port}"], workdir=tmp / "work")


def hs(ini: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_hstream(*args, env={"HSTREAM_CONFIG": str(ini)}, cwd=ini.parent, timeout=timeout)


def _wordcount(ini: Path, out: Path) -> subprocess.CompletedProcess[str]:
    proc = hs(ini, "jar-free", "-mapper", MAPPER, "-reducer", REDUCER,
              "-input", str(EXAMPLE / "input"), "-output", str(out), "-numReduceTasks", "2")
    assert proc.returncode == 0, proc.stderr
    assert_same_output(out, reference(sorted((EXAMPLE / "input").iterdir()), MAPPER, REDUCER,
                                      out.parent))
    return proc


def _worker_processes(home: Path) -> list[int]:
    mark = f"HSTREAM_WORKER_HOME={home}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            continue
    return found


def _cmdlines() -> bytes:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            continue
    return b"\n".join(out)


def test_up_job_status_down(host: LoopbackHost, tmp_path: Path) -> None:
    ini = _ini(host, tmp_path)
    up = hs(ini, "cluster", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    for step in ("ssh ok", "python 3.", "worker started", "worker registered",
                 "1 of 1 hosts ready"):
        assert step in up.stdout, up.stdout
    again = hs(ini, "cluster", "up")  # idempotent: same manager, same worker
    assert again.returncode == 0, again.stdout + again.stderr
    assert "manager: already running" in again.stdout and "worker already running" in again.stdout

    secret_file = tmp_path / "work" / "manager" / "secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip().encode()
    home = tmp_path / "work" / "workers" / f"127.0.0.1_{host.sshd.port}"
    assert not (home / "secret").exists(), "the worker's home holds no secret: tasks run below it"
    assert _worker_processes(home), "no worker runs on the host"

    job = _wordcount(ini, tmp_path / "out")
    status = hs(ini, "cluster", "status")
    assert status.returncode == 0, status.stderr
    assert f"127.0.0.1:{host.sshd.port}" in status.stdout and "alive" in status.stdout
    assert "succeeded" in status.stdout
    job_id = job.stderr.split("Running job: ")[1].split()[0]
    listed = hs(ini, "job", "list")
    assert job_id in listed.stdout, listed.stdout
    one = hs(ini, "job", "status", job_id)
    assert "state: succeeded" in one.stdout, one.stdout + one.stderr
    assert "Reduce output records" in hs(ini, "job", "logs", job_id).stdout

    # The secret is on no command line and in no log, output or state file.
    assert secret not in _cmdlines()
    logs = [p for d in (tmp_path / "work",) for p in d.rglob("*") if p.is_file()
            and p.name not in ("secret",)]
    assert any(p.name == "worker.log" for p in logs) and any(p.name == "manager.log" for p in logs)
    for p in logs:
        assert secret not in p.read_bytes(), f"secret leaked into {p}"
    for text in (up.stdout, up.stderr, job.stderr, status.stdout):
        assert secret.decode() not in text

    down = hs(ini, "cluster", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "manager: stopped" in down.stdout and "workdir removed" in down.stdout
    assert not _worker_processes(home)
    assert not home.exists() and not secret_file.exists()
    assert hs(ini, "cluster", "status").returncode != 0


def test_unknown_host_key_is_refused_unless_accepted(host: LoopbackHost, tmp_path: Path) -> None:
    ini = _ini(host, tmp_path, trust=False)
    try:
        up = hs(ini, "cluster", "up")
        assert up.returncode != 0
        assert f"127.0.0.1:{host.sshd.port}" in up.stderr and "unknown host key" in up.stderr
        assert "ssh-ed25519 SHA256:" in up.stderr
        assert host.keys.known_hosts.read_text() == ""
        accepted = hs(ini, "cluster", "up", "--accept-new-host-keys")
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        assert host.keys.host_public in host.keys.known_hosts.read_text()
    finally:
        down = hs(ini, "cluster", "down")
    assert down.returncode == 0, down.stdout + down.stderr


def test_changed_host_key_is_always_refused(host: LoopbackHost, tmp_path: Path) -> None:
    ini = _ini(host, tmp_path, trust=False)
    other = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(tmp_path / "other")], check=True)
    assert other.returncode == 0
    public = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    host.keys.known_hosts.write_text(f"[127.0.0.1]:{host.sshd.port} {public}\n")
    try:
        for flags in ((), ("--accept-new-host-keys",)):
            up = hs(ini, "cluster", "up", *flags)
            assert up.returncode != 0
            assert "host key CHANGED" in up.stderr and f"127.0.0.1:{host.sshd.port}" in up.stderr
    finally:
        down = hs(ini, "cluster", "down")
    assert "manager: stopped" in down.stdout
    assert down.returncode != 0 and "host key CHANGED" in down.stderr  # and it says so


def test_worker_host_with_only_debian_python(host: LoopbackHost, tmp_path: Path) -> None:
    """A host whose python3 has nothing but the stdlib still runs tasks."""
    require(os.path.exists(DEBIAN_PYTHON), f"needs {DEBIAN_PYTHON}")
    importable = [m for m in ("paramiko", "click", "psutil")
                  if subprocess.run([DEBIAN_PYTHON, "-c", f"import {m}"], check=False,
                                    capture_output=True).returncode == 0]
    require(not importable, f"{DEBIAN_PYTHON} must not have {importable}")
    ini = _ini(host, tmp_path, python=DEBIAN_PYTHON)
    try:
        up = hs(ini, "cluster", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"({DEBIAN_PYTHON})" in up.stdout
        home = tmp_path / "work" / "workers" / f"127.0.0.1_{host.sshd.port}"
        exes = {os.readlink(f"/proc/{pid}/exe") for pid in _worker_processes(home)}
        assert exes and all(e.startswith("/usr/bin/python3") for e in exes), exes
        _wordcount(ini, tmp_path / "out")
    finally:
        down = hs(ini, "cluster", "down")
    assert down.returncode == 0, down.stdout + down.stderr
