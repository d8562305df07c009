"""Many small files against one file of the same bytes: hstream's cost per map (issue 15).

    python3 bench/smallfiles.py [--files 5000] [--kb 1] [--repeat 2]

Both jobs run `hstream jar-free -input DIR -output OUT -mapper cat -reducer cat` on the
default embedded cluster: one over FILES seeded files of about KB kilobytes each (one map
each, as Hadoop's TextInputFormat makes them), one over a single file holding the same
bytes. Rounds alternate the two, 30 s apart: a burst of file deletions slows this
machine's file creation for a while afterwards. For each run: wall and CPU seconds, and
hstream's own CPU (its client, daemons and task runners, sampled as `bench/run.py` does).
"Own over the rest" divides that by everything else in the run (the user's `cat` and the
kernel's work to start it, a fixed amount of work per map), so it compares runs made
while the machine ran at different speeds. The outputs must be equal line for line.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import OWN_ROLES, Measure, bench_env, hstream_argv, measure, read_output  # noqa: E402

DATA = os.path.join(HERE, "data")
WORDS = [f"w{n}" for n in range(3000)]


def generate(files: int, kb: int, seed: int = 1) -> tuple[str, str]:
    """DATA/small-FILES-KBk-sSEED/{many,one}: the small files and their concatenation."""
    root = os.path.join(DATA, f"small-{files}-{kb}k-s{seed}")
    if os.path.exists(root + ".complete"):
        return os.path.join(root, "many"), os.path.join(root, "one")
    shutil.rmtree(root, ignore_errors=True)
    many, one = os.path.join(root, "many"), os.path.join(root, "one")
    os.makedirs(many)
    os.makedirs(one)
    rng = random.Random(seed)
    with open(os.path.join(one, "all.txt"), "w") as whole:
        for i in range(files):
            lines, size = [], 0
            while size < kb * 1000:
                line = " ".join(rng.choices(WORDS, k=8)) + "\n"
                lines.append(line)
                size += len(line)
            with open(os.path.join(many, f"f{i:06d}.txt"), "w") as f:
                f.writelines(lines)
            whole.writelines(lines)
    open(root + ".complete", "w").close()
    return many, one


def run(name: str, data: str, workdir: str) -> tuple[Measure, list[bytes]]:
    out = os.path.join(workdir, name)
    argv = [*hstream_argv(), "jar-free", "-input", data, "-output", out,
            "-mapper", "cat", "-reducer", "cat"]
    m = measure(name, argv, bench_env(), workdir, os.path.join(workdir, f"{name}.log"))
    got = read_output(out) if m.status == 0 else []
    shutil.rmtree(out, ignore_errors=True)
    return m, got


def report(m: Measure, maps: int | None = None) -> str:
    own = sum(c for r, c in m.role_cpu.items() if r in OWN_ROLES)
    rest = max(m.cpu - own, 1e-9)
    each = f" ({1000 * own / maps:.2f} ms a map)" if maps else ""
    return (f"  {m.name:<5} wall {m.wall:6.2f} s  CPU {m.cpu:5.1f} s  hstream's own "
            f"{own:5.1f} s{each}  own over the rest {own / rest:.2f}"
            + (f"  FAILED: {m.note}" if m.status else "")
            + "\n    CPU s by process: " + ", ".join(
                f"{role} {cpu:.1f}" for role, cpu in sorted(m.role_cpu.items(),
                                                            key=lambda rc: -rc[1])))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=5000, help="small files (default 5000)")
    p.add_argument("--kb", type=int, default=1, help="kilobytes a file (default 1)")
    p.add_argument("--repeat", type=int, default=2, help="rounds (default 2)")
    p.add_argument("--pause", type=float, default=30, help="seconds between runs (default 30)")
    args = p.parse_args(argv)
    many, one = generate(args.files, args.kb)
    print(f"{args.files} files of about {args.kb} KB in {many}; the same bytes in {one}")
    failed = False
    with tempfile.TemporaryDirectory(prefix="hstream-small-") as workdir:
        for n in range(args.repeat):
            small, small_out = run("many", many, workdir)
            time.sleep(args.pause)
            whole, whole_out = run("one", one, workdir)
            print(f"round {n + 1}: many files took {small.wall / whole.wall:.1f} times one "
                  "file's wall time", flush=True)
            print(report(small, args.files))
            print(report(whole))
            if small.status or whole.status or small_out != whole_out:
                print("  outputs differ or a job failed")
                failed = True
            if n + 1 < args.repeat:
                time.sleep(args.pause)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
