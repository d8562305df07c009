#!/usr/bin/env python3
"""Word count that misbehaves on purpose, as MIT 6.824's crash plugin: `crash_wc.py map|reduce`.

Knobs (environment, seeded by the task and attempt number, not the job id, which is new every
run: every re-run of a task decides afresh, and a seed gives the same crashes every run):
  CRASH_SEED      set: exit 1 on ~1/3 of attempts (after a random share of the input,
                  so partial output exists) and sleep up to SLEEP_MAX s on another ~1/3
  SLEEP_MAX       seconds, default 1.5
  DELAY_MAX       sleep a random 0..DELAY_MAX s before starting (widens phases)
  LINGER_MAX      sleep a random LINGER_MAX/3..LINGER_MAX s after writing all output (a window in
                  which the output exists but is not committed yet)
  MARKERS         directory: one file `<attempt id>@<worker>` per attempt that started
  HOLD            `kind:partition:attempt:FILE,...` (* matches any): wait for FILE
  FAIL_ALWAYS     set: write it to stderr and exit 3 (a deterministic failure)
With none set it is a plain word count: the serial reference.
"""
import os
import random
import re
import sys
import time

kind = sys.argv[1]
attempt_id = os.environ.get("mapreduce_task_attempt_id", "serial")
partition = os.environ.get("mapreduce_task_partition", "0")
where = re.search(r"/(worker\d+)/", os.getcwd())
worker = where.group(1) if where else "serial"

if os.environ.get("MARKERS"):
    open(os.path.join(os.environ["MARKERS"], f"{attempt_id}@{worker}"), "w").close()

if os.environ.get("FAIL_ALWAYS"):
    sys.stdin.read(100)
    print("reading record 1", file=sys.stderr)
    print(f"fatal: {os.environ['FAIL_ALWAYS']}", file=sys.stderr)
    sys.exit(3)

for rule in filter(None, os.environ.get("HOLD", "").split(",")):
    k, part, attempt, path = rule.split(":", 3)
    if k == kind and part in ("*", partition) and attempt in ("*", attempt_id.rsplit("_", 1)[1]):
        while not os.path.exists(path):
            time.sleep(0.05)

which = re.search(r"[mr]_\d+_\d+$", attempt_id)  # m_000003_0 of attempt_<job>_m_000003_0
rng = random.Random(f"{os.environ.get('CRASH_SEED', '')}:{which.group() if which else attempt_id}")
if os.environ.get("DELAY_MAX"):
    time.sleep(rng.uniform(0, float(os.environ["DELAY_MAX"])))
crash_after = None
if os.environ.get("CRASH_SEED"):
    roll = rng.random()
    if roll < 1 / 3:
        crash_after = rng.randrange(0, 50)
    elif roll < 2 / 3:
        time.sleep(rng.uniform(0, float(os.environ.get("SLEEP_MAX", "1.5"))))


def lines():
    for n, line in enumerate(sys.stdin):
        if n == crash_after:
            sys.stdout.flush()
            print(f"crash_wc: crashing on purpose at line {n}", file=sys.stderr)
            os._exit(1)
        yield line
    if crash_after is not None:  # short input: crash at the end instead
        sys.stdout.flush()
        os._exit(1)


if kind == "map":
    for line in lines():
        for word in line.split():
            print(f"{word}\t1")
else:
    current, total = None, 0
    for line in lines():
        key, _, value = line.rstrip("\n").partition("\t")
        if key != current:
            if current is not None:
                print(f"{current}\t{total}")
            current, total = key, 0
        total += int(value or 0)
    if current is not None:
        print(f"{current}\t{total}")

if os.environ.get("LINGER_MAX"):
    sys.stdout.flush()
    linger = float(os.environ["LINGER_MAX"])
    time.sleep(rng.uniform(linger / 3, linger))  # never so short that the window closes unseen
