"""The driver of `hstream jar-free --runner spark`: the same streaming job on Apache Spark.

Spark's own ways of running a command (`RDD.pipe`, SQL `TRANSFORM`) lose bytes, environment or
exit statuses, so each Spark task runs hstream's own attempt (`sparktask`):

    splits ─parallelize─▶ map attempt (split → mapper → spills → combiner → partition files)
        ─▶ (partition, chunk) records ─partitionBy(R, partition id)─▶ Spark's shuffle
        ─▶ reduce attempt (runs → sort -m → reducer → part-NNNNN)

The partition ids are hstream's CRC-32 ones and Spark's partitioner is the identity on them, so
part-NNNNN holds what the embedded runner's part-NNNNN holds. Local paths keep hstream's splits
and its commit (a hidden staging directory renamed onto -output); paths with a scheme
(`hdfs://`, `s3a://`, `file://`) go through Spark's Hadoop filesystem layer instead: its text
source reads the lines (as binary, so no byte is decoded), its text writer writes them.

The JVM's log goes to a file, never to the user's terminal; only `hstream.cli` prints. pyspark
is imported inside functions, so hstream works without it.
"""

from __future__ import annotations

import json
import logging
import os
import py_compile
import re
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hstream
from hstream.errors import ConfigError, HstreamError, InputNotFound, JobFailed, OutputExists
from hstream.hadoop import streaming
from hstream.hadoop.codecs import CODECS
from hstream.hadoop.inputpaths import list_inputs
from hstream.job import JobSpec, cluster_stamp, new_job_id, staging_dir, task_id
from hstream.runners.options import RunnerOptions
from hstream.runners.sparktask import MARK, Counters, StageRunner, ship_name
from hstream.task.splits import job_splits

logger = logging.getLogger(__name__)

INSTALL = "--runner spark needs pyspark: pip install 'hstream[spark]'"
NO_JAVA = ("--runner spark needs Java 17 or later on PATH or in JAVA_HOME "
           "(Debian: apt-get install openjdk-17-jre-headless)")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # as hadoop/streaming.py leaves them
_LOCAL_MASTER = re.compile(r"^local(\[(\*|\d+)\])?$")
#: Spark's names for Hadoop's output codecs, by hstream's file suffix.
_SPARK_CODECS = {".gz": "gzip", ".bz2": "bzip2", ".deflate": "deflate"}

Progress = Callable[[float, float], None]

#: Job properties Spark has nothing to apply to, with what to use instead (a warning each).
NOT_APPLIED = {
    "mapreduce.task.timeout": "Spark has no task timeout",
    "mapreduce.job.maxtaskfailures.per.tracker": "use --spark-conf spark.excludeOnFailure.*",
    "hstream.speculative.slowness": "use --spark-conf spark.speculation.multiplier",
    "hstream.speculative.lag": "use --spark-conf spark.speculation.minTaskRuntime",
}


@dataclass
class SparkOutcome:
    """A finished job: its id, counters (summed over tasks), time and Spark application."""

    job_id: str
    counters: dict[str, dict[str, int]]
    seconds: float
    app_id: str


def is_uri(path: str) -> bool:
    """A path for Spark's Hadoop filesystem layer (`hdfs://…`, `s3a://…`, `file://…`)."""
    return bool(_URI.match(path))


def check_paths(spec: JobSpec, background: bool) -> None:
    """Before Spark starts: local paths as the embedded runner checks them (URIs are Spark's)."""
    if background:
        raise ConfigError("-background needs hstream's own cluster (--runner spark waits)")
    if not is_uri(spec.output):
        streaming.check_output(spec.output)
        streaming.make_output_parent(spec.output)
    local = [i for i in spec.inputs if not is_uri(i)]
    if local:
        streaming.check_inputs(local)


def run(spec: JobSpec, opts: RunnerOptions, progress: Progress) -> SparkOutcome:
    """Run `spec` on Spark and wait; JobFailed carries hstream's message for a failed task."""
    _require()
    for key in sorted(NOT_APPLIED.keys() & spec.conf.keys()):
        logger.warning("%s is not applied on Spark (%s)", key, NOT_APPLIED[key])
    started = time.monotonic()
    job_id = new_job_id(cluster_stamp(), 1)
    with tempfile.TemporaryDirectory(prefix="hstream-spark-") as scratch:
        sc = _start(spec, opts, scratch)
        app_id = str(sc.applicationId)
        try:
            counters = _run_job(sc, spec, job_id, scratch, progress)
        finally:
            sc.stop()
    return SparkOutcome(job_id, counters, time.monotonic() - started, app_id)


def _require() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise HstreamError(INSTALL) from None
    java_home = os.environ.get("JAVA_HOME", "")
    if not shutil.which("java") and not os.access(os.path.join(java_home, "bin", "java"),
                                                  os.X_OK):
        raise HstreamError(NO_JAVA)


def spark_conf(spec: JobSpec, opts: RunnerOptions) -> dict[str, str]:
    """Spark settings: the user's `--spark-conf`, then hstream's defaults for what they left."""
    conf = dict(opts.spark_conf)
    master = opts.master or conf.get("spark.master") or "local[*]"
    given = [int(spec.conf[f"mapreduce.{k}.maxattempts"]) for k in ("map", "reduce")
             if f"mapreduce.{k}.maxattempts" in spec.conf]
    tries = max(given, default=4)  # one Spark setting for both: the larger one given
    local = _LOCAL_MASTER.match(master)
    if local:  # local[N] never retries a task; local[N,F] does, like Hadoop's attempts
        master = f"local[{local.group(2) or 1},{tries}]"
        conf.setdefault("spark.pyspark.python", os.environ.get("PYSPARK_PYTHON", sys.executable))
    conf["spark.master"] = master
    conf.setdefault("spark.app.name", spec.name)
    conf.setdefault("spark.task.maxFailures", str(tries))
    conf.setdefault("spark.ui.showConsoleProgress", "false")
    if spec.output.lower().startswith("file:"):  # part files without Hadoop's .crc files
        conf.setdefault("spark.hadoop.fs.file.impl", "org.apache.hadoop.fs.RawLocalFileSystem")
    if any(spec.conf.get(f"mapreduce.{k}.speculative") == "true" for k in ("job", "map", "reduce")):
        conf.setdefault("spark.speculation", "true")
    return conf


def _start(spec: JobSpec, opts: RunnerOptions, scratch: str) -> Any:
    """A SparkContext whose JVM writes its log to a file (fd 2 is swapped while it starts)."""
    from pyspark import SparkConf, SparkContext

    conf = SparkConf()
    for key, value in spark_conf(spec, opts).items():
        conf.set(key, value)
    log_path = os.path.join(scratch, "spark.log")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    saved = os.dup(2)
    os.dup2(log, 2)
    try:
        return SparkContext(conf=conf)
    except Exception as e:  # noqa: BLE001 - pyspark raises plain exceptions here
        raise HstreamError(f"Spark did not start (master {conf.get('spark.master')}): "
                           f"{_first_line(str(e))}{_log_tail(log_path)}") from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log)


def _run_job(sc: Any, spec: JobSpec, job_id: str, scratch: str,
             progress: Progress) -> dict[str, dict[str, int]]:
    sc.setJobGroup(job_id, f"hstream {spec.name}", interruptOnCancel=True)
    sc.addPyFile(_zip_hstream(scratch))
    staging = "" if is_uri(spec.output) else staging_dir(spec.output, job_id)
    if not staging:
        _hadoop_output(sc, spec)  # refused before any task runs, as a local one is
    counters = sc.accumulator({}, Counters())
    runner = StageRunner(job_id, spec, staging, counters, _ship_files(sc, spec, scratch))
    maps = _map_stage(sc, spec, runner)
    stages = maps
    if spec.num_reduces:  # the identity on hstream's partition numbers
        stages = maps.partitionBy(spec.num_reduces, int).mapPartitionsWithIndex(
            runner.reduce_partition)
    with _Watcher(sc, job_id, progress):
        _execute(sc, spec, job_id, stages, staging)
    progress(1.0, 1.0)
    return _total(counters.value, maps.getNumPartitions(), spec.num_reduces)


def _execute(sc: Any, spec: JobSpec, job_id: str, stages: Any, staging: str) -> None:
    """Run the job and publish its output; JobFailed says which task failed and how."""
    try:
        if staging:
            os.makedirs(os.path.join(staging, "_temporary"))
            stages.collect()
            _commit_job(spec, staging)
        else:
            _write_hadoop(sc, stages, spec, job_id)
    except HstreamError:
        raise
    except KeyboardInterrupt:
        sc.cancelJobGroup(job_id)
        raise
    except Exception as e:  # noqa: BLE001 - Py4JJavaError and friends: the job failed
        tries = int(sc.getConf().get("spark.task.maxFailures", "4"))
        raise JobFailed(f"Job {job_id} failed: "
                        f"{failure_message(_error_text(e), spec, job_id, tries)}") from None
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)


def _zip_hstream(scratch: str) -> str:
    """hstream's package as a zip for `addPyFile`: executors import it from there. Each
    module goes with its bytecode, checked against the source by hash: Python does not
    cache what it compiles from a zip, and each Spark task starts an interpreter that
    imports the task code (0.15 CPU-s of compiling each time). An executor on another
    Python version ignores the bytecode and compiles the source."""
    package = os.path.dirname(os.path.abspath(hstream.__file__))
    path = os.path.join(scratch, "hstream.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for folder, dirs, names in os.walk(package):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in names:
                full = os.path.join(folder, name)
                rel = os.path.relpath(full, os.path.dirname(package))
                z.write(full, rel)
                if name.endswith(".py"):
                    z.write(_bytecode(full, rel, scratch), rel[:-3] + ".pyc")
    return path


def _bytecode(source: str, name: str, scratch: str) -> str:
    """`source` compiled into a hash-checked .pyc in `scratch` (tracebacks name `name`)."""
    compiled = py_compile.compile(source, cfile=os.path.join(scratch, "module.pyc"), dfile=name,
                                  doraise=True,
                                  invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    assert compiled is not None  # doraise: an error raises instead
    return compiled


def _ship_files(sc: Any, spec: JobSpec, scratch: str) -> dict[str, str]:
    """`-files`/`-archives` through `addFile`, under names that cannot collide."""
    ship: dict[str, str] = {}
    os.makedirs(os.path.join(scratch, "ship"))
    for i, f in enumerate(spec.files):
        name = ship_name(i, f)
        link = os.path.join(scratch, "ship", name)
        _copy(f.path, link)  # Spark follows a symlink and would ship the file's own name
        sc.addFile(link, recursive=os.path.isdir(f.path))
        ship[f.name] = name
    return ship


def _copy(src: str, dst: str) -> None:
    if os.path.isdir(src):
        shutil.copytree(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)


def _map_stage(sc: Any, spec: JobSpec, runner: StageRunner) -> Any:
    """One map task per split: hstream's splits for local input, Spark's for the rest."""
    if not any(is_uri(i) for i in spec.inputs):
        goal = (int(spec.conf.get("mapreduce.job.maps", 0)) or spec.num_maps
                or 2 * sc.defaultParallelism)
        splits = job_splits(list_inputs(spec.inputs), goal, spec.conf)
        rdd = sc.parallelize(splits, max(len(splits), 1))
    else:
        rdd = _hadoop_lines(sc, spec)
    return rdd.mapPartitionsWithIndex(runner.map_partition)


def _hadoop_lines(sc: Any, spec: JobSpec) -> Any:
    """(line bytes, file URI) rows through Spark's text source: `lineSep` keeps a CR, the cast
    to binary keeps every byte, and a file never shares a partition with another file."""
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col, input_file_name

    _check_hadoop_input(spec.conf)
    spark = SparkSession(sc)
    spark.conf.set("spark.sql.files.openCostInBytes",
                   spark.conf.get("spark.sql.files.maxPartitionBytes") or "128m")
    uris = [i if is_uri(i) else "file://" + os.path.abspath(i) for i in spec.inputs]
    try:
        df = spark.read.option("lineSep", "\n").text(uris)
    except Exception as e:  # noqa: BLE001 - AnalysisException
        if "PATH_NOT_FOUND" in str(e) or "does not exist" in str(e):
            raise InputNotFound(f"input path does not exist: {_first_line(str(e))}") from None
        raise HstreamError(f"cannot read input: {_first_line(str(e))}") from None
    return df.select(col("value").cast("binary"), input_file_name()).rdd


def _check_hadoop_input(conf: dict[str, str]) -> None:
    fmt = conf.get("hstream.inputformat", "TextInputFormat")
    if fmt == "NLineInputFormat":
        raise ConfigError("NLineInputFormat needs local input paths with --runner spark")
    if fmt == "TextInputFormat" and conf.get("stream.map.input.ignoreKey", "true") == "false":
        raise ConfigError("byte-offset keys (stream.map.input.ignoreKey=false) need local "
                          "input paths with --runner spark")


def _commit_job(spec: JobSpec, staging: str) -> None:
    """As the embedded manager does: `_SUCCESS`, then one rename of the staging directory."""
    shutil.rmtree(os.path.join(staging, "_temporary"), ignore_errors=True)
    if spec.conf.get("mapreduce.fileoutputcommitter.marksuccessfuljobs", "true") != "false":
        open(os.path.join(staging, "_SUCCESS"), "wb").close()
    if os.path.lexists(spec.output):
        raise OutputExists(f"output directory already exists: {spec.output}")
    os.rename(staging, spec.output)


def _write_hadoop(sc: Any, lines: Any, spec: JobSpec, job_id: str) -> None:
    """Output through Spark's text writer into a staging directory beside -output; its files
    are renamed to Hadoop's part-NNNNN names, then the directory onto -output."""
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col

    spark = SparkSession(sc)
    jvm = sc._jvm
    hconf = sc._jsc.hadoopConfiguration()
    out, fs = _hadoop_output(sc, spec)
    staging = jvm.org.apache.hadoop.fs.Path(out.getParent(), f".{out.getName()}.hstream-"
                                            f"{job_id.split('_', 1)[1]}")
    marks = spec.conf.get("mapreduce.fileoutputcommitter.marksuccessfuljobs", "true")
    hconf.set("mapreduce.fileoutputcommitter.marksuccessfuljobs", marks)
    codec = _output_codec(spec.conf)
    writer = spark.createDataFrame(lines, "value binary", verifySchema=False).select(
        col("value").cast("string")).write.option("lineSep", "\n")
    if codec:
        writer = writer.option("compression", _SPARK_CODECS[codec])
    try:
        writer.text(staging.toString())
        _name_parts(sc, fs, staging, codec, spec)
        if fs.exists(out) or not fs.rename(staging, out):
            raise OutputExists(f"output directory already exists: {spec.output}")
    finally:
        if fs.exists(staging):
            fs.delete(staging, True)


def _hadoop_output(sc: Any, spec: JobSpec) -> tuple[Any, Any]:
    """-output as a Hadoop Path and its FileSystem; OutputExists if it is there already."""
    out = sc._jvm.org.apache.hadoop.fs.Path(spec.output)
    fs = out.getFileSystem(sc._jsc.hadoopConfiguration())
    if fs.exists(out):
        raise OutputExists(f"output directory already exists: {spec.output}")
    return out, fs


def _output_codec(conf: dict[str, str]) -> str:
    if conf.get("mapreduce.output.fileoutputformat.compress", "false").lower() != "true":
        return ""
    return CODECS.get(conf.get("mapreduce.output.fileoutputformat.compress.codec", "gzip"), ".gz")


def _name_parts(sc: Any, fs: Any, staging: Any, codec: str, spec: JobSpec) -> None:
    """part-00003-<uuid>-c000.txt.gz -> part-00003.gz; empty ones for partitions Spark wrote no
    file for (as Hadoop writes them), unless -lazyOutput."""
    jvm = sc._jvm
    seen = set()
    for status in fs.listStatus(staging):
        name = status.getPath().getName()
        m = re.match(r"part-(\d+)-", name)
        if m:
            seen.add(int(m.group(1)))
            fs.rename(status.getPath(), jvm.org.apache.hadoop.fs.Path(
                staging, f"part-{int(m.group(1)):05d}{codec}"))
    if spec.lazy_output:
        return
    count = spec.num_reduces or len(seen)
    factory = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
        sc._jsc.hadoopConfiguration())
    for r in sorted(set(range(count)) - seen):
        stream = fs.create(jvm.org.apache.hadoop.fs.Path(staging, f"part-{r:05d}{codec}"))
        if codec:
            stream = factory.getCodecByName(_SPARK_CODECS[codec]).createOutputStream(stream)
        stream.close()


def _total(by_task: dict[str, dict[str, dict[str, int]]], maps: int,
           reduces: int) -> dict[str, dict[str, int]]:
    total: dict[str, dict[str, int]] = {"Job Counters": {"Launched map tasks": maps}}
    if reduces:
        total["Job Counters"]["Launched reduce tasks"] = reduces
    for counters in by_task.values():
        for group, names in counters.items():
            g = total.setdefault(group, {})
            for name, value in names.items():
                g[name] = g.get(name, 0) + value
    return total


def failure_message(error: str, spec: JobSpec, job_id: str, tries: int) -> str:
    """hstream's message for a failed task, from the TaskFailed inside Spark's error text: the
    task, how often it failed, where it last ran, the command, exit status and stderr tail.
    A job that Spark aborts for a task's failures aborts when they reach `tries` (Spark 4
    reports the task's own exception, without the count)."""
    found = re.findall(re.escape(MARK) + r"(\{.*\})", error)
    if not found:
        return _first_line(error)
    info = json.loads(found[-1])
    result, kind, index = info["result"], info["kind"], info["index"]
    times = re.search(r"failed (\d+) times?", error)
    failures = int(times.group(1)) if times else tries
    lines = [f"task {task_id(job_id, kind, index)} ({kind} {index}) failed {failures} time"
             f"{'s' if failures != 1 else ''}: {result.get('error') or 'failed'}",
             f"  {info['attempt_id']} on {info['host']} (last attempt)",
             f"  command: {spec.mapper if kind == 'map' else spec.reducer}"]
    if result.get("exit_status") is not None:
        lines.append(f"  exit status: {result['exit_status']}")
    if result.get("stderr_tail"):
        lines.append("  last lines of stderr:")
        lines += [f"    {line}" for line in result["stderr_tail"]]
    return "\n".join(lines)


def _error_text(error: Exception) -> str:
    """Spark's error with its Java message, which says how often the task failed."""
    java = getattr(error, "java_exception", None)
    try:
        return str(error) + ("\n" + str(java.getMessage()) if java is not None else "")
    except Exception:  # noqa: BLE001 - the JVM is gone
        return str(error)


def _first_line(text: str) -> str:
    """The line of a Java/Python error that says what happened."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        m = re.search(r"(?:Exception|Error): (.+)", line)
        if m and "An error occurred while calling" not in line:
            return m.group(1)
    return lines[0] if lines else "unknown error"


def _log_tail(path: str, count: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            tail = [line.rstrip() for line in f if line.strip()][-count:]
    except OSError:
        return ""
    return "".join(f"\n  {line}" for line in tail)


class _Watcher(threading.Thread):
    """Map and reduce progress from Spark's status tracker: the first stage of the job group
    is the map stage, the second the reduce stage."""

    def __init__(self, sc: Any, group: str, progress: Progress) -> None:
        super().__init__(daemon=True, name="spark-progress")
        self.tracker = sc.statusTracker()
        self.group = group
        self.progress = progress
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            try:
                fractions = self._fractions()
            except Exception:  # noqa: BLE001 - the context is stopping
                return
            if fractions:
                self.progress(fractions[0], fractions[1] if len(fractions) > 1 else 0.0)

    def _fractions(self) -> list[float]:
        stages: set[int] = set()
        for job in self.tracker.getJobIdsForGroup(self.group):
            info = self.tracker.getJobInfo(job)
            stages.update(info.stageIds if info else ())
        out = []
        for stage in sorted(stages)[:2]:
            info = self.tracker.getStageInfo(stage)
            if info is not None:
                out.append(info.numCompletedTasks / max(info.numTasks, 1))
        return out

    def __enter__(self) -> _Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.join(timeout=5)
