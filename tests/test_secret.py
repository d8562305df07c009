"""A task never obtains the cluster secret, and its job token does only its own job's work.

A hostile mapper (apps/secret_probe.py) reads every file it can reach walking up from its
directory and everything below the workers' directories, reads /proc/PID/{cmdline,environ,
maps,mem} of every daemon, digs its job token out of its task runner's memory and tries it
on the manager: status, kill, logs, shutdown, submit, register, another job's data. None of
it may work, and the job's output must still be the serial pipeline's.

On the embedded cluster the client, the daemons and the tasks are one user: the test runs
all of it as root without any capability (setpriv), which is what an ordinary user is to
the kernel: a same-uid process that may ptrace dumpable processes, not non-dumpable ones.
On a cluster from `cluster up` (sshd on loopback, workers as root), tasks run as
`[workers] task_user`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import APPS, assert_same_output, reference, require, run_hstream, wait_for
from testbed import LoopbackHost, have_sshd, public_dir, system_user, write_ini

from hstream import protocol
from hstream.cluster.client import Client
from hstream.cluster.localcluster import LocalCluster
from hstream.errors import ProtocolError
from hstream.hadoop.streaming import parse
from hstream.task import shuffle

PROBE, REDUCER = APPS / "secret_probe.py", APPS / "wc_reduce.py"
DEBIAN_PYTHON = "/usr/bin/python3"
TASK_USER = "hsprobe"

HARNESS = """
import json, os, sys
from hstream.cluster.client import Client
from hstream.cluster.localcluster import LocalCluster
from hstream.hadoop.streaming import parse

with LocalCluster(workers=2, shared_fs=False) as cluster:
    words = json.loads(sys.argv[1]) + ["-cmdenv", f"PROBE_MANAGER=127.0.0.1:{cluster.port}"]
    outcome = Client("127.0.0.1", cluster.port, cluster.secret).run(parse(words).spec, sys.stderr)
    print(json.dumps({"secret": cluster.secret.hex(), "state": outcome.state,
                      "message": outcome.message, "rundir": cluster.rundir,
                      "workers_after": len(cluster.status()["workers"])}))
"""


def corpus(d: Path) -> Path:
    d.mkdir()
    for i in range(2):
        (d / f"part{i}.txt").write_text("".join(f"w{j % 37} x{(j + i) % 11} common\n"
                                                for j in range(2000)))
    return d


def job_words(data: Path, out: Path, probe_dir: Path, scan_root: Path) -> list[str]:
    return ["-input", str(data), "-output", str(out), "-mapper", str(PROBE),
            "-reducer", str(REDUCER), "-numReduceTasks", "2",
            "-cmdenv", f"PROBE_DIR={probe_dir}", "-cmdenv", f"SCAN_ROOT={scan_root}"]


def reports(probe_dir: Path) -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in sorted(probe_dir.glob("*.json"))]
    assert found, f"no probe ran (nothing in {probe_dir})"
    return found


def assert_nothing_leaked(probe_dir: Path, secret: bytes, mine: str, processes: int) -> None:
    """No dump holds the secret; every process of this test holding it (at least
    `processes` of them; their command lines name `mine`) kept its environment and memory;
    the token found did nothing it must not."""
    for dump in probe_dir.glob("*.dump"):
        data = dump.read_bytes()
        leaked = secret.hex().encode() in data or secret in data
        assert not leaked, f"the cluster secret is in what a task read ({dump.name})"
    for r in reports(probe_dir):
        assert r["files_read"] > 0, r  # its own files, at least
        ours = [d for d in r["daemons"] if mine in d["cmdline"]]
        assert len(ours) >= processes, f"the probe missed this test's daemons: {r['daemons']}"
        for d in ours:
            for what in ("environ", "maps", "mem"):
                assert d[what].startswith("denied"), f"a task read {what} of {d['cmdline']}"
        assert r["token_found"], f"the probe did not find its job token: {r}"
        assert not r["granted"], f"a job token was allowed {r['granted']}: {r['ops']}"
        assert r["ops"]["token under another job id"].startswith("handshake refused"), r["ops"]


def test_embedded_cluster_keeps_its_secret_from_tasks(tmp_path: Path) -> None:
    require(os.geteuid() == 0 and shutil.which("setpriv") is not None,
            "needs root and setpriv (runs the cluster as root without capabilities)")
    data, probe_dir, run = corpus(tmp_path / "in"), tmp_path / "probe", tmp_path / "run"
    probe_dir.mkdir()
    run.mkdir()
    out = tmp_path / "out"
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)
    words = job_words(data, out, probe_dir, run)
    proc = subprocess.run(
        ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--ambient-caps", "-all",
         "--", sys.executable, str(harness), json.dumps(words)],
        env={**os.environ, "TMPDIR": str(run)}, cwd=tmp_path, capture_output=True, text=True,
        timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["state"] == "succeeded", result["message"]
    assert result["workers_after"] == 2  # the manager is still up, with both workers
    assert_same_output(out, reference(sorted(data.iterdir()), str(APPS / "wc_map.py"),
                                      str(REDUCER), tmp_path))
    # the manager, both workers and the client (harness.py), which holds the secret too
    assert_nothing_leaked(probe_dir, bytes.fromhex(result["secret"]), str(tmp_path), 4)
    for r in reports(probe_dir):
        assert r["uid"] == 0  # uid 0 without capabilities: a same-uid attacker, nothing more


@pytest.fixture(scope="module")
def task_user() -> Iterator[str]:
    require(os.geteuid() == 0 and shutil.which("useradd") is not None, "needs root and useradd")
    with system_user(TASK_USER):
        yield TASK_USER


def test_cluster_tasks_run_as_task_user_and_find_no_secret(task_user: str, tmp_path: Path
                                                            ) -> None:
    """`cluster up` with TLS and shared_fs = no, workers as root, tasks as `task_user`."""
    why = have_sshd()
    require(why is None, why or "")
    require(os.path.exists(DEBIAN_PYTHON), f"needs {DEBIAN_PYTHON} (a python the task user "
            "can run: this one lives below /root)")
    with public_dir("hstream-secret-") as pub, LoopbackHost(pub / "sshd") as host:
        host.keys.trust("127.0.0.1", host.sshd.port)
        ini = write_ini(pub / "cluster.ini", manager="127.0.0.1", keys=host.keys,
                        python=DEBIAN_PYTHON, hosts=[f"root@127.0.0.1:{host.sshd.port}"],
                        workdir=pub / "work")
        ini.write_text(ini.read_text().replace("shared_fs = yes", "shared_fs = no\ntls = yes")
                       .replace("[ssh]", f"task_user = {task_user}\n\n[ssh]"))
        probe_dir = pub / "probe"
        probe_dir.mkdir()
        shutil.chown(probe_dir, task_user)

        def hs(*args: str) -> subprocess.CompletedProcess[str]:
            return run_hstream(*args, env={"HSTREAM_CONFIG": str(ini)}, cwd=tmp_path,
                               timeout=180)
        try:
            up = hs("cluster", "up")
            assert up.returncode == 0, up.stdout + up.stderr
            state = json.loads((pub / "work" / "manager" / "cluster.json").read_text())
            assert state["tls"], state
            shutil.copy(pub / "work" / "manager" / "tls" / "ca.pem", probe_dir / "ca.pem")
            data, out = corpus(tmp_path / "in"), tmp_path / "out"
            job = hs("jar-free", *job_words(data, out, probe_dir, pub / "work"),
                     "-cmdenv", f"PROBE_MANAGER=127.0.0.1:{state['port']}",
                     "-cmdenv", f"PROBE_CA={probe_dir / 'ca.pem'}")
            assert job.returncode == 0, job.stderr
            assert_same_output(out, reference(sorted(data.iterdir()), str(APPS / "wc_map.py"),
                                              str(REDUCER), tmp_path))
            secret = bytes.fromhex((pub / "work" / "manager" / "secret").read_text().strip())
            assert_nothing_leaked(probe_dir, secret, str(pub), 2)
            uid = int(subprocess.run(["id", "-u", task_user], capture_output=True, text=True,
                                     check=True).stdout)
            assert {r["uid"] for r in reports(probe_dir)} == {uid}
            assert hs("cluster", "status").returncode == 0  # the manager is still up
        finally:
            down = hs("cluster", "down")
        assert down.returncode == 0, down.stdout + down.stderr


def test_token_is_bound_to_its_job_and_dies_with_it(tmp_path: Path) -> None:
    """On a real manager and a real shuffle server: a token opens nothing of another job,
    and nothing at all once its job is over."""
    data = corpus(tmp_path / "in")
    opts = parse(["-input", str(data), "-output", str(tmp_path / "out"), "-mapper",
                  str(APPS / "wc_map.py"), "-reducer", str(REDUCER)], cwd=str(tmp_path))
    with LocalCluster(workers=1, shared_fs=False) as cluster:
        client = Client("127.0.0.1", cluster.port, cluster.secret)
        outcome = client.run(opts.spec, open(os.devnull, "w"))
        assert outcome.state == "succeeded"
        finished = protocol.Auth(protocol.job_token(cluster.secret, outcome.job_id),
                                 outcome.job_id)
        with pytest.raises((ProtocolError, OSError, EOFError)):
            protocol.connect("127.0.0.1", cluster.port, finished).request({"op": "status"})
        assert client.status()["workers"]  # and the manager is fine

    secret, stopping = protocol.new_secret(), threading.Event()
    job, other = "job_1_0001", "job_1_0002"
    out = tmp_path / "w" / other / "maps" / "attempt_1_0002_m_000000_0"
    out.mkdir(parents=True)
    (out / "part-00000").write_text("other job's records\n")
    shuffle.write_meta(str(out), False)
    active = {job, other}
    sock = __import__("socket").create_server(("127.0.0.1", 0))
    server = threading.Thread(target=shuffle.serve, args=(sock, secret, str(tmp_path / "w"),
                                                          stopping, active.__contains__))
    server.start()
    try:
        port = sock.getsockname()[1]
        mine = protocol.Auth(protocol.job_token(secret, job), job)
        chan = protocol.connect("127.0.0.1", port, mine)
        reply = chan.request({"op": "fetch", "job_id": other, "attempt_id": out.name,
                              "partition": 0})
        assert reply["op"] == "error" and "only" in reply["message"], reply
        chan.close()
        with pytest.raises(ProtocolError):  # its token under the other job's name
            protocol.connect("127.0.0.1", port, protocol.Auth(mine.key, other))
        theirs = protocol.Auth(protocol.job_token(secret, other), other)
        chan = protocol.connect("127.0.0.1", port, theirs)
        assert chan.request({"op": "fetch", "job_id": other, "attempt_id": out.name,
                             "partition": 0})["op"] == "data"
        chan.close()
        active.discard(other)  # the job is done here: its token dies with it
        with pytest.raises((ProtocolError, OSError, EOFError)):
            protocol.connect("127.0.0.1", port, theirs)
    finally:
        stopping.set()
        sock.close()
        server.join(timeout=10)


def test_host_agent_finds_its_non_dumpable_worker(tmp_path: Path) -> None:
    """A worker's environment and cwd are closed to its own user (it is non-dumpable), so the
    host agent, which must find it to stop it, knows it by its command line."""
    require(os.geteuid() == 0 and shutil.which("setpriv") is not None, "needs root and setpriv")
    capless = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--ambient-caps",
               "-all", "--"]
    home = tmp_path / "home"
    (home / "tasks").mkdir(parents=True)
    worker = subprocess.Popen(
        [*capless, sys.executable, "-m", "hstream.cluster.worker", "--manager", "127.0.0.1:9",
         "--secret-file", "-", "--workdir", str(home / "tasks"), "--reconnect", "60"],
        stdin=subprocess.PIPE, cwd=home, start_new_session=True,
        env={**os.environ, "HSTREAM_WORKER_HOME": str(home)})
    assert worker.stdin is not None
    worker.stdin.write(protocol.Auth(protocol.new_secret()).dumps())
    worker.stdin.close()
    look = [*capless, sys.executable, "-c",
            "import sys; from hstream.cluster import hostagent; "
            "print(sorted(hostagent._members(sys.argv[1])))", str(home)]
    try:
        def environ_closed() -> bool:
            probe = subprocess.run([*capless, "cat", f"/proc/{worker.pid}/environ"],
                                   capture_output=True, check=False)
            return probe.returncode != 0 and b"Permission denied" in probe.stderr

        wait_for(environ_closed, 30, "the worker to make itself non-dumpable")
        found = subprocess.run(look, capture_output=True, text=True, check=True).stdout
        assert json.loads(found) == [worker.pid]
    finally:
        worker.kill()
        worker.wait()
