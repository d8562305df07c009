"""The manager dies (kill -9) and comes back: jobs resume where they were (issue 13).

A cluster from `hstream cluster up` over SSH (an sshd on loopback), a wordcount job
followed by `hstream jar-free`, and the manager killed at a seeded random point: during
the maps, the reduces, or the commit. `cluster up` (or the `[manager] restart`
supervisor) brings it back; the client re-attaches; the output must equal the serial
pipeline's, no finished map may run again (the journal names one winning attempt per
map), and at no moment may the output exist without being complete.
HSTREAM_RESTART_TRIALS sets the number of trials (20; `make chaos` runs 100).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    assert_same_output,
    reference,
    require,
    run_hstream,
    wait_for,
)
from testbed import LoopbackHost, have_sshd, write_ini

from hstream.cluster import journal

EXAMPLE = ROOT / "examples" / "wordcount"
TRIALS = int(os.environ.get("HSTREAM_RESTART_TRIALS", "20"))
MAPS, REDUCES, SLOTS = 4, 2, 2


@dataclass
class Rig:
    host: LoopbackHost
    ini: Path
    tmp: Path
    inputs: list[Path]
    mapper: str
    reducer: str
    expected: bytes

    @property
    def workdir(self) -> Path:
        return self.tmp / "work" / "manager"

    def hs(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return run_hstream(*args, env={"HSTREAM_CONFIG": str(self.ini)}, cwd=self.tmp,
                           timeout=timeout)

    def submit(self, out: Path, *extra: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k != "HSTREAM_CONFIG"}
        env["HSTREAM_CONFIG"] = str(self.ini)
        return subprocess.Popen(
            [sys.executable, "-m", "hstream", "jar-free", "-mapper", self.mapper,
             "-reducer", self.reducer, "-input", str(self.tmp / "in"), "-output", str(out),
             "-numReduceTasks", str(REDUCES), "-D", f"mapreduce.job.maps={MAPS}",
             "-D", "mapreduce.map.speculative=false", *extra],  # so map attempts count exactly
            cwd=self.tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def manager_pid(self) -> int:
        state = json.loads((self.workdir / "cluster.json").read_text())
        return int(state["pid"])

    def records(self) -> list[dict[str, object]]:
        return journal.read(str(self.workdir / "journal"))[0]


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    why = have_sshd()
    require(why is None, why or "")
    tmp = tmp_path_factory.mktemp("restart")
    text = (EXAMPLE / "input" / "hamlet.txt").read_text()
    (tmp / "in").mkdir()
    inputs = []
    for i in range(MAPS):
        p = tmp / "in" / f"part{i}.txt"
        p.write_text(text[i * len(text) // MAPS:(i + 1) * len(text) // MAPS] + "\n")
        inputs.append(p)
    mapper = _script(tmp / "map.sh", f"sleep 0.2\nexec {sys.executable} {EXAMPLE / 'map.py'}")
    reducer = _script(tmp / "reduce.sh", f"sleep 0.2\nexec {EXAMPLE / 'reduce.sh'}")
    with LoopbackHost(tmp_path_factory.mktemp("sshd")) as host:
        host.keys.known_hosts.write_text("")
        host.keys.trust("127.0.0.1", host.sshd.port)
        ini = write_ini(tmp / "cluster.ini", manager="127.0.0.1", keys=host.keys,
                        python=sys.executable, hosts=[f"root@127.0.0.1:{host.sshd.port}"],
                        workdir=tmp / "work", slots=SLOTS, interval=0.2, missed=15)
        r = Rig(host, ini, tmp, inputs, mapper, reducer,
                reference(sorted(inputs), mapper, reducer, tmp))
        up = r.hs("cluster", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            yield r
        finally:
            down = r.hs("cluster", "down")
            assert down.returncode == 0, down.stdout + down.stderr


def _map_done(records: list[dict[str, object]], job: str) -> dict[int, str]:
    """map index -> winning attempt, asserting no map was journaled done twice."""
    done: dict[int, str] = {}
    for r in records:
        if r.get("t") == "done" and r.get("job") == job and r.get("kind") == "map":
            index = int(str(r["index"]))
            assert index not in done, f"map {index} ran again: {done[index]}, {r['attempt']}"
            done[index] = str(r["attempt"])
    return done


def _submits(rig: Rig) -> list[str]:
    return [str(r["job"]) for r in rig.records() if r.get("t") == "submit"]


def _job_id(rig: Rig, known: int) -> str:
    """The job submitted after the `known` first ones."""
    def find() -> str | None:
        subs = _submits(rig)
        return subs[known] if len(subs) > known else None
    return str(wait_for(find, 30, "the job's submission in the journal"))


def _kill_point(rig: Rig, job: str, rnd: random.Random) -> str:
    """Wait for a seeded random moment of the job, and name it."""
    phase = rnd.choice(["map", "map", "reduce", "commit"])
    if phase == "map":
        k = rnd.randrange(MAPS)
        wait_for(lambda: len(_map_done(rig.records(), job)) >= k, 60, f"{k} maps done")
        time.sleep(rnd.uniform(0, 0.3))
        return f"map ({k}+ done)"
    if phase == "reduce":
        wait_for(lambda: len(_map_done(rig.records(), job)) == MAPS, 60, "maps done")
        time.sleep(rnd.uniform(0, 0.5))
        return "reduce"
    reduces = lambda: sum(r.get("t") == "done" and r.get("kind") == "reduce"  # noqa: E731
                          and r.get("job") == job for r in rig.records())
    wait_for(lambda: reduces() >= REDUCES - 1, 60, "reduces nearly done")
    wait_for(lambda: reduces() == REDUCES, 60, "reduces done", interval=0.005)
    return "commit"


def _check_never_partial(out: Path, expected: bytes) -> None:
    """Output that exists is complete, with its _SUCCESS."""
    if out.exists():
        assert_same_output(out, expected)


def _first_progress_after(rig: Rig, job: str, generation: int) -> bool:
    """Has the restarted manager journaled work for the job (a task done, or its end)?"""
    seen = False
    for r in rig.records():
        if r.get("t") == "end" and r.get("job") == job:  # it had ended before the kill
            return True
        if r.get("t") == "gen" and r.get("gen") == generation:
            seen = True
        elif seen and r.get("job") == job and r.get("t") in ("done", "end", "commit"):
            return True
    return False


def _trial(rig: Rig, seed: int, out: Path) -> tuple[float, int]:
    """One seeded kill and recovery; returns (seconds to recover, map attempts re-run)."""
    rnd = random.Random(seed)
    known = len(_submits(rig))
    client = rig.submit(out)
    try:
        job = _job_id(rig, known)
        where = _kill_point(rig, job, rnd)
        before = _map_done(rig.records(), job)
        gens = [int(str(r["gen"])) for r in rig.records() if r.get("t") == "gen"]
        os.kill(rig.manager_pid(), signal.SIGKILL)
        killed = time.monotonic()
        _check_never_partial(out, rig.expected)
        up = rig.hs("cluster", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "worker already running" in up.stdout, _logs(rig)  # it outlived the manager
        wait_for(lambda: _first_progress_after(rig, job, max(gens) + 1), 60,
                 f"the job progressing after the restart (seed {seed}, killed at {where})")
        recovered = time.monotonic() - killed
        stdout, stderr = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, f"seed {seed}, killed at {where}: {stderr}"
    assert "map 100% reduce 100%" in stderr and "Counters:" in stderr, stderr
    assert_same_output(out, rig.expected)
    after = _map_done(rig.records(), job)  # asserts: no map journaled done twice
    assert {i: a for i, a in after.items() if i in before} == before
    redone = _map_starts(rig, job) - MAPS
    assert 0 <= redone <= SLOTS, f"{redone} map attempts re-run; at most those running may be"
    return recovered, redone


def _logs(rig: Rig) -> str:
    """The end of every worker log, for a failure's message."""
    return "\n".join(f"{p}:\n" + "".join(p.read_text(errors="replace").splitlines(True)[-15:])
                     for p in sorted((rig.tmp / "work" / "workers").glob("*/*.log")))


def _map_starts(rig: Rig, job: str) -> int:
    """Map attempts the workers started for the job (their logs name each one)."""
    mark = f"started attempt_{job.removeprefix('job_')}_m_"
    return sum(p.read_text(errors="replace").count(mark)
               for p in (rig.tmp / "work" / "workers").glob("*/worker.log"))


def test_jobs_survive_manager_kills_at_random_points(rig: Rig) -> None:
    times, redone = [], []
    for seed in range(TRIALS):
        t, r = _trial(rig, seed, rig.tmp / f"out{seed}")
        times.append(t)
        redone.append(r)
    times.sort()
    print(f"{TRIALS} trials: recovery (kill -> job progressing) median {times[len(times) // 2]:.2f}"
          f" s, max {times[-1]:.2f} s; map attempts re-run: total {sum(redone)}, max "
          f"{max(redone)} per job of {MAPS} maps")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_the_supervisor_restarts_a_killed_manager_and_the_job_completes(rig: Rig) -> None:
    down = rig.hs("cluster", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    rig.ini.write_text(rig.ini.read_text().replace("[manager]\n", "[manager]\nrestart = yes\n"))
    up = rig.hs("cluster", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    supervisor = rig.manager_pid()
    out = rig.tmp / "out"
    client = rig.submit(out)
    try:
        job = _job_id(rig, 0)
        wait_for(lambda: len(_map_done(rig.records(), job)) >= 1, 60, "a map done")
        (manager,) = _children(supervisor)
        os.kill(manager, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: _first_progress_after(rig, job, 2), 60, "the job progressing")
        print(f"supervisor: job progressing {time.monotonic() - killed:.2f} s after the kill")
        stdout, stderr = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, stderr
    assert_same_output(out, rig.expected)
    _map_done(rig.records(), job)
    assert _children(supervisor) != [manager]


def test_job_status_finds_a_background_job_after_a_restart(rig: Rig) -> None:
    out = rig.tmp / "out"
    sub = rig.hs("jar-free", "-background", "-mapper", rig.mapper, "-reducer", rig.reducer,
                 "-input", str(rig.tmp / "in"), "-output", str(out))
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().splitlines()[-1]
    wait_for(lambda: _map_done(rig.records(), job), 60, "a map done")
    os.kill(rig.manager_pid(), signal.SIGKILL)
    up = rig.hs("cluster", "up")
    assert up.returncode == 0, up.stdout + up.stderr

    def succeeded() -> bool:
        status = rig.hs("job", "status", job)
        assert status.returncode == 0, status.stdout + status.stderr
        return "state: succeeded" in status.stdout
    wait_for(succeeded, 90, f"{job} to succeed after the restart", interval=0.5)
    assert_same_output(out, rig.expected)


# -- the journal and replay, in process ---------------------------------------------------


def test_a_torn_last_line_is_ignored_and_cut_off_and_generations_count_up(tmp_path: Path) -> None:
    path = str(tmp_path / "journal")
    j = journal.Journal(path)
    j.append({"t": "submit", "job": "job_1_0001", "spec": {}, "files": [], "splits": [],
              "staging": "/s"})
    j.close()
    with open(path, "ab") as f:
        f.write(b'0badc0de {"t":"end","job":"job_1_00')  # the crash, mid-write
    j = journal.Journal(path)
    assert j.generation == 2
    assert list(j.jobs()) == ["job_1_0001"] and j.jobs()["job_1_0001"].end is None
    j.append({"t": "end", "job": "job_1_0001", "state": "killed"})
    j.close()
    records, _ = journal.read(path)
    assert [r["t"] for r in records] == ["gen", "submit", "gen", "end"]
    corrupt = Path(path).read_bytes().replace(b'"killed"', b'"kilted"')
    Path(path).write_bytes(corrupt)
    assert [r["t"] for r in journal.read(path)[0]] == ["gen", "submit", "gen"]  # checksum


def _crashed_job(tmp: Path, *, commit: bool, reduces_done: int) -> tuple[str, Path, Path]:
    """A journal and staging directory as a manager killed late in a job leaves them."""
    from hstream.job import JobSpec, Split, to_dict
    out, staging = tmp / "out", tmp / ".out.hstream-job_1_0001"
    (staging / "_temporary").mkdir(parents=True)
    (staging / "part-00000").write_text("a\t1\n")
    (staging / "part-00001").write_text("b\t2\n")  # committed, but its `done` was lost
    spec = JobSpec(name="t", inputs=[str(tmp)], output=str(out), mapper="cat", reducer="cat",
                   num_reduces=2)
    path = str(tmp / "journal")
    j = journal.Journal(path)
    j.append({"t": "submit", "job": "job_1_0001", "spec": to_dict(spec), "files": [],
              "splits": [to_dict(Split(str(tmp / "in"), 0, 1))], "staging": str(staging)})
    done = [("map", 0)] + [("reduce", i) for i in range(reduces_done)]
    for kind, i in done:
        j.append({"t": "done", "job": "job_1_0001", "kind": kind, "index": i,
                  "attempt": f"attempt_1_0001_{kind[0]}_{i:06d}_0", "worker": "w",
                  "host": "127.0.0.1", "port": 9, "counters": {}, "jobc": {}})
    if commit:
        j.append({"t": "commit", "job": "job_1_0001"})
    j.close()
    return path, staging, out


def _replay(path: str) -> list[object]:
    from hstream.cluster.manager import Manager

    m = Manager("127.0.0.1", 0, 0, b"k" * 32, journal=journal.Journal(path))
    try:
        actions = m._restore(time.monotonic())
        m._execute(actions)
        m.publisher.shutdown(wait=True)
        return list(actions)
    finally:
        m.tcp.close()
        m.udp.close()
        m.journal.close()  # type: ignore[union-attr]


def test_a_crash_during_the_commit_is_finished_on_replay(tmp_path: Path) -> None:
    path, staging, out = _crashed_job(tmp_path, commit=True, reduces_done=2)
    _replay(path)
    assert not staging.exists()
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000", "part-00001"]


def test_a_part_committed_before_its_done_was_journaled_is_removed_and_rerun(
        tmp_path: Path) -> None:
    from hstream.cluster.state import Assign

    path, staging, out = _crashed_job(tmp_path, commit=False, reduces_done=1)
    actions = _replay(path)
    assert not (staging / "part-00001").exists()  # it will be committed once, by the re-run
    assert (staging / "part-00000").exists() and not out.exists()
    assert not [a for a in actions if isinstance(a, Assign)]  # no worker yet
