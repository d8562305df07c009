"""Hadoop's per-attempt knobs that mean something for a task runner too.

- `mapreduce.{map,reduce}.memory.mb`: the attempt's memory, as YARN enforces a container's:
  all of the attempt's processes (the task runner, the user's command and its children, the
  sorts) together. Where the attempt has a cgroup v2 of its own, its memory.max; everywhere,
  their resident memory is sampled twice a second, and an attempt over the limit is killed
  and fails with "exceeded N MB". (RLIMIT_AS would count address space, which many programs
  reserve far beyond what they use.) Only a limit the job sets is enforced.
- `mapred.{map,reduce}.child.ulimit`, `mapred.child.ulimit` (Hadoop 1, KB): the virtual
  memory limit of the user's command, `ulimit -v` as Hadoop 1 set it.
- `mapreduce.task.io.sort.mb`: the map side's sort buffer (`hstream.sort.buffer.bytes` wins).
- `mapreduce.task.files.preserve.failedtasks` (`keep.failed.task.files`): a failed attempt's
  directory is copied where it survives the job, and the failure message says where.
- `stream.tmpdir`: where the attempt's temporary files go (the commands' TMPDIR, sort spills).

Stdlib only.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading

from hstream.hadoop import properties
from hstream.job import TaskResult, TaskSpec
from hstream.task import procs
from hstream.task.sorting import DEFAULT_BUFFER

logger = logging.getLogger(__name__)

PAGE = os.sysconf("SC_PAGE_SIZE")


def _setting(conf: dict[str, str], kind: str, names: tuple[str, ...]) -> int:
    """The first of `names` (with {kind} filled in) the job sets to a positive number; 0 if none."""
    for name in names:
        value = conf.get(name.format(kind=kind), "")
        if value.strip().lstrip("-").isdigit() and int(value) > 0:
            return int(value)
    return 0


def memory_mb(conf: dict[str, str], kind: str) -> int:
    return _setting(conf, kind, ("mapreduce.{kind}.memory.mb",))


def ulimit_kb(conf: dict[str, str], kind: str) -> int:
    return _setting(conf, kind, ("mapred.{kind}.child.ulimit", "mapred.child.ulimit"))


def sort_buffer(conf: dict[str, str]) -> int:
    """The map sort buffer in bytes: hstream's own setting, else mapreduce.task.io.sort.mb."""
    if "hstream.sort.buffer.bytes" in conf:
        return int(conf["hstream.sort.buffer.bytes"])
    mb = _setting(conf, "", ("mapreduce.task.io.sort.mb",))
    return mb << 20 if mb else DEFAULT_BUFFER


def with_ulimit(argv: list[str], conf: dict[str, str], kind: str) -> list[str]:
    """The command under `ulimit -v`, when the job sets a Hadoop 1 child ulimit."""
    kb = ulimit_kb(conf, kind)
    if not kb:
        return argv
    return ["/bin/sh", "-c", 'ulimit -v "$0" && exec "$@"', str(kb), *argv]


# -- the memory limit ---------------------------------------------------------------------------


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _own_cgroup() -> str | None:
    """This process's cgroup v2 directory, if its memory.max can be written (the worker puts
    each attempt in a cgroup of its own where cgroup v2 is mounted and delegated)."""
    path = procs.own_cgroup()
    return path if path and os.access(os.path.join(path, "memory.max"), os.W_OK) else None


def _oom_kills(cgroup: str) -> int:
    try:
        with open(os.path.join(cgroup, "memory.events"), encoding="ascii") as f:
            events = dict(line.split() for line in f if line.strip())
        return int(events.get("oom_kill", 0))
    except (OSError, ValueError):
        return 0


class MemoryGuard(threading.Thread):
    """Enforces the limit: the kernel does it where the attempt has a cgroup v2 of its own
    (memory.max); everywhere the resident memory of the attempt's session is sampled too, and
    over the limit the attempt's other processes are killed (so whatever waits on them fails).
    Either way `exceeded` says why."""

    def __init__(self, limit_mb: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True, name="memory")
        self.limit_mb = limit_mb
        self.interval = interval
        self.exceeded = ""
        self.stopped = threading.Event()
        self.cgroup = _own_cgroup()
        #: OOM kills in the cgroup before this attempt: a kept runner's earlier maps ran there.
        self.ooms = _oom_kills(self.cgroup) if self.cgroup is not None else 0
        if self.cgroup is not None:
            try:
                with open(os.path.join(self.cgroup, "memory.max"), "w", encoding="ascii") as f:
                    f.write(str(limit_mb << 20))
            except OSError as e:
                logger.info("cgroup memory.max not set (%s): sampling only", e)
                self.cgroup = None

    def run(self) -> None:
        sid = os.getsid(0)
        while not self.stopped.wait(self.interval):
            pids = procs.session_members(sid)
            used = _rss(os.getpid()) + sum(_rss(p) for p in pids)
            if used > self.limit_mb << 20 or self.oom_killed():
                self.exceeded = (f"exceeded {self.limit_mb} MB of memory "
                                 f"(mapreduce.*.memory.mb): its processes used {used >> 20} MB "
                                 "or more, and were killed")
                logger.error("%s", self.exceeded)
                _kill(pids)
                return

    def oom_killed(self) -> bool:
        """Whether the kernel killed one of the cgroup's processes for memory since the
        attempt began."""
        return self.cgroup is not None and _oom_kills(self.cgroup) > self.ooms

    def stop(self) -> None:
        self.stopped.set()


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def start_guard(spec: TaskSpec) -> MemoryGuard | None:
    limit = memory_mb(spec.conf, spec.kind)
    if not limit:
        return None
    guard = MemoryGuard(limit)
    guard.start()
    return guard


# -- directories ------------------------------------------------------------------------------


def tmp_dir(spec: TaskSpec, root: str) -> str:
    """The attempt's temporary directory: in its own directory, or under stream.tmpdir."""
    base = spec.conf.get("stream.tmpdir", "")
    if not base:
        return os.path.join(root, "tmp")
    return os.path.join(base, f"hstream-{spec.attempt_id}")


def remove_tmp(spec: TaskSpec, tmp: str) -> None:
    """An attempt's directory goes with the attempt; one under stream.tmpdir goes here."""
    if spec.conf.get("stream.tmpdir"):
        shutil.rmtree(tmp, ignore_errors=True)


def preserves_failed(conf: dict[str, str]) -> bool:
    return conf.get("mapreduce.task.files.preserve.failedtasks", "false").lower() == "true"


def keep_failed(spec: TaskSpec, root: str) -> str:
    """Copy a failed attempt's directory (its working directory, logs, spills) where it
    outlives the job: `<stream.tmpdir or $TMPDIR>/hstream-kept/<job>/<attempt>`. Returns that
    path, or "" if the copy failed."""
    base = spec.conf.get("stream.tmpdir") or properties.tmpdir()
    dest = os.path.join(base, "hstream-kept", spec.job_id, spec.attempt_id)
    try:
        shutil.copytree(root, dest, symlinks=True, dirs_exist_ok=True)
    except (OSError, shutil.Error) as e:
        logger.warning("could not keep the failed attempt's directory: %s", e)
        return ""
    return dest


def finish(spec: TaskSpec, root: str, result: TaskResult, guard: MemoryGuard | None) -> TaskResult:
    """The attempt's result after the knobs had their say: over its memory it failed, whatever
    else happened; a failed one's directory is kept when the job asks; stream.tmpdir cleaned."""
    if guard is not None:
        guard.stop()
        if guard.exceeded:
            result = TaskResult(ok=False, error=guard.exceeded, stderr_tail=result.stderr_tail)
    if not result.ok and result.fetch_failed_map is None and preserves_failed(spec.conf):
        kept = keep_failed(spec, root)
        if kept:
            result.error = f"{result.error} (its directory is kept in {kept})"
    remove_tmp(spec, tmp_dir(spec, root))
    return result
