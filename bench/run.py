"""`make bench`: word count with hstream's local cluster vs the serial Unix pipeline.

Both sides read the same Zipf corpus (bench/corpus.py, cached in bench/data) and
run the same Python mapper and reducer (bench/wc_map.py, bench/wc_reduce.py):

    pipeline:  cat FILES | wc_map.py | LC_ALL=C sort | wc_reduce.py > out
    hstream:   hstream jar-free -input DIR -output OUT -mapper wc_map.py
                   -reducer wc_reduce.py -numReduceTasks R

For each run: wall seconds; CPU seconds (user+sys of every descendant, from
wait4); and, sampled with psutil every 0.1 s, the peak RSS of the largest
descendant and each process's role (hstream's own client/manager/worker/task
runner, the user's mapper/reducer, sort), so the report can say how CPU splits
between hstream and the user's code and how large hstream's own processes grow.
Both outputs must be equal per key. PYTHONUNBUFFERED is removed from the
environment of both sides (it makes a Python mapper about 1.9x slower).

With PEERS=1 in the environment it also runs madoop and mrjob's local runner,
installed into bench/.venv-peers on first use.

With pyspark and Java installed it also runs `hstream jar-free --runner spark` (the largest
--reduces value) on a Spark standalone cluster on 127.0.0.1, one Worker of one core per CPU,
started before the run; its start time is reported apart, and the row's CPU and roles include
the executors' processes (sampled under the Workers: they are not hstream's descendants).

Usage: python3 bench/run.py [--size MB] [--seed N] [--reduces 1,2] [--workers N] [--keep]
                            [--no-spark]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # so `import corpus` finds bench/corpus.py however this is run
import corpus  # noqa: E402

RESULTS = os.path.join(HERE, "results")
PEERS_VENV = os.path.join(HERE, ".venv-peers")
MAPPER = "wc_map.py"
REDUCER = "wc_reduce.py"
SAMPLE_EVERY = 0.1
OWN_ROLES = ("client", "manager", "worker", "zygote", "task(map)", "task(reduce)")
MB = 1 << 20


@dataclass
class Measure:
    name: str
    wall: float = 0.0
    cpu: float = 0.0
    max_rss: int = 0  # bytes, largest single descendant (sampled)
    status: int = 0
    role_cpu: dict[str, float] = field(default_factory=dict)
    role_rss: dict[str, int] = field(default_factory=dict)  # peak RSS of one process per role
    own_rss_sum: int = 0  # peak of hstream's own processes added up, at one instant
    note: str = ""
    ok: bool | None = None
    rundir: str = ""  # hstream's local cluster run dir (kept for its task.log stage laps)
    stages: dict[str, list[float]] = field(default_factory=dict)
    task_logs: dict[str, str] = field(default_factory=dict, repr=False)


def role_of(proc: psutil.Process, root: int) -> str:
    """Which part of the run a process is, from its command line."""
    try:
        argv = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "gone"
    if not argv:  # a zombie: keep the role it had
        return "gone"
    text = " ".join(argv)
    if "hstream.runners.sparktask" in text:
        return "task(spark)"
    if "org.apache.spark" in text or "pyspark" in text:
        return "spark"
    if "hstream.task" in text:
        root = attempt_root(proc, argv)
        if not root:
            return "zygote"
        return "task(reduce)" if "_r_" in root else "task(map)"
    if "hstream.cluster.worker" in text:
        return "worker"
    if proc.pid == root:
        if "hstream" in text:
            return "client"
        return "shell" if os.path.basename(argv[0]) == "sh" else "framework"
    if "hstream" in text and " manager" in text:
        return "manager"
    if MAPPER in text:
        return "mapper"
    if REDUCER in text:
        return "reducer"
    if argv and os.path.basename(argv[0]) == "sort":
        return "sort"
    if argv and os.path.basename(argv[0]) == "cat":
        return "cat"
    return "other"


def attempt_root(proc: psutil.Process, argv: list[str]) -> str:
    """A task runner's attempt directory: its working directory (ATTEMPT, or ATTEMPT/work once
    it started the user's command; a runner serves several map attempts of a job in turn),
    else its argument; "" for the zygote itself."""
    try:
        cwd = proc.cwd()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        cwd = ""
    if "/attempts/" in cwd:
        return os.path.dirname(cwd) if os.path.basename(cwd) == "work" else cwd
    return "" if "hstream.task.zygote" in argv else argv[-1]


class Sampler(threading.Thread):
    """Samples the process tree under `root`: role, CPU and RSS of each process."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True, name="sampler")
        self.root = root
        self.stop = threading.Event()
        self.procs: dict[tuple[int, float], dict[str, object]] = {}
        self.own_rss_sum = 0
        self.rundir = ""
        #: task.log text of every attempt seen, read while the job runs (workers delete job dirs)
        self.task_logs: dict[str, str] = {}

    def run(self) -> None:
        try:
            top = psutil.Process(self.root)
        except psutil.NoSuchProcess:
            return
        cache: dict[tuple[int, float], psutil.Process] = {}
        while not self.stop.is_set():
            try:
                tree = [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            own = 0
            for p in tree:
                try:
                    key = (p.pid, p.create_time())
                    p = cache.setdefault(key, p)
                    with p.oneshot():
                        t = p.cpu_times()
                        rss = p.memory_info().rss
                    entry = self.procs.setdefault(key, {"role": "", "cpu": 0.0, "rss": 0})
                    role = role_of(p, self.root)  # argv changes across exec (env -> python)
                    if role != "gone":
                        entry["role"] = role
                    if role == "manager" and not self.rundir:
                        self.rundir = _log_dir(p)
                    if role.startswith("task"):
                        self.task_logs.setdefault(attempt_root(p, p.cmdline()), "")
                    entry["cpu"] = t.user + t.system
                    entry["rss"] = max(int(entry["rss"]), rss)  # type: ignore[call-overload]
                    if entry["role"] in OWN_ROLES:
                        own += rss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
            self.own_rss_sum = max(self.own_rss_sum, own)
            self._read_task_logs()
            self.stop.wait(SAMPLE_EVERY)
        self._read_task_logs()

    def _read_task_logs(self) -> None:
        for root in self.task_logs:
            try:
                with open(os.path.join(root, "task.log"), errors="replace") as f:
                    self.task_logs[root] = f.read()
            except OSError:
                pass

    def by_role(self) -> tuple[dict[str, float], dict[str, int]]:
        cpu: dict[str, float] = {}
        rss: dict[str, int] = {}
        for entry in self.procs.values():
            role = str(entry["role"]) or "other"
            cpu[role] = cpu.get(role, 0.0) + float(entry["cpu"])  # type: ignore[arg-type]
            rss[role] = max(rss.get(role, 0), int(entry["rss"]))  # type: ignore[call-overload]
        return cpu, rss


def _log_dir(proc: psutil.Process) -> str:
    """The local cluster's run directory: where the manager's --log-file is."""
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return ""
    if "--log-file" in argv[:-1]:
        return os.path.dirname(argv[argv.index("--log-file") + 1])
    return ""


STAGE = re.compile(r"stage (.+?)(?: \(.*\))?: ([\d.]+) s wall, ([\d.]+) s cpu in the task runner, "
                   r"([\d.]+) s cpu in children")


def task_stages(logs: dict[str, str]) -> dict[tuple[str, str], list[tuple[float, float, float]]]:
    """Stage laps that each attempt's Stopwatch wrote into its task.log, by (kind, stage)."""
    laps: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for root, text in logs.items():
        kind = "reduce" if "_r_" in os.path.basename(root) else "map"
        for m in STAGE.finditer(text):
            laps.setdefault((kind, m.group(1)), []).append(
                (float(m.group(2)), float(m.group(3)), float(m.group(4))))
    return laps


def measure(name: str, argv: list[str], env: dict[str, str], cwd: str,
            log: str) -> Measure:
    """Run argv to completion; wall time, rusage of all its (waited-for) descendants, samples."""
    m = Measure(name)
    with open(log, "wb") as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=err, stderr=subprocess.STDOUT)
        sampler = Sampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        m.wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop.set()
        sampler.join()
    m.status = proc.returncode
    m.cpu = usage.ru_utime + usage.ru_stime
    m.role_cpu, m.role_rss = sampler.by_role()
    # Sampled, not wait4's ru_maxrss: a child forked from this process starts its
    # high-water mark at this process's own RSS (hundreds of MB after generating a corpus).
    m.max_rss = max(m.role_rss.values(), default=0)
    m.own_rss_sum = sampler.own_rss_sum
    m.rundir = sampler.rundir
    m.task_logs = sampler.task_logs
    if m.status != 0:
        m.note = f"exit status {m.status}: {_tail(log)}"
    return m


def _tail(path: str, lines: int = 1) -> str:
    try:
        with open(path, "rb") as f:
            text = f.read()[-4000:].decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " / ".join(text[-lines:]) if text else "(no output)"


def bench_env(unbuffered: bool = False) -> dict[str, str]:
    """Both sides' environment: PYTHONUNBUFFERED unset, or set (`--unbuffered`: the mapper and
    reducer then flush every line)."""
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


def read_output(path: str) -> list[bytes]:
    """Every output line, sorted: equality of these is equality per key."""
    files = [path] if os.path.isfile(path) else [
        os.path.join(path, n) for n in sorted(os.listdir(path)) if not n.startswith(("_", "."))]
    lines: list[bytes] = []
    for f in files:
        with open(f, "rb") as fh:
            lines += fh.read().splitlines()
    lines.sort()
    return lines


def run_pipeline(inputs: list[str], out: str, env: dict[str, str], logdir: str,
                 tag: str = "") -> Measure:
    script = (f"cat {' '.join(map(shlex.quote, inputs))} | ./{MAPPER} | LC_ALL=C sort"
              f" | ./{REDUCER} > {shlex.quote(out)}")
    return measure("pipeline: cat | map | sort | reduce", ["sh", "-c", script], env, HERE,
                   os.path.join(logdir, f"pipeline{tag}.log"))


def hstream_argv() -> list[str]:
    exe = shutil.which("hstream")
    return [exe] if exe else [sys.executable, "-m", "hstream"]


def run_hstream(data: str, out: str, reduces: int, workers: int | None, env: dict[str, str],
                logdir: str, tag: str = "") -> Measure:
    argv = [*hstream_argv(), "jar-free", "-input", data, "-output", out, "-mapper", MAPPER,
            "-reducer", REDUCER, "-numReduceTasks", str(reduces)]
    if workers:
        argv += ["--workers", str(workers)]
    name = f"hstream: {workers or os.cpu_count()} workers, {reduces} reduce{'s' * (reduces > 1)}"
    # cwd is bench/: the mapper and reducer are local files, shipped by name as a user's would be,
    # and no ./cluster.ini is picked up.
    m = measure(name, argv, {**env, "HSTREAM_KEEP_RUNDIR": "1"}, HERE,
                os.path.join(logdir, f"hstream-r{reduces}{tag}.log"))
    for (kind, stage), laps in sorted(task_stages(m.task_logs).items()):
        # tasks, wall sum, wall max, runner CPU sum, children CPU sum
        m.stages[f"{kind}: {stage}"] = [len(laps), sum(x[0] for x in laps),
                                        max(x[0] for x in laps), sum(x[1] for x in laps),
                                        sum(x[2] for x in laps)]
    m.task_logs = {}
    if m.rundir and os.path.isdir(m.rundir):
        if env.get("HSTREAM_KEEP_RUNDIR") or m.status != 0:
            print(f"  kept the local cluster's run dir (logs): {m.rundir}")
        else:
            shutil.rmtree(m.rundir, ignore_errors=True)
    return m


# -- Spark ---------------------------------------------------------------------------


def spark_missing() -> str:
    """Why the Spark row cannot run, or "" if it can."""
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[spark]')"
    return "" if shutil.which("java") else "no java on PATH (Java 17 or later)"


def _add_cluster(m: Measure, samplers: list[Sampler]) -> None:
    """Add the CPU of what ran under the Spark Workers (executors, Python workers, the user's
    commands) to the row: they are the cluster's descendants, not the hstream process's. The
    Workers' own CPU (mostly their start-up, before the run) is left out."""
    for sampler in samplers:
        for (pid, _), entry in sampler.procs.items():
            if pid == sampler.root:
                continue
            role = str(entry["role"]) or "other"
            cpu, rss = float(entry["cpu"]), int(entry["rss"])  # type: ignore[call-overload]
            m.cpu += cpu
            m.role_cpu[role] = m.role_cpu.get(role, 0.0) + cpu
            m.role_rss[role] = max(m.role_rss.get(role, 0), rss)
    m.max_rss = max(m.role_rss.values(), default=0)


def run_spark(data: str, out: str, reduces: int, env: dict[str, str],
              logdir: str) -> tuple[Measure, float]:
    """hstream --runner spark on a standalone cluster (a Worker of one core per CPU) started
    beforehand; (the run, the cluster's start time). The row's CPU adds the executors'."""
    workers = os.cpu_count() or 1
    name = f"hstream --runner spark: {workers} workers, {reduces} reduce{'s' * (reduces > 1)}"
    why = spark_missing()
    if why:
        return Measure(name, note=why), 0.0
    sys.path.insert(0, os.path.dirname(HERE))
    from hstream.runners.standalone import StandaloneCluster

    started = time.monotonic()
    with StandaloneCluster(os.path.join(logdir, "spark"), workers=workers, env=env) as cluster:
        start = time.monotonic() - started
        samplers = [Sampler(d.proc.pid) for d in cluster.worker_daemons if d is not None]
        for sampler in samplers:
            sampler.start()
        argv = [*hstream_argv(), "jar-free", "--runner", "spark", "--master", cluster.url,
                "--spark-conf", "spark.ui.enabled=false", "-input", data, "-output", out,
                "-mapper", MAPPER, "-reducer", REDUCER, "-numReduceTasks", str(reduces)]
        m = measure(name, argv, {**env, "PYSPARK_PYTHON": sys.executable}, HERE,
                    os.path.join(logdir, f"spark-r{reduces}.log"))
        for sampler in samplers:
            sampler.stop.set()
            sampler.join()
        _add_cluster(m, samplers)
    return m, start


# -- peers ---------------------------------------------------------------------------

MRJOB_SCRIPT = '''\
"""mrjob's local runner with the benchmark's own mapper and reducer commands."""
from mrjob.job import MRJob
from mrjob.step import MRStep


class WordCount(MRJob):
    def steps(self):
        return [MRStep(mapper_cmd="{map}", reducer_cmd="{red}")]


if __name__ == "__main__":
    WordCount.run()
'''


def peers_python() -> str:
    """The peers' venv python, created on first use; RuntimeError says why it cannot be."""
    python = os.path.join(PEERS_VENV, "bin", "python")
    if not os.path.exists(os.path.join(PEERS_VENV, ".ready")):
        print(f"installing madoop and mrjob into {PEERS_VENV} ...", file=sys.stderr)
        try:
            subprocess.run([sys.executable, "-m", "venv", PEERS_VENV], check=True)
            subprocess.run([python, "-m", "pip", "install", "-q", "madoop", "mrjob"], check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise RuntimeError(f"could not install peers: {e}") from None
        open(os.path.join(PEERS_VENV, ".ready"), "w").close()
    return python


def run_peers(data: str, inputs: list[str], outdir: str, env: dict[str, str],
              logdir: str) -> list[tuple[Measure, str]]:
    """madoop and mrjob's local runner; a peer that cannot run is a row saying why."""
    try:
        python = peers_python()
    except RuntimeError as e:
        return [(Measure("madoop", note=str(e)), ""),
                (Measure("mrjob local runner", note=str(e)), "")]
    bindir = os.path.dirname(python)
    results = []
    out = os.path.join(outdir, "madoop")
    results.append((measure(
        "madoop", [os.path.join(bindir, "madoop"), "-input", data, "-output", out,
                   "-mapper", MAPPER, "-reducer", REDUCER], env, HERE,
        os.path.join(logdir, "madoop.log")), out))
    script = os.path.join(logdir, "mr_wordcount.py")
    with open(script, "w") as f:
        f.write(MRJOB_SCRIPT.format(map=os.path.join(HERE, MAPPER),
                                    red=os.path.join(HERE, REDUCER)))
    out = os.path.join(outdir, "mrjob")
    results.append((measure(
        "mrjob local runner", [python, script, "-r", "local", "--no-conf", "--output-dir", out,
                               *inputs], env, HERE, os.path.join(logdir, "mrjob.log")), out))
    return results


# -- report --------------------------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / MB:.0f}"


def table(rows: list[Measure], base: Measure) -> str:
    head = f"{'run':<40} {'wall s':>7} {'CPU s':>7} {'peak RSS MB':>11} {'ratio':>6}  output"
    lines = [head, "-" * len(head)]
    for m in rows:
        if m.wall == 0.0:
            lines.append(f"{m.name:<40} {'-':>7} {'-':>7} {'-':>11} {'-':>6}  not run: {m.note}")
            continue
        ratio = m.wall / base.wall if base.wall else 0.0
        verdict = {True: "equal", False: "DIFFERENT", None: m.note or "-"}[m.ok]
        if m.ok is not None and m.note:
            verdict += f" ({m.note})"
        lines.append(f"{m.name:<40} {m.wall:7.1f} {m.cpu:7.1f} {_mb(m.max_rss):>11} "
                     f"{ratio:6.2f}  {verdict}")
    return "\n".join(lines)


def spark_note(rows: list[Measure], start: float) -> str:
    """The Spark row against the embedded cluster with as many reducers, and the pipeline."""
    spark = next((m for m in rows if m.name.startswith("hstream --runner spark") and m.wall),
                 None)
    if spark is None:
        return ""
    reduces = spark.name.rsplit(", ", 1)[1]
    local = next((m for m in rows if m.name.startswith("hstream:") and m.name.endswith(reduces)
                  and m.wall), None)
    text = f"\nSpark: wall {spark.wall / rows[0].wall:.2f}x the pipeline"
    if local:
        text += f", {spark.wall / local.wall:.2f}x the embedded cluster ({reduces})"
    return text + f"; the standalone cluster took {start:.1f} s to start (not in the row)"


def own_cpu(m: Measure) -> tuple[float, float]:
    """hstream's own CPU seconds (client, daemons, runners) and all sampled CPU seconds: the
    issue's target is own under 5% of all."""
    own = sum(c for r, c in m.role_cpu.items() if r in OWN_ROLES)
    return own, sum(m.role_cpu.values())


def breakdown(m: Measure) -> str:
    own = ", ".join(f"{r} {_mb(m.role_rss[r])}" for r in OWN_ROLES if r in m.role_rss)
    cpu = ", ".join(f"{r} {c:.1f}" for r, c in sorted(m.role_cpu.items(), key=lambda x: -x[1])
                    if c >= 0.05)
    text = f"  {m.name}\n    CPU s by process (sampled): {cpu}\n"
    mine, total = own_cpu(m)
    if mine:
        text += f"    hstream's own CPU: {mine:.1f} of {total:.1f} s ({mine / total:.1%})\n"
    if own:
        text += (f"    hstream's own processes, peak RSS MB of one: {own}"
                 f"; all at once: {_mb(m.own_rss_sum)}\n")
    for stage, (n, wall, longest, runner, kids) in m.stages.items():
        text += (f"    task.log {stage:<28} {int(n)} tasks, wall {wall:6.1f} s"
                 f" (longest {longest:5.1f}),"
                 f" CPU runner {runner:5.1f} s, children {kids:5.1f} s\n")
    return text.rstrip("\n")


def rounds_summary(rounds: list[list[Measure]]) -> str:
    """Each hstream row's ratio (against the pipeline of its own round, run just before it)
    and own CPU share, round by round, with their medians."""
    lines = [f"medians over {len(rounds)} rounds (each ratio against its own round's pipeline):"]
    for i, m in enumerate(rounds[0][1:], start=1):
        done = [r for r in rounds if r[i].wall and r[0].wall and r[i].status == 0]
        ratios = [r[i].wall / r[0].wall for r in done]
        shares = [mine / total for mine, total in (own_cpu(r[i]) for r in done) if total]
        if not ratios:
            continue
        text = (f"  {m.name:<38} ratio {' '.join(f'{x:.2f}' for x in ratios)}"
                f"  median {statistics.median(ratios):.2f}")
        if shares and any(shares):
            text += f";  own CPU median {statistics.median(shares):.1%}"
        lines.append(text)
    return "\n".join(lines)


def run_round(args: argparse.Namespace, reduces: list[int], data: str, inputs: list[str],
              rundir: str, env: dict[str, str], tag: str) -> list[Measure]:
    """The pipeline, then hstream with each number of reducers, outputs checked against the
    pipeline's. Outputs and logs carry `tag`, so rounds never share one."""
    ref_out = os.path.join(rundir, f"pipeline{tag}.out")
    base = run_pipeline(inputs, ref_out, env, rundir, tag)
    print(f"  ran {base.name}: {base.wall:.1f} s", flush=True)
    rows = [base]
    outputs: dict[str, str] = {}
    for r in reduces:
        out = os.path.join(rundir, f"hstream-r{r}{tag}")
        m = run_hstream(data, out, r, args.workers, env, rundir, tag)
        print(f"  ran {m.name}: {m.wall:.1f} s", flush=True)
        rows.append(m)
        outputs[m.name] = out
    check_outputs(base, rows[1:], outputs, ref_out)
    return rows


def check_outputs(base: Measure, rows: list[Measure], outputs: dict[str, str],
                  ref_out: str) -> None:
    """Each row's output against the pipeline's (`base`, which wrote `ref_out`), per key."""
    reference = read_output(ref_out) if base.status == 0 else None
    for m in rows:
        if m.status == 0 and m.wall and reference is not None and m.name in outputs:
            got = read_output(outputs[m.name])
            m.ok = got == reference
            if not m.ok:
                m.note = f"{len(got)} vs {len(reference)} output lines"
    if reference is not None:
        base.ok = True
        base.note = f"reference, {len(reference)} keys"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="hstream word count benchmark (see docs/bench.md)")
    p.add_argument("--size", type=int, default=256, help="corpus size in MB (default 256)")
    p.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    p.add_argument("--files", type=int, default=4, help="corpus files (default 4)")
    p.add_argument("--reduces", default="1,2",
                   help="comma list of -numReduceTasks values to run (default 1,2)")
    p.add_argument("--workers", type=int, default=None,
                   help="local cluster workers (default: hstream's, one per CPU)")
    p.add_argument("--keep", action="store_true", help="keep the outputs in bench/results")
    p.add_argument("--unbuffered", action="store_true",
                   help="run both sides with PYTHONUNBUFFERED=1 (a mapper flushing every line)")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of pipeline and hstream runs, one after the other; prints each "
                        "row's median ratio and own CPU share (default 1)")
    p.add_argument("--spark", action=argparse.BooleanOptionalAction, default=True,
                   help="also run --runner spark on a standalone cluster (default: yes; a row "
                        "says why not if pyspark or Java is missing)")
    args = p.parse_args(argv)
    reduces = [int(r) for r in args.reduces.split(",") if r]

    t0 = time.monotonic()
    data = corpus.generate(args.size, args.seed, args.files)
    inputs = sorted(os.path.join(data, n) for n in os.listdir(data) if not n.startswith(("_", ".")))
    gen = time.monotonic() - t0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rundir = os.path.join(RESULTS, stamp)
    os.makedirs(rundir)
    env = bench_env(args.unbuffered)
    print(f"corpus: {data} ({sum(map(os.path.getsize, inputs)) / MB:.0f} MB in {len(inputs)} "
          f"files, seed {args.seed}; ready in {gen:.1f} s)")
    print(f"machine: {os.cpu_count()} CPUs; PYTHONUNBUFFERED "
          f"{'=1' if args.unbuffered else 'unset'} for every run "
          f"(it was {os.environ.get('PYTHONUNBUFFERED')!r}); mapper {MAPPER}, reducer {REDUCER}")

    load = os.getloadavg()[0]
    print(f"load average before the runs: {load:.2f}"
          + (" (busy machine: figures are noisy)" if load > 0.5 * (os.cpu_count() or 1) else ""))
    rounds = []
    for n in range(max(args.repeat, 1)):
        if args.repeat > 1:
            print(f"round {n + 1} of {args.repeat}", flush=True)
        rounds.append(run_round(args, reduces, data, inputs, rundir, env, f"-{n + 1}" * (n > 0)))
    rows: list[Measure] = rounds[0][:]
    outputs: dict[str, str] = {}
    base = rows[0]
    ref_out = os.path.join(rundir, "pipeline.out")
    spark_start = 0.0
    if args.spark:
        r = max(reduces)
        out = os.path.join(rundir, f"spark-r{r}")
        m, spark_start = run_spark(data, out, r, env, rundir)
        print(f"  ran {m.name}: {m.wall:.1f} s (cluster start {spark_start:.1f} s, not counted)",
              flush=True)
        rows.append(m)
        outputs[m.name] = out
    if os.environ.get("PEERS") == "1":
        for m, out in run_peers(data, inputs, rundir, env, rundir):
            print(f"  ran {m.name}: {m.wall:.1f} s", flush=True)
            rows.append(m)
            outputs[m.name] = out
    if outputs:  # the Spark and peer rows; round 1's hstream rows are checked already
        check_outputs(base, rows[len(rounds[0]):], outputs, ref_out)

    print()
    print(table(rows, base))
    print(spark_note(rows, spark_start))
    if len(rounds) > 1:
        print(rounds_summary(rounds))
    print()
    print("where the CPU goes:")
    for m in rows:
        if m.wall:
            print(breakdown(m))
    with open(os.path.join(rundir, "results.json"), "w") as f:
        json.dump({"size_mb": args.size, "seed": args.seed, "corpus": data,
                   "runs": [asdict(m) for m in rows],
                   "rounds": [[asdict(m) for m in r] for r in rounds[1:]]}, f, indent=1)
    if not args.keep:
        for name in os.listdir(rundir):
            path = os.path.join(rundir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif name.startswith("pipeline") and name.endswith(".out"):
                os.unlink(path)
    print(f"\nlogs and results.json: {rundir}")
    every = [m for r in rounds[1:] for m in r] + rows
    failed = [m for m in every if m.wall and (m.status != 0 or m.ok is False)]
    return 1 if any(m.name.startswith(("pipeline", "hstream")) for m in failed) else 0


if __name__ == "__main__":
    sys.exit(main())
