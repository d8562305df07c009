"""What failures cost: detection latency, and the wall time a worker lost mid-job adds.

1. Detection. A local cluster with the given heartbeats (default: hstream's, 1 s and
   10 missed). kill -9 one worker: its TCP connection breaks, so the manager learns
   at once. SIGSTOP another: silent, only the missing heartbeats tell. Each time
   from the signal to the manager's status saying "dead".
2. Cost. Word count (bench/wc_map.py, bench/wc_reduce.py) on the bench corpus
   (bench/corpus.py, 50 MB by default), on a fresh local cluster each run:
   undisturbed; with kill -9 of a worker running a map once half the maps are done;
   and with kill -9 of a worker just as the reducers start (its finished map
   outputs are lost and run again). Wall seconds of each; every output is checked
   equal to the undisturbed one.

Usage: python3 bench/faults.py [--size MB] [--workers N] [--reduces R] [--interval S] [--missed N]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import corpus  # noqa: E402

from hstream.cluster.client import Client, Outcome  # noqa: E402
from hstream.cluster.localcluster import LocalCluster  # noqa: E402
from hstream.hadoop import streaming  # noqa: E402


def status(c: LocalCluster) -> dict[str, Any]:
    return c.status()  # type: ignore[return-value]


def kill_worker(c: LocalCluster, worker_id: str, sig: int = signal.SIGKILL) -> float:
    """Signal a worker (SIGKILL: with its task processes); the monotonic time it was sent."""
    proc = psutil.Process(c.procs[1 + int(worker_id.removeprefix("local"))].pid)
    family = [proc, *proc.children(recursive=True)] if sig == signal.SIGKILL else [proc]
    sent = time.monotonic()
    for p in family:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    return sent


def wait_dead(c: LocalCluster, worker_id: str, since: float, limit: float = 120) -> float:
    while time.monotonic() - since < limit:
        if not {w["id"]: w for w in status(c)["workers"]}[worker_id]["alive"]:
            return time.monotonic() - since
        time.sleep(0.01)
    raise RuntimeError(f"{worker_id} not declared dead after {limit} s")


def detection(interval: float, missed: int) -> None:
    with LocalCluster(workers=3, heartbeat_interval=interval, heartbeat_missed=missed) as c:
        time.sleep(interval * 1.5)  # a few heartbeats in
        eof = wait_dead(c, "local0", kill_worker(c, "local0"))
        silent = wait_dead(c, "local1", kill_worker(c, "local1", signal.SIGSTOP))
        os.kill(c.procs[2].pid, signal.SIGCONT)
    print(f"detection (heartbeat {interval:g} s, dead after {missed} missed = "
          f"{interval * missed:g} s):")
    print(f"  kill -9 (TCP connection breaks): {eof * 1000:.0f} ms")
    print(f"  SIGSTOP (silent, heartbeats stop): {silent:.2f} s")


def wordcount(data: str, out: str, workers: int, reduces: int, interval: float, missed: int,
              chaos: str | None) -> tuple[Outcome, float, str]:
    """One run; `chaos` is None, "map" or "shuffle". (outcome, wall seconds, what was done)."""
    argv = ["-input", data, "-output", out, "-mapper", os.path.join(HERE, "wc_map.py"),
            "-reducer", os.path.join(HERE, "wc_reduce.py"), "-numReduceTasks", str(reduces)]
    spec = streaming.parse(argv).spec
    with LocalCluster(workers=workers, heartbeat_interval=interval, heartbeat_missed=missed) as c:
        result: list[Outcome] = []
        started = time.monotonic()
        t = threading.Thread(target=lambda: result.append(
            Client("127.0.0.1", c.port, c.secret).run(spec, out=io.StringIO())))
        t.start()
        note = "undisturbed"
        while chaos and t.is_alive():
            s = status(c)
            job = s["jobs"][-1] if s["jobs"] else None
            running = {a: w["id"] for w in s["workers"] for a in w["running"] if w["alive"]}
            maps = sorted({w for a, w in running.items() if "_m_" in a})
            reduces_running = any("_r_" in a for a in running)
            if chaos == "map" and job and job["map"] >= 0.5 and maps:
                victim = random.Random(1).choice(maps)
            elif chaos == "shuffle" and job and job["map"] == 1.0 and reduces_running:
                victim = sorted(running.values())[0]
            else:
                time.sleep(0.02)
                continue
            kill_worker(c, victim)
            note = (f"kill -9 {victim} at {time.monotonic() - started:.1f} s "
                    f"({'half the maps done' if chaos == 'map' else 'reducers starting'})")
            break
        t.join()
        wall = time.monotonic() - started
    return result[0], wall, note


def read_parts(out: str) -> bytes:
    return b"".join(open(os.path.join(out, p), "rb").read()
                    for p in sorted(os.listdir(out)) if p.startswith("part-"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=50, help="corpus MB (default 50)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--reduces", type=int, default=2)
    p.add_argument("--interval", type=float, default=1.0, help="heartbeat interval (s)")
    p.add_argument("--missed", type=int, default=10, help="missed heartbeats = dead")
    p.add_argument("--repeat", type=int, default=1, help="runs of each case (median shown)")
    p.add_argument("--skip-detection", action="store_true")
    args = p.parse_args(argv)
    if not args.skip_detection:
        detection(args.interval, args.missed)
    data = corpus.generate(args.size, 1, 4)
    tmp = tempfile.mkdtemp(prefix="hstream-faults-")
    try:
        print(f"word count, {args.size} MB, {args.workers} workers x 1 slot, "
              f"{args.reduces} reduces, {os.cpu_count()} CPUs:")
        baseline: list[bytes] | None = None
        walls: dict[str | None, list[float]] = {}
        for n in range(args.repeat):
            for chaos in (None, "map", "shuffle"):
                out = os.path.join(tmp, f"out-{chaos}-{n}")
                outcome, wall, note = wordcount(data, out, args.workers, args.reduces,
                                                args.interval, args.missed, chaos)
                assert outcome.state == "succeeded", outcome.message
                parts = sorted(read_parts(out).splitlines())
                shutil.rmtree(out)
                if baseline is None:
                    baseline = parts
                assert parts == baseline, "output differs from the undisturbed run"
                walls.setdefault(chaos, []).append(wall)
                launched = outcome.counters.get("Job Counters", {})
                print(f"  {note:<48} {wall:6.1f} s   maps launched "
                      f"{launched.get('Launched map tasks')}, reduces launched "
                      f"{launched.get('Launched reduce tasks')}", flush=True)
        base = statistics.median(walls[None])
        for chaos, label in ((None, "undisturbed"), ("map", "kill -9 with half the maps done"),
                             ("shuffle", "kill -9 as the reducers start")):
            med = statistics.median(walls[chaos])
            extra = f"  +{med - base:.1f} s (x{med / base:.2f})" if chaos else ""
            print(f"  median of {args.repeat}, {label:<34} {med:6.1f} s{extra}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
