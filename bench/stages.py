"""Where a word count task's time goes, stage by stage, outside the cluster.

Replays the data path of one map task and one reduce task with hstream's own
functions on the benchmark corpus, each stage timed alone (wall seconds, CPU of
this Python process, CPU of child processes):

    map:     mapper alone | Spiller (GNU sort runs) | sort -m of the runs |
             partition.route_sorted into R partition files
    reduce:  sort -m of every map's partition 0 | partition.count_groups | reducer

Stages that run concurrently in a real task (mapper and spill sorts, merge and
routing, merge and reducer) are run one after the other here, so each number is
that stage's own cost. Fetching over TCP is not replayed: it shows in the real
tasks' task.log (`make bench` prints those laps).

Usage: python3 bench/stages.py [--size MB] [--seed N] [--reduces R] [--buffer MB]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # so `import corpus` finds bench/corpus.py however this is run
import corpus  # noqa: E402

from hstream.task import partition, sorting  # noqa: E402

CHUNK = 1 << 20


class Lap:
    """Wall, own CPU and children's CPU of one stage."""

    def __init__(self) -> None:
        self.t = time.monotonic()
        self.own = self._cpu(resource.RUSAGE_SELF)
        self.kids = self._cpu(resource.RUSAGE_CHILDREN)

    @staticmethod
    def _cpu(who: int) -> float:
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    def done(self) -> tuple[float, float, float]:
        return (time.monotonic() - self.t, self._cpu(resource.RUSAGE_SELF) - self.own,
                self._cpu(resource.RUSAGE_CHILDREN) - self.kids)


ROWS: list[tuple[str, float, float, float, str]] = []


def stage(name: str, fn: Callable[[], str | None]) -> None:
    lap = Lap()
    note = fn() or ""
    wall, own, kids = lap.done()
    ROWS.append((name, wall, own, kids, note))
    print(f"  {name:<44} {wall:6.2f} {own:6.2f} {kids:6.2f}  {note}", flush=True)


def chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(CHUNK), b"")


def line_chunks(stream_chunks: Iterator[bytes]) -> Iterator[bytes]:
    tail = b""
    for data in stream_chunks:
        data = tail + data
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if cut:
            yield data[:cut]
    if tail:
        yield tail + b"\n"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("PYTHONUNBUFFERED", None)
    return e


def run_to_file(argv: list[str], src: str | None, dst: str, extra: dict[str, str] | None = None
                ) -> None:
    with open(src or os.devnull, "rb") as fin, open(dst, "wb") as fout:
        subprocess.run(argv, stdin=fin, stdout=fout, check=True, env={**env(), **(extra or {})})


def map_task(split: str, work: str, reduces: int, buffer: int, verbose: bool) -> list[str]:
    """One map task's stages; returns its partition files."""
    order = sorting.SortOrder()
    mapout = os.path.join(work, "map.out")
    say = stage if verbose else (lambda name, fn: fn())
    say("map: mapper alone (split -> file)",
        lambda: run_to_file([os.path.join(HERE, "wc_map.py")], split, mapout))
    lines = sum(c.count(b"\n") for c in chunks(mapout))
    spiller = sorting.Spiller(order, buffer, work)
    holder: dict[str, list[sorting.Run]] = {}

    def spill() -> str:
        for c in chunks(mapout):
            spiller.write(c)
        holder["runs"] = spiller.close()
        return f"{len(holder['runs'])} runs of {buffer >> 20} MB buffer, {lines} lines"

    say("map: Spiller (sort runs)", spill)
    runs = holder["runs"]
    merged = os.path.join(work, "merged")
    if len(runs) > 1:
        argv = sorting.merge_command(order, runs, buffer, work)
        say("map: sort -m of the runs", lambda: run_to_file(argv, None, merged, sorting.SORT_ENV))
    else:
        os.replace(runs[0].path, merged)
    parts = [os.path.join(work, f"part{r}") for r in range(reduces)]

    def route() -> str:
        with contextlib.ExitStack() as stack:
            sinks = [stack.enter_context(open(p, "wb")) for p in parts]
            keys = sum(partition.route_sorted(buf, order.key, sinks)
                       for buf in line_chunks(chunks(merged)))
        return f"{keys} key runs"

    say("map: partition.route_sorted", route)
    os.unlink(mapout)
    os.unlink(merged)
    for r in runs:
        if os.path.exists(r.path):
            os.unlink(r.path)
    return parts


def reduce_task(inputs: list[str], work: str, buffer: int) -> None:
    order = sorting.SortOrder()
    runs = [sorting.Run(p, False) for p in inputs]
    merged = os.path.join(work, "reduce.in")
    argv = sorting.merge_command(order, runs, buffer, work)
    stage(f"reduce: sort -m of {len(inputs)} map outputs",
          lambda: run_to_file(argv, None, merged, sorting.SORT_ENV))

    def groups() -> str:
        n, last = 0, None
        for buf in line_chunks(chunks(merged)):
            g, last = partition.count_groups(buf, order.key, last)
            n += g
        return f"{n} groups"

    stage("reduce: partition.count_groups", groups)
    uargv = sorting.merge_command(order, [sorting.Run(p, True) for p in inputs], 1 << 20, work)
    stage("reduce: sort -m -u (group count, side)",
          lambda: run_to_file(uargv + ["--unique"], None, os.devnull, sorting.SORT_ENV))
    stage("reduce: reducer alone (file -> file)",
          lambda: run_to_file([os.path.join(HERE, "wc_reduce.py")], merged,
                              os.path.join(work, "reduce.out")))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="stage-by-stage costs of one map and one reduce")
    p.add_argument("--size", type=int, default=64, help="corpus MB (default 64)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--reduces", type=int, default=1, help="partitions per map (default 1)")
    p.add_argument("--buffer", type=int, default=sorting.DEFAULT_BUFFER >> 20,
                   help="sort buffer MB (default hstream's)")
    args = p.parse_args(argv)
    data = corpus.generate(args.size, args.seed, args.files)
    splits = sorted(os.path.join(data, n) for n in os.listdir(data) if not n.startswith(("_", ".")))
    work = tempfile.mkdtemp(prefix="hstream-stages-", dir=os.path.join(HERE, "data"))
    buffer = args.buffer << 20
    try:
        print(f"corpus {data}; one split = {os.path.getsize(splits[0]) >> 20} MB; "
              f"{args.reduces} partitions; PYTHONUNBUFFERED unset")
        print(f"  {'stage':<44} {'wall':>6} {'py cpu':>6} {'child':>6}  (seconds)")
        inputs = []
        for i, split in enumerate(splits):  # map 0 timed; the others only make reduce inputs
            d = os.path.join(work, f"m{i}")
            os.makedirs(d)
            inputs.append(map_task(split, d, args.reduces, buffer, i == 0)[0])
        os.makedirs(os.path.join(work, "r0"))
        reduce_task(inputs, os.path.join(work, "r0"), buffer)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
