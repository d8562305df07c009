"""A job's shape over time: how busy the machine is and which processes use it, every step.

    python3 bench/timeline.py [--step S] -- COMMAND...

Runs COMMAND (from bench/, with the benchmark's environment: no PYTHONUNBUFFERED) and every
`--step` seconds (default 0.5) prints the machine's busy share (200% is two cores) and the
CPU each role took in that step (roles as `run.py` names them: mapper, reducer, sort,
task(map), worker, ...). Where a phase leaves a core idle, or one role crowds another, shows
at a glance; `run.py`'s totals cannot show when. For example:

    python3 bench/timeline.py -- hstream jar-free -input data/zipf-256mb-s1-f4-np \\
        -output /tmp/out -mapper wc_map.py -reducer wc_reduce.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import psutil
from run import HERE, bench_env, role_of


def roles_cpu(root: psutil.Process, seen: dict[tuple[int, float], float]) -> dict[str, float]:
    """CPU seconds each role took since the last call (`seen` keeps each process's total, by
    pid and start time as in `run.py`: a job of many short tasks reuses pids); a process that
    ended since then counts only up to its last sample."""
    took: dict[str, float] = {}
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return took
    for proc in procs:
        try:
            key = (proc.pid, proc.create_time())
            times = proc.cpu_times()
            role = role_of(proc, root.pid)
        except psutil.Error:
            continue
        cpu = times.user + times.system
        took[role] = took.get(role, 0.0) + cpu - seen.get(key, 0.0)
        seen[key] = cpu
    return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--step", type=float, default=0.5, help="seconds between lines (0.5)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given")
    proc = subprocess.Popen(command, env=bench_env(), cwd=HERE, stdout=subprocess.DEVNULL)
    root, start = psutil.Process(proc.pid), time.monotonic()
    seen: dict[tuple[int, float], float] = {}
    psutil.cpu_percent()  # the machine's busy share is measured from here, step by step
    cores = psutil.cpu_count() or 1
    while proc.poll() is None:
        time.sleep(args.step)
        busy = psutil.cpu_percent() * cores  # 200% is two cores
        took = sorted(roles_cpu(root, seen).items(), key=lambda kv: -kv[1])
        shares = " ".join(f"{role}={cpu:.2f}" for role, cpu in took if cpu >= 0.05)
        print(f"{time.monotonic() - start:6.1f} s  busy {busy:4.0f}%  {shares}", flush=True)
    print(f"exit {proc.returncode} after {time.monotonic() - start:.1f} s")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
