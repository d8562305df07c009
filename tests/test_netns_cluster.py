"""Three hosts in network namespaces, each with its own sshd and address: jobs that lose a host.

Heartbeats are short (0.2 s, 10 missed = dead after 2 s) so that failures are
detected quickly; the UDP-loss check watches for 12 s (not a minute) at that
rate, i.e. 60 heartbeat intervals, which is the same number of chances for a
false death as a minute at 1 s intervals.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, assert_same_output, reference, require, wait_for
from testbed import Testbed as Bed
from testbed import have_netns, public_dir, system_user, write_ini

EXAMPLE = ROOT / "examples" / "wordcount"
REDUCER = str(EXAMPLE / "reduce.sh")
HOSTS = 3


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    why = have_netns()
    require(why is None, why or "")
    with Bed(tmp_path_factory.mktemp("netns"), HOSTS) as tb:
        yield tb


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 small input files (12 map tasks) and a mapper slow enough to be caught mid-job."""
    d = tmp_path_factory.mktemp("data")
    lines = b"".join(p.read_bytes() for p in sorted((EXAMPLE / "input").iterdir())).splitlines()
    (d / "input").mkdir()
    for i in range(12):
        (d / "input" / f"part{i:02d}.txt").write_bytes(b"\n".join(lines[i:] + lines[:i]) + b"\n")
    slow = d / "slowmap.sh"
    slow.write_text(f"#!/bin/sh\nsleep 0.7\nexec {EXAMPLE / 'map.py'}\n")
    slow.chmod(0o755)
    return d


class Cluster:
    def __init__(self, bed: Bed, tmp: Path) -> None:
        self.bed = bed
        self.ini = write_ini(tmp / "cluster.ini", manager=bed.manager_address,
                             hosts=[f"root@{bed.address(i)}" for i in range(1, HOSTS + 1)],
                             keys=bed.keys, python=sys.executable, workdir=tmp / "work")
        self.env = {**os.environ, "HSTREAM_CONFIG": str(self.ini)}
        self.is_down = True

    def hs(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hstream", *args], check=False, env=self.env,
                              cwd=self.ini.parent, capture_output=True, text=True,
                              timeout=timeout)

    def up(self) -> float:
        self.is_down = False
        t0 = time.monotonic()
        proc = self.hs("cluster", "up")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.count("worker registered") == HOSTS, proc.stdout
        return time.monotonic() - t0

    def status(self) -> dict[str, Any]:
        from hstream.cluster import config, launcher
        client = launcher.manager_client(config.load(str(self.ini)))
        assert client is not None, "manager is not up"
        return client.status()

    def worker(self, i: int) -> dict[str, Any]:
        return next(w for w in self.status()["workers"] if w["id"] == self.bed.address(i))

    def start_job(self, data: Path, out: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "hstream", "jar-free", "-mapper", str(data / "slowmap.sh"),
             "-reducer", REDUCER, "-input", str(data / "input"), "-output", str(out),
             "-numReduceTasks", "3"],
            env=self.env, cwd=self.ini.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

    def down(self) -> None:
        proc = self.hs("cluster", "down")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        self.is_down = True
        for i in range(1, HOSTS + 1):
            wait_for(lambda i=i: not self.bed.hstream_pids(i), 10, f"host {i} to be empty")


@pytest.fixture
def cluster(bed: Bed, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(bed, tmp_path)
    try:
        yield c
    finally:
        for i in range(1, HOSTS + 1):  # whatever a failed test did to the hosts
            bed.heal(i)
            bed.udp_drop(i, 0)
            if bed.sshds[i].proc is None:
                bed.restart_sshd(i)
        if not c.is_down:
            c.hs("cluster", "down")


def _expected(data: Path) -> bytes:
    return reference(sorted((data / "input").iterdir()), str(EXAMPLE / "map.py"), REDUCER, data)


def _finish(job: subprocess.Popen[str], out: Path, data: Path) -> None:
    _, stderr = job.communicate(timeout=90)
    assert job.returncode == 0, stderr
    assert_same_output(out, _expected(data))


def test_wordcount_across_three_hosts(cluster: Cluster, data: Path, tmp_path: Path) -> None:
    seconds = cluster.up()
    print(f"cluster up of {HOSTS} hosts: {seconds:.2f} s")
    job = cluster.start_job(data, tmp_path / "out")
    busy: set[str] = set()

    def all_busy() -> bool:
        busy.update(w["id"] for w in cluster.status()["workers"] if w["running"])
        return len(busy) == HOSTS or job.poll() is not None

    wait_for(all_busy, 60, "every host to run a task")
    _finish(job, tmp_path / "out", data)
    assert len(busy) == HOSTS, f"only {busy} ran tasks"
    cluster.down()


def test_example_gallery_on_three_hosts(cluster: Cluster, tmp_path: Path) -> None:
    """Every example's Makefile at once (`make -j3`): their jobs queue on the namespace cluster,
    and each example's output equals its serial pipeline."""
    from test_examples import NAMES, copy_gallery, jobs_run, make
    cluster.up()
    gallery = copy_gallery(tmp_path)
    try:
        proc = make(gallery, "-j3", "-O", env={"HSTREAM_CONFIG": str(cluster.ini)}, timeout=900)
    except subprocess.TimeoutExpired as e:
        jobs = [(j["id"], j["state"], j["running"]) for j in cluster.status()["jobs"]]
        pytest.fail(f"the gallery took over 900 s; jobs: {jobs}; output: {str(e.stdout)[-2000:]}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("ok: ") >= len(NAMES), proc.stdout
    succeeded = [j for j in cluster.status()["jobs"] if j["state"] == "succeeded"]
    assert len(succeeded) == jobs_run(proc), "a job ran somewhere else than on the cluster"
    cluster.down()


@pytest.mark.parametrize("failure", ["kill", "cut"])
def test_host_lost_mid_job(cluster: Cluster, data: Path, tmp_path: Path, failure: str) -> None:
    """A host that crashes (EOF) or goes silent (heartbeat timeout): same output."""
    bed = cluster.bed
    cluster.up()
    job = cluster.start_job(data, tmp_path / "out")
    wait_for(lambda: cluster.worker(2)["running"] or job.poll() is not None, 60,
             "host 2 to run a task")
    assert job.poll() is None, "the job ended before host 2 could fail"
    if failure == "kill":
        bed.kill(2)
    else:
        bed.cut(2)
    wait_for(lambda: not cluster.worker(2)["alive"], 20, "host 2 to be declared dead")
    _finish(job, tmp_path / "out", data)
    if failure == "kill":
        assert not bed.hstream_pids(2)
        bed.restart_sshd(2)  # the host reboots: `cluster up` brings its worker back
        cluster.up()
        assert cluster.worker(2)["alive"]
    else:
        bed.heal(2)
    cluster.down()


def test_udp_loss_causes_no_false_death(cluster: Cluster) -> None:
    """30% of one host's heartbeats dropped for 60 intervals: nobody is declared dead."""
    bed = cluster.bed
    cluster.up()
    bed.udp_drop(1, 30)
    deadline = time.monotonic() + 12
    samples = 0
    while time.monotonic() < deadline:
        workers = cluster.status()["workers"]
        assert len(workers) == HOSTS and all(w["alive"] for w in workers), workers
        samples += 1
        time.sleep(0.2)
    bed.udp_drop(1, 0)
    assert samples > 30
    log = (cluster.ini.parent / "work" / "manager" / "manager.log").read_text()
    assert bed.address(1) not in "".join(line for line in log.splitlines()
                                         if "dead" in line.lower())
    cluster.down()


def test_hosts_without_shared_filesystem(tmp_path: Path, data: Path) -> None:
    """`shared_fs = no`: hosts with a /tmp of their own never see the input or output there."""
    why = have_netns()
    require(why is None, why or "")
    keys_dir = Path(tempfile.mkdtemp(prefix="hstream-test-", dir="/var/tmp"))  # outside /tmp
    try:
        with Bed(keys_dir, 2, private_tmp=True) as bed:
            for i in (1, 2):
                sshd = bed.sshds[i].proc
                assert sshd is not None
                seen = subprocess.run(["nsenter", "-t", str(sshd.pid), "-m", "test", "-e",
                                       str(data / "input")], check=False)
                assert seen.returncode != 0, f"host {i} sees {data}: not a private /tmp"
                own = subprocess.run(["nsenter", "-t", str(sshd.pid), "-m", "test", "-e",
                                      str(keys_dir / "known_hosts")], check=False)
                assert own.returncode == 0, "nsenter cannot look into the host"
            ini = write_ini(tmp_path / "cluster.ini", manager=bed.manager_address,
                            hosts=[f"root@{bed.address(i)}" for i in (1, 2)], keys=bed.keys,
                            python=sys.executable, workdir=tmp_path / "work",
                            extra="").read_text().replace("shared_fs = yes", "shared_fs = no")
            (tmp_path / "cluster.ini").write_text(ini)
            env = {**os.environ, "HSTREAM_CONFIG": str(tmp_path / "cluster.ini")}

            def hs(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run([sys.executable, "-m", "hstream", *args], env=env,
                                      cwd=tmp_path, capture_output=True, text=True, timeout=90,
                                      check=False)
            try:
                up = hs("cluster", "up")
                assert up.returncode == 0, up.stdout + up.stderr
                job = hs("jar-free", "-mapper", str(EXAMPLE / "map.py"), "-reducer", REDUCER,
                         "-input", str(data / "input"), "-output", str(tmp_path / "out"),
                         "-numReduceTasks", "2")
                assert job.returncode == 0, job.stderr
                assert_same_output(tmp_path / "out", _expected(data))
                log = (tmp_path / "work" / "manager" / "manager.log").read_text()
                assert "relay read_split" in log and "relay put_output" in log
            finally:
                down = hs("cluster", "down")
            assert down.returncode == 0, down.stdout + down.stderr
            for i in (1, 2):
                wait_for(lambda i=i: not bed.hstream_pids(i), 10, f"host {i} to be empty")
    finally:
        shutil.rmtree(keys_dir, ignore_errors=True)


TASK_USER = "hstask"
WHO_MAP = """#!/bin/sh
id -u > "$UID_DIR/$mapreduce_task_attempt_id"
exec {python} {mapper}
"""


def test_tasks_run_as_task_user(bed: Bed, data: Path) -> None:
    """Workers run as root, `[workers] task_user` runs every task as that unprivileged user
    (shared_fs = yes: the worker hands each attempt its output directory); same output."""
    require(shutil.which("useradd") is not None, "needs useradd")
    require(os.path.exists("/usr/bin/python3"), "needs /usr/bin/python3 (a python the task "
            "user can run: this one lives below /root)")
    with system_user(TASK_USER) as user, public_dir("hstream-taskuser-") as pub:
        shutil.copytree(data / "input", pub / "input")
        (pub / "uids").mkdir(mode=0o777)
        (pub / "uids").chmod(0o777)
        who = pub / "whomap.sh"
        who.write_text(WHO_MAP.format(python="/usr/bin/python3", mapper=EXAMPLE / "map.py"))
        who.chmod(0o755)
        ini = write_ini(pub / "cluster.ini", manager=bed.manager_address,
                        hosts=[f"root@{bed.address(i)}" for i in range(1, HOSTS + 1)],
                        keys=bed.keys, python="/usr/bin/python3", workdir=pub / "work")
        ini.write_text(ini.read_text().replace("[ssh]", f"task_user = {TASK_USER}\n\n[ssh]"))
        env = {**os.environ, "HSTREAM_CONFIG": str(ini)}

        def hs(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "hstream", *args], env=env, cwd=pub,
                                  capture_output=True, text=True, timeout=120, check=False)
        try:
            up = hs("cluster", "up")
            assert up.returncode == 0, up.stdout + up.stderr
            job = hs("jar-free", "-mapper", str(who), "-reducer", REDUCER, "-numReduceTasks",
                     "3", "-input", str(pub / "input"), "-output", str(pub / "out"),
                     "-cmdenv", f"UID_DIR={pub / 'uids'}")
            assert job.returncode == 0, job.stderr
            assert_same_output(pub / "out", _expected(data))
            uids = {p.read_text().strip() for p in (pub / "uids").iterdir()}
            assert len(list((pub / "uids").iterdir())) >= 12 and uids == {str(user.pw_uid)}
            assert {p.stat().st_uid for p in (pub / "out").glob("part-*")} == {user.pw_uid}
        finally:
            down = hs("cluster", "down")
        assert down.returncode == 0, down.stdout + down.stderr
        for i in range(1, HOSTS + 1):
            wait_for(lambda i=i: not bed.hstream_pids(i), 10, f"host {i} to be empty")


def test_a_mappers_background_children_end_with_their_attempts(cluster: Cluster,
                                                               tmp_path: Path) -> None:
    """Issue 9, item 10 on a cluster: a detached child and one that holds the mapper's output
    are both gone after the job, and neither holds it up until the task timeout."""
    import psutil

    data = tmp_path / "in.txt"
    data.write_text("".join(f"line {i}\n" for i in range(200)))
    mapper = tmp_path / "bg.sh"
    mapper.write_text("#!/bin/sh\nsleep 1005 >/dev/null 2>&1 &\nsleep 1006 &\nexec cat\n")
    mapper.chmod(0o755)
    cluster.up()
    started = time.monotonic()
    job = cluster.hs("jar-free", "-input", str(data), "-output", str(tmp_path / "out"),
                     "-mapper", str(mapper), "-reducer", "cat", timeout=120)
    assert job.returncode == 0, job.stderr
    assert time.monotonic() - started < 60
    left = [p.pid for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [])[-2:] in (["sleep", "1005"], ["sleep", "1006"])]
    assert left == [], left
    cluster.down()
