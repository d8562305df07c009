"""One attempt's shared machinery, for the map and the reduce pipeline alike.

Map (`maptask.py`):    split -> [feeder] -> mapper -> Spiller (sort runs) -> sort -m ->
                       route to partition files (through `combiner | sort` if any)
Reduce (`reducetask.py`): fetch partitions -> sort -m -> reducer -> part file

This module holds what both share: the attempt's directories, environment and
commands, progress reports, stage timings, liveness. `__main__.py` is the entry.

Python moves buffers between processes; lines are only touched by C code
(`sort`, bytes methods) or, per distinct key, by `partition.route_sorted`.
Stdlib only.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import subprocess
import threading
import time
from typing import IO, Any

from hstream.hadoop import command as commands
from hstream.hadoop import keyfields
from hstream.hadoop.codecs import CODECS
from hstream.hadoop.keyfields import KeySpec
from hstream.job import TaskSpec
from hstream.task import remote
from hstream.task.lines import whole_lines
from hstream.task.output import OutputWriter
from hstream.task.reporter import StderrReader
from hstream.task.sorting import DEFAULT_BUFFER, SortOrder

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
MFW = "Map-Reduce Framework"


class TaskError(Exception):
    """The attempt failed; the message and fields go into its TaskResult."""

    def __init__(self, message: str, exit_status: int | None = None,
                 tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.exit_status = exit_status
        self.tail = tail or []


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class Stopwatch:
    """Where an attempt's time goes, stage by stage, in its task.log: wall seconds, CPU of
    this process (hstream's own work) and of its finished children (commands, sorts)."""

    def __init__(self) -> None:
        self.wall = time.monotonic()
        self.own = _cpu(resource.RUSAGE_SELF)
        self.children = _cpu(resource.RUSAGE_CHILDREN)

    def lap(self, stage: str) -> None:
        wall, own = time.monotonic(), _cpu(resource.RUSAGE_SELF)
        children = _cpu(resource.RUSAGE_CHILDREN)
        logger.info("stage %s: %.2f s wall, %.2f s cpu in the task runner, %.2f s cpu in children, "
                    "peak rss %d MB", stage, wall - self.wall, own - self.own,
                    children - self.children,
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10)
        self.wall, self.own, self.children = wall, own, children


class Reporter:
    """Progress lines to the worker, at most one a second."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.last = 0.0

    def send(self, msg: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        with self.lock:
            try:
                self.out.write(json.dumps(msg).encode() + b"\n")
                self.out.flush()
            except (BrokenPipeError, ValueError):
                pass


class Attempt:
    """Directories, environment and the user's command for one attempt."""

    def __init__(self, spec: TaskSpec, root: str, secret: bytes, reporter: Reporter) -> None:
        self.spec = spec
        self.root = root
        self.secret = secret
        self.reporter = reporter
        self.conf = spec.conf
        self.work = os.path.join(root, "work")
        self.tmp = os.path.join(root, "tmp")
        #: The worker's directory for this job (attempts live in JOB/attempts/ATTEMPT).
        self.job_dir = os.path.dirname(os.path.dirname(root))
        for d in (self.work, self.tmp):
            os.makedirs(d, exist_ok=True)
        self._ship_files()
        self.counters: dict[str, dict[str, int]] = {}
        self.stderr: StderrReader | None = None
        #: How far through its input the attempt is, for progress reports.
        self.fraction = 0.0
        self.buffer = int(self.conf.get("hstream.sort.buffer.bytes", DEFAULT_BUFFER))

    def count(self, name: str, amount: int, group: str = MFW) -> None:
        g = self.counters.setdefault(group, {})
        g[name] = g.get(name, 0) + amount

    def _ship_files(self) -> None:
        for f in self.spec.files:
            link = os.path.join(self.work, f.name)
            if os.path.lexists(link):
                continue
            path = f.path
            if not self.spec.shared_fs:  # one copy per job on this host, fetched once
                path = os.path.join(self.job_dir, "files", f.name)
                remote.fetch_file(self.spec.manager, self.secret, self.spec.job_id, f.name, path)
            if f.archive:  # a .jar is a zip, as Hadoop unpacks it
                jar = f.path.lower().endswith((".jar", ".zip"))
                shutil.unpack_archive(path, link, format="zip" if jar else None)
            else:
                os.symlink(path, link)

    @property
    def output_dir(self) -> str:
        """Where this attempt writes its part file: the job's staging area when every host
        sees it, else a local directory whose file is uploaded to the manager at the end."""
        if self.spec.shared_fs:
            return os.path.join(self.spec.output_dir, "_temporary", self.spec.attempt_id)
        return os.path.join(self.root, "output")

    def publish(self, path: str | None) -> str | None:
        """The finished part file's name for the commit (uploaded first when needed)."""
        if path is None:
            return None
        if not self.spec.shared_fs:
            remote.upload_output(self.spec.manager, self.secret, self.spec.job_id,
                                self.spec.attempt_id, path)
        return os.path.basename(path)

    def environment(self) -> dict[str, str]:
        s = self.spec
        conf = dict(s.conf)
        conf.update({
            "mapreduce.job.id": s.job_id,
            "mapreduce.task.id": s.task_id,
            "mapreduce.task.attempt.id": s.attempt_id,
            "mapreduce.task.partition": str(s.index),
            "mapreduce.task.ismap": "true" if s.kind == "map" else "false",
            "mapreduce.task.output.dir": self.output_dir,
            "mapreduce.job.local.dir": self.work,
        })
        if s.split is not None:
            conf.update({
                "mapreduce.map.input.file": s.split.path,
                "mapreduce.map.input.start": str(s.split.start),
                "mapreduce.map.input.length": str(s.split.length),
                "map.input.file": s.split.path,
            })
        base = dict(os.environ)
        base["TMPDIR"] = self.tmp
        base["PATH"] = self.work + os.pathsep + base.get("PATH", os.defpath)
        truncate = int(s.conf.get("stream.jobconf.truncate.limit", "-1"))
        env = commands.task_environment(conf, s.env, base, truncate)
        env["mapreduce_task_is_map"] = env["mapreduce_task_ismap"]
        return env

    def start(self, command: str, kind: str, stdin: Any, stdout: Any) -> subprocess.Popen[bytes]:
        """Start the user's command with its stderr drained into the attempt log."""
        try:
            argv = commands.resolve(command, self.work, kind=kind)
        except OSError as e:
            raise TaskError(str(e)) from None
        log = open(os.path.join(self.root, "stderr.log"), "ab")
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                cwd=self.work, env=self.environment())
        prefix = self.conf.get("stream.stderr.reporter.prefix", "reporter:").encode()
        assert proc.stderr is not None
        self.stderr = StderrReader(proc.stderr, log, prefix)
        self.stderr.start()
        return proc

    def check_exit(self, proc: subprocess.Popen[bytes], what: str) -> None:
        status = proc.wait()
        if self.stderr is not None:
            self.stderr.join()
        if status == 0:
            return
        if self.conf.get("stream.non.zero.exit.is.failure", "true").lower() == "false":
            logger.warning("%s exited with status %d (ignored)", what, status)
            return
        tail = list(self.stderr.tail) if self.stderr else []
        raise TaskError(f"{what} subprocess failed with code {status}", status, tail)

    def progress(self, fraction: float) -> None:
        """A progress report, with the command's last `reporter:status:` message."""
        status = self.stderr.status if self.stderr is not None else ""
        report: dict[str, object] = {"progress": fraction}
        if status:
            report["status"] = status
        self.reporter.send(report)

    def user_counters(self) -> None:
        if self.stderr is not None:
            for group, names in self.stderr.snapshot().items():
                for name, value in names.items():
                    self.count(name, value, group)

    def output_writer(self, key: KeySpec, raw: bool = False) -> OutputWriter:
        s = self.spec
        path = os.path.join(self.output_dir, f"part-{s.index:05d}")
        codec = ""
        if self.conf.get("mapreduce.output.fileoutputformat.compress", "false").lower() == "true":
            codec = CODECS.get(self.conf.get("mapreduce.output.fileoutputformat.compress.codec",
                                             "gzip"), ".gz")
        out_sep = keyfields.setting_sep(self.conf, "mapreduce.output.textoutputformat.separator")
        return OutputWriter(path, key, out_sep, codec, s.lazy_output, raw,
                            make_dirs=not s.shared_fs)








def sort_order(conf: dict[str, str]) -> SortOrder:
    key = keyfields.map_key(conf)
    field_sep = keyfields.setting_sep(conf, "mapreduce.map.output.key.field.separator")
    comparator: tuple[str, ...] = ()
    comparator_class = conf.get("mapreduce.job.output.key.comparator.class", "")
    if comparator_class.endswith("KeyFieldBasedComparator"):
        comparator = tuple(keyfields.comparator_args(
            conf.get("mapreduce.partition.keycomparator.options", "")))
    return SortOrder(key, comparator, field_sep)


def close_input(stdin: IO[bytes]) -> None:
    """Close a command's stdin; a command that stopped reading early is its own business."""
    try:
        stdin.close()
    except BrokenPipeError:
        pass


def pump(stream: IO[bytes], write: Any, eager: bool = False) -> int:
    """Copy a command's output to `write` a megabyte at a time (few, large Python steps);
    `eager` passes on whatever has arrived, so a part file grows while its command runs."""
    total = 0
    read = stream.read1 if eager and hasattr(stream, "read1") else stream.read
    while True:
        data = read(CHUNK)
        if not data:
            return total
        total += len(data)
        write(data)


def pump_lines(stream: IO[bytes], consume: Any) -> None:
    """Hand `consume` buffers of whole lines."""
    for lines in whole_lines(iter(lambda: stream.read(CHUNK), b"")):
        consume(lines)


class Liveness(threading.Thread):
    """Reports progress while the user's command shows life: it read input or wrote output
    (its /proc I/O counters moved) or wrote to stderr. That is Hadoop's definition of a task
    that is not hung (`mapreduce.task.timeout`), observed without touching the data."""

    def __init__(self, attempt: Attempt, pid: int, fraction: Any, interval: float = 1.0) -> None:
        super().__init__(daemon=True, name="liveness")
        self.attempt = attempt
        self.pid = pid
        self.fraction = fraction
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        last: tuple[int, int] | None = None
        while not self.stopped.wait(self.interval):
            stderr = self.attempt.stderr.activity if self.attempt.stderr is not None else 0
            sample = (_io_chars(self.pid), stderr)
            if sample != last:
                self.attempt.progress(self.fraction())
                last = sample

    def stop(self) -> None:
        self.stopped.set()


def _proc_io(pid: int) -> dict[str, int]:
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as f:
            return {k: int(v) for k, v in (line.split(": ") for line in f)}
    except (OSError, ValueError):
        return {}


def _io_chars(pid: int) -> int:
    io = _proc_io(pid)
    return io.get("rchar", 0) + io.get("wchar", 0)


def read_bytes(pid: int) -> int:
    return _proc_io(pid).get("rchar", 0)
