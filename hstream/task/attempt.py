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

import errno
import fcntl
import json
import logging
import os
import resource
import select
import shutil
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from hstream import protocol
from hstream.hadoop import command as commands
from hstream.hadoop import keyfields
from hstream.hadoop.codecs import CODECS
from hstream.hadoop.keyfields import KeySpec
from hstream.job import TaskSpec, plain_name
from hstream.task import knobs, remote, shuffle
from hstream.task.lines import OUTPUT_LIMIT, LineCutter, LineLimit, LineTooLong, line_limit
from hstream.task.output import OutputWriter
from hstream.task.pooled import Pooled
from hstream.task.reporter import StderrReader, bounded
from hstream.task.sorting import SortFailed, SortOrder
from hstream.task.splits import InputChanged

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
MFW = "Map-Reduce Framework"
#: How long a command's output may stay open after the command exited (its background
#: children hold it) before the attempt stops reading and ends.
EXIT_GRACE = "hstream.task.exit.grace.ms"
DEFAULT_EXIT_GRACE_MS = 3000


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


#: Stages shorter than this (seconds of wall) are not logged.
LAP_MIN = 0.05


class Stopwatch:
    """Where an attempt's time goes, stage by stage, in its task.log: wall seconds, CPU of
    this process (hstream's own work) and of its finished children (commands, sorts)."""

    def __init__(self) -> None:
        self.wall = time.monotonic()
        self.own = _cpu(resource.RUSAGE_SELF)
        self.children = _cpu(resource.RUSAGE_CHILDREN)

    def lap(self, stage: str) -> None:
        """Log the stage since the last lap, if it took LAP_MIN or more (a small task's stages
        are not worth a line, nor the task.log file the line would make)."""
        wall, own = time.monotonic(), _cpu(resource.RUSAGE_SELF)
        children = _cpu(resource.RUSAGE_CHILDREN)
        if wall - self.wall >= LAP_MIN:
            self._log(stage, wall, own, children)
        self.wall, self.own, self.children = wall, own, children

    def _log(self, stage: str, wall: float, own: float, children: float) -> None:
        logger.info("stage %s: %.2f s wall, %.2f s cpu in the task runner, %.2f s cpu in children, "
                    "peak rss %d MB", stage, wall - self.wall, own - self.own,
                    children - self.children,
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10)


class Reporter:
    """Progress lines to the worker, at most one a second, the first a second in: an attempt
    counts as alive from its start, and a map shorter than that (thousands of them in a job
    of small files) reports nothing but its result."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.last = time.monotonic()

    def send(self, msg: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        with self.lock:
            try:
                self.out.write(json.dumps(bounded(msg)).encode() + b"\n")
                self.out.flush()
            except (BrokenPipeError, ValueError):
                pass


class Attempt:
    """Directories, environment and the user's command for one attempt."""

    def __init__(self, spec: TaskSpec, root: str, auth: protocol.Auth,
                 reporter: Reporter, packs: bool = False) -> None:
        self.spec = spec
        self.root = root
        #: Whether a small map's output may go to its runner's pack file (`shuffle.append_pack`):
        #: a worker's runners, whose worker serves packs; not the Spark runner's.
        self.packs = packs
        #: The job's token (never the cluster secret): this job's shuffle and relay only.
        self.auth = auth
        self.reporter = reporter
        self.conf = spec.conf
        self.work = os.path.join(root, "work")
        self.tmp = knobs.tmp_dir(spec, root)
        #: The worker's directory for this job (attempts live in JOB/attempts/ATTEMPT).
        self.job_dir = os.path.dirname(os.path.dirname(root))
        for d in (self.work, self.tmp):
            os.makedirs(d, exist_ok=True)
        self._ship_files()
        self.counters: dict[str, dict[str, int]] = {}
        self.stderr: StderrReader | None = None
        #: How far through its input the attempt is, for progress reports.
        self.fraction = 0.0
        #: Bytes of input read and of shuffle fetched so far; with the part file's bytes they
        #: go with every progress report (the manager's history turns them into rates).
        self.bytes_read = 0
        self.bytes_fetched = 0
        self.writer: OutputWriter | None = None
        self.buffer = knobs.sort_buffer(self.conf)
        self.grace = int(self.conf.get(EXIT_GRACE, DEFAULT_EXIT_GRACE_MS)) / 1000
        self.gave_up = False

    def output_limit(self) -> LineLimit:
        """The line length limit on what the user's command writes."""
        who = "mapper" if self.spec.kind == "map" else "reducer"
        return LineLimit(line_limit(self.conf, OUTPUT_LIMIT), OUTPUT_LIMIT, f"{who} output")

    def count(self, name: str, amount: int, group: str = MFW) -> None:
        g = self.counters.setdefault(group, {})
        g[name] = g.get(name, 0) + amount

    def _ship_files(self) -> None:
        for f in self.spec.files:
            if not plain_name(f.name):  # the client refuses these; a forged spec gets here
                raise TaskError(f"shipped file name is not a plain name: {f.name!r}")
            link = os.path.join(self.work, f.name)
            if os.path.lexists(link):
                continue
            path = f.path
            if not self.spec.shared_fs:  # one copy per job on this host, fetched once
                path = os.path.join(self.job_dir, "files", f.name)
                remote.fetch_file(self.spec.manager, self.auth, self.spec.job_id, f.name, path)
            if f.archive:
                unpack(path, link, f.path)
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
            remote.upload_output(self.spec.manager, self.auth, self.spec.job_id,
                                self.spec.attempt_id, path)
        return os.path.basename(path)

    def environment(self) -> dict[str, str]:
        s = self.spec
        own = {  # this attempt's properties: the rest of the view is the job's, made once
            "mapreduce.job.id": s.job_id,
            "mapreduce.task.id": s.task_id,
            "mapreduce.task.attempt.id": s.attempt_id,
            "mapreduce.task.partition": str(s.index),
            "mapreduce.task.ismap": "true" if s.kind == "map" else "false",
            "mapreduce.task.output.dir": self.output_dir,
            "mapreduce.job.local.dir": self.work,
            # Hadoop's local directories are the worker's and the attempt's here.
            "mapreduce.cluster.local.dir": os.path.dirname(self.job_dir),
            "hadoop.tmp.dir": self.tmp,
        }
        if s.split is not None and not s.split.parts:  # CombineFileSplit: none, as in Hadoop
            own.update({
                "mapreduce.map.input.file": s.split.path,
                "mapreduce.map.input.start": str(s.split.start),
                "mapreduce.map.input.length": str(s.split.length),
                "map.input.file": s.split.path,
            })
        base = dict(os.environ)
        base["TMPDIR"] = self.tmp
        base["PATH"] = self.work + os.pathsep + base.get("PATH", os.defpath)
        truncate = int(s.conf.get("stream.jobconf.truncate.limit", "-1"))
        env = commands.attempt_environment(s.conf, own, s.env, base, truncate)
        env["mapreduce_task_is_map"] = env["mapreduce_task_ismap"]
        return env

    def start(self, command: str, kind: str, stdin: Any, stdout: Any) -> subprocess.Popen[bytes]:
        """Start the user's command with its stderr drained into the attempt log."""
        try:
            argv = commands.resolve(command, self.work, kind=kind)
        except OSError as e:
            raise TaskError(str(e)) from None
        argv = knobs.with_ulimit(argv, self.conf, self.spec.kind)
        env = self.environment()
        # The command inherits the runner's working directory and only descriptors 0-2 (every
        # descriptor Python opens is non-inheritable, PEP 446): so Popen may use posix_spawn,
        # which encodes the ~1,800 variables in C, ~2 ms less per attempt than fork_exec.
        os.chdir(self.work)
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                env=env, close_fds=False)
        prefix = self.conf.get("stream.stderr.reporter.prefix", "reporter:").encode()
        assert proc.stderr is not None
        self.stderr = StderrReader(proc.stderr, os.path.join(self.root, "stderr.log"), prefix)
        self.stderr.start()
        return proc

    def drain(self, proc: subprocess.Popen[bytes], write: Any, eager: bool = False) -> int:
        """Pump the command's stdout to `write` until EOF, or until the command has exited
        and its output stayed silent for the exit grace: then only a background child it
        left behind holds the pipe, and the attempt must not wait for it (the worker kills
        that child when the attempt ends)."""
        assert proc.stdout is not None
        total = pump(proc.stdout, write, eager, proc, self.grace)
        self.gave_up = proc.stdout.closed  # the grace is spent: stderr gets none of it
        return total

    def check_exit(self, proc: subprocess.Popen[bytes], what: str) -> None:
        status = proc.wait()
        if self.stderr is not None:
            self.stderr.join(0.1 if self.gave_up else self.grace)
            if self.stderr.is_alive():
                logger.warning("%s exited but its stderr is still open (a background child "
                               "holds it): not waiting for it", what)
        if status == 0:
            return
        if self.conf.get("stream.non.zero.exit.is.failure", "true").lower() == "false":
            logger.warning("%s exited with status %d (ignored)", what, status)
            return
        tail = _copy(self.stderr.tail) if self.stderr else []
        raise TaskError(f"{what} subprocess failed with code {status}", status, tail)

    def progress(self, fraction: float, force: bool = False) -> None:
        """A progress report, with the command's last `reporter:status:` message and the
        bytes read, fetched and written so far."""
        status = self.stderr.status if self.stderr is not None else ""
        written = self.writer.bytes if self.writer is not None else 0
        report: dict[str, object] = {"progress": fraction,
                                     "bytes": [self.bytes_read, self.bytes_fetched, written]}
        if status:
            report["status"] = status
        self.reporter.send(report, force)

    def user_counters(self) -> None:
        if self.stderr is not None and self.stderr.too_many:  # Hadoop fails the task too
            raise TaskError(self.stderr.too_many)
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
        keys_only = keyfields.writes_keys_only(self.conf, s.kind)
        self.writer = OutputWriter(path, key, out_sep, codec, s.lazy_output, raw or keys_only,
                                   make_dirs=not s.shared_fs, limit=self.output_limit())
        self.writer.ignore_sep = keyfields.ignores_separator(self.conf)
        return self.writer








@contextmanager
def user_errors() -> Iterator[None]:
    """What fails an attempt for a reason the user can act on becomes a TaskError with one
    clear line: a line over its limit, an input that changed, a sort that failed, a full
    disk (named with its directory, not as a traceback). A decorator of the pipelines."""
    try:
        yield
    except (LineTooLong, InputChanged, SortFailed) as e:
        raise TaskError(str(e)) from None
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        where = (f" in {os.path.dirname(e.filename)}" if isinstance(e.filename, str)
                 else " in the attempt's working directory")
        raise TaskError(f"no space left on device{where}") from None


def unpack(archive: str, dest: str, name: str) -> None:
    """Unpack a shipped archive into `dest` (a .jar is a zip, as Hadoop unpacks it). zipfile
    already keeps every member inside; tar members are extracted with tarfile's `data`
    filter (or the same checks where this Python lacks it): an absolute name is made
    relative, and a `..` that leads out, a link pointing out or a device fails the attempt,
    naming the member."""
    if name.lower().endswith((".jar", ".zip")):
        shutil.unpack_archive(archive, dest, format="zip")
        return
    os.makedirs(dest, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                _extract(tar, member, dest)
    except (tarfile.TarError, ValueError) as e:
        raise TaskError(f"archive {os.path.basename(name)}: {e}") from None


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: str) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extract(member, dest, filter="data")
        return
    _check_member(member, dest)  # Pythons before 3.11.4: the data filter's rules by hand
    tar.extract(member, dest)


def _check_member(member: tarfile.TarInfo, dest: str) -> None:
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return os.path.commonpath([root, os.path.realpath(path)]) == root

    member.name = member.name.lstrip("/")  # as the data filter does: /a/b lands in dest/a/b
    target = os.path.join(root, member.name)
    if not inside(target):
        raise ValueError(f"member {member.name!r} would be written outside the directory")
    if member.isdev():
        raise ValueError(f"member {member.name!r} is a device or FIFO")
    if member.issym() and (os.path.isabs(member.linkname) or not inside(
            os.path.join(os.path.dirname(target), member.linkname))):
        raise ValueError(f"symlink {member.name!r} points outside the directory")
    if member.islnk() and not inside(os.path.join(root, member.linkname)):
        raise ValueError(f"hard link {member.name!r} points outside the directory")


#: What an attempt's directory keeps for its job's life when something was written to them.
LOGS = ("stderr.log", "task.log")
#: The subdirectories an attempt's directory passes on to the runner's next map, emptied.
PASSED_ON = ("work", "tmp")


def reuse_dir(prev: str, root: str, shipped: set[str]) -> bool:
    """Make the directory of a kept runner's last map, emptied, the next map's `root`: a new
    directory is an inode to allocate and, at the job's end, to free, which costs a job of
    thousands of small maps dearly (a journal-less ext4 scans recently freed inodes on every
    allocation). Only a directory without logs (they are the attempt's record until the job
    ends). Shipped files' links in `work` stay, as they would be made again; anything else
    goes. Works through directory descriptors without following links: a task owns what is
    inside and may have planted links. False if it cannot be done; `root` is then made anew."""
    try:
        fd = os.open(prev, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        entries = _entries(fd)
        if entries.keys() & set(LOGS):
            return False
        _remove(fd, [n for n, is_dir in entries.items() if not (is_dir and n in PASSED_ON)])
        _empty(fd, "work", shipped)
        _empty(fd, "tmp", set())
        os.rename(prev, root)
        return True
    except OSError as e:
        logger.info("attempt directory %s not reused: %s", prev, e)
        return False
    finally:
        os.close(fd)


def _entries(fd: int) -> dict[str, bool]:
    """Name -> is a directory (not a link to one), for directory `fd`."""
    with os.scandir(fd) as it:
        return {e.name: e.is_dir(follow_symlinks=False) for e in it}


def _empty(parent: int, name: str, links: set[str]) -> None:
    """Empty directory `name` of `parent` but for the symbolic links named in `links`."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except FileNotFoundError:
        return
    try:
        with os.scandir(fd) as it:
            doomed = [e.name for e in it if not (e.name in links and e.is_symlink())]
        _remove(fd, doomed)
    finally:
        os.close(fd)


def _remove(fd: int, names: list[str]) -> None:
    for name in names:
        if stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)


def discard_attempt(spec: TaskSpec, root: str) -> None:
    """Remove what a failed or killed attempt wrote: its directory (spills, fetched input,
    work files), its map output, and its partial part file in the job's staging area.
    Only this attempt's own paths, named from its id; a published output is never touched
    (the staging directory is gone by then)."""
    knobs.remove_tmp(spec, knobs.tmp_dir(spec, root))  # under stream.tmpdir, if set
    shutil.rmtree(root, ignore_errors=True)
    job_dir = os.path.dirname(os.path.dirname(root))
    shutil.rmtree(shuffle.map_output_dir(job_dir, spec.attempt_id), ignore_errors=True)
    if spec.shared_fs and spec.output_dir:
        shutil.rmtree(os.path.join(spec.output_dir, "_temporary", spec.attempt_id),
                      ignore_errors=True)


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


def pump(stream: IO[bytes], write: Any, eager: bool = False,
         proc: subprocess.Popen[bytes] | None = None, grace: float = 0.0) -> int:
    """Copy a command's output to `write` a megabyte at a time (few, large Python steps);
    `eager` passes on whatever has arrived, so a part file grows while its command runs.
    With `proc`, reading also stops once `proc` has exited and no byte came for `grace`
    seconds; the pipe is then closed, so whoever still holds it gets EPIPE."""
    if proc is None:
        read = stream.read1 if eager and hasattr(stream, "read1") else stream.read
        return sum(_passed(data, write) for data in iter(lambda: read(CHUNK), b""))
    fd, total, pending = stream.fileno(), 0, _Pending(write, 0 if eager else CHUNK)
    _widen(fd)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    quiet: float | None = None
    while True:
        if poller.poll(POLL_MS):
            data = os.read(fd, CHUNK)
            if not data:
                break
            total, quiet = total + len(data), None
            pending.add(data)
            if len(data) < TRICKLE and not _hung_up(poller):  # a command that flushes
                time.sleep(TRICKLE_WAIT)  # every line: let it fill the pipe (unless it is done)
            continue
        pending.flush()
        if proc.poll() is None:
            continue
        quiet = quiet or time.monotonic()
        if time.monotonic() - quiet >= grace:
            logger.warning("the command exited %.1f s ago but its output is still open (a "
                           "background child holds it): not reading it any more", grace)
            stream.close()
            break
    pending.flush()
    return total


POLL_MS = 100
#: A read shorter than this means the command writes in dribs (PYTHONUNBUFFERED, `$| = 1`):
#: the next read waits TRICKLE_WAIT seconds, so that it takes many lines at once instead of
#: costing a wake-up and a Python step per line. The pipe holds PIPE_SIZE meanwhile.
TRICKLE = 16 << 10
TRICKLE_WAIT = 0.002
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031


def _hung_up(poller: select.poll) -> bool:
    """The writer has closed its end: what is left is in the pipe, so waiting gains nothing
    (a small task's whole output comes in one short read)."""
    return any(events & select.POLLHUP for _, events in poller.poll(0))


def _widen(fd: int) -> None:
    """Let the pipe hold PIPE_SIZE bytes (Linux; the default is 64 KiB), so a writer does not
    stall while a trickle wait lasts."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # over /proc/sys/fs/pipe-max-size, or not Linux: the default will do
        pass


def _copy(lines: Any) -> list[str]:
    """A copy of a deque that a reader still running (a child holds stderr) may append to."""
    for _ in range(10):
        try:
            return list(lines)
        except RuntimeError:  # mutated during iteration
            continue
    return []


def _passed(data: bytes, write: Any) -> int:
    write(data)
    return len(data)


class _Pending:
    """Reads collected up to `size` bytes before they are written (one large step)."""

    def __init__(self, write: Any, size: int) -> None:
        self.write = write
        self.size = size
        self.parts: list[bytes] = []
        self.bytes = 0

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.bytes += len(data)
        if self.bytes >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            self.parts, self.bytes = [], 0
            self.write(data)


def pump_lines(stream: IO[bytes], consume: Any) -> None:
    """Hand `consume` buffers of whole lines (bytes, or the bytearray a long line grew in:
    never copied whole)."""
    cutter = LineCutter()
    for data in iter(lambda: stream.read(CHUNK), b""):
        lines = cutter.cut(data)
        if lines:
            consume(lines)
        del lines  # a long line's buffer goes before the next one grows
    last = cutter.flush()
    if last:
        consume(last)


class Liveness(Pooled):
    """Reports progress while the user's command shows life: it read input or wrote output
    (its /proc I/O counters moved) or wrote to stderr. That is Hadoop's definition of a task
    that is not hung (`mapreduce.task.timeout`), observed without touching the data."""

    def __init__(self, attempt: Attempt, pid: int, fraction: Any, interval: float = 1.0) -> None:
        super().__init__(name="liveness")
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
