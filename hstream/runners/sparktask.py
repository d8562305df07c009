"""What runs inside Spark's executors: hstream's own map and reduce attempts, one per partition.

A partition function (`StageRunner.map_partition`, `.reduce_partition`, run by PySpark's
Python worker) starts the attempt as its own process, `python -m hstream.runners.sparktask
ROOT`, in a new session that dies with the Python worker: Spark kills the worker of a
cancelled task with SIGKILL, and its mapper and sorts must not live on. The map attempt is
hstream's (`task.maptask.run_map`); its sorted partition files are read back and handed to
Spark's shuffle as `(partition, (map, seq, keyed, bytes))` records of up to 1 MiB, so Spark
moves bytes it never looks into. The reduce side writes each map's records back into one
sorted run and runs `task.reducetask.reduce_fetched` on them.

Counters go to an accumulator keyed by task (first attempt wins), so a stage that Spark
computes again never counts twice. A failed attempt raises `TaskFailed`, whose message carries
its TaskResult as JSON after MARK; the driver finds it in Spark's error. Stdlib only: pyspark
is imported inside the partition functions, which only ever run under it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import IO, Any

import hstream
from hstream import protocol
from hstream.job import JobSpec, ShipFile, Split, TaskResult, TaskSpec, from_dict, to_dict
from hstream.task import shuffle
from hstream.task.attempt import CHUNK, Attempt, Reporter, Stopwatch, TaskError
from hstream.task.maptask import run_map
from hstream.task.reducetask import reduce_fetched

logger = logging.getLogger(__name__)

#: Precedes the failed attempt's TaskResult (JSON, one line) in the exception Spark reports.
MARK = "HSTREAM-TASK-FAILED "
#: Rows of an output that Spark's Hadoop filesystem layer writes: one line each, no newline.
Line = tuple[bytes]


class TaskFailed(RuntimeError):
    """An attempt failed; Spark retries the task and, at the end, reports this message."""

    def __init__(self, result: TaskResult, spec: TaskSpec) -> None:
        info = {"kind": spec.kind, "index": spec.index, "attempt_id": spec.attempt_id,
                "host": socket.gethostname(), "result": to_dict(result)}
        super().__init__(MARK + json.dumps(info))


class Counters:
    """Accumulator parameter: {task: counters}, the first attempt of a task wins."""

    def zero(self, value: dict[str, Any]) -> dict[str, Any]:
        return {}

    def addInPlace(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        for task, counters in b.items():
            a.setdefault(task, counters)
        return a


@dataclass
class StageRunner:
    """Everything a partition function needs; Spark pickles it into every task."""

    job_id: str
    spec: JobSpec
    #: Local staging directory the part files are committed into; "" when Spark writes them.
    staging: str
    counters: Any
    #: Shipped files: ShipFile.name -> the name it was added to Spark under (SparkFiles).
    ship: dict[str, str] = field(default_factory=dict)

    def map_partition(self, index: int, items: Iterable[Any]) -> Iterator[Any]:
        with _scratch() as root:
            split, env = _map_input(items, os.path.join(root, "input"))
            spec = self._task_spec("map", index, split, env)
            result = self._attempt(root, spec)
            if spec.num_reduces == 0:
                yield from self._output(root, spec, result)
                return
            outdir = shuffle.map_output_dir(os.path.join(root, "job"), spec.attempt_id)
            yield from _map_records(outdir, index, spec.num_reduces)

    def reduce_partition(self, index: int, items: Iterable[Any]) -> Iterator[Line]:
        with _scratch() as root:
            fetched = _write_runs(items, os.path.join(root, "inputs"))
            spec = self._task_spec("reduce", index, None, {})
            result = self._attempt(root, spec, fetched)
            yield from self._output(root, spec, result)

    def _task_spec(self, kind: str, index: int, split: Split | None,
                   env: dict[str, str]) -> TaskSpec:
        from pyspark import SparkFiles, TaskContext

        context = TaskContext.get()
        s, conf = self.spec, dict(self.spec.conf)
        if not self.staging:  # Spark's writer compresses: the attempt writes plain lines
            conf["mapreduce.output.fileoutputformat.compress"] = "false"
        files = [replace(f, path=SparkFiles.get(self.ship[f.name])) for f in s.files]
        return TaskSpec(
            job_id=self.job_id, kind=kind, index=index,
            attempt=context.taskAttemptId() if context else 0, num_reduces=s.num_reduces,
            command=s.mapper if kind == "map" else (s.reducer or ""),
            combiner=s.combiner if kind == "map" else None, conf=conf,
            env={**s.cmdenv, **env}, files=files, output_dir=self.staging, split=split,
            lazy_output=s.lazy_output)

    def _attempt(self, root: str, spec: TaskSpec,
                 fetched: shuffle.Fetched | None = None) -> TaskResult:
        """Run the attempt in its own process; raise TaskFailed if it failed."""
        if not self.staging:
            spec.output_dir = os.path.join(root, "out")
            os.makedirs(os.path.join(spec.output_dir, "_temporary"))
        # mkdir, not makedirs: a late attempt must not bring a finished job's staging back.
        os.mkdir(os.path.join(spec.output_dir, "_temporary", spec.attempt_id))
        result = run_attempt(os.path.join(root, "job", "attempts", spec.attempt_id), spec,
                             fetched)
        if not result.ok:
            raise TaskFailed(result, spec)
        self.counters.add({f"{spec.kind}{spec.index:06d}": result.counters})
        return result

    def _output(self, root: str, spec: TaskSpec, result: TaskResult) -> Iterator[Line]:
        """Commit the part file into the staging directory, or hand its lines to Spark."""
        if result.output_file is None:
            return
        src = os.path.join(spec.output_dir, "_temporary", spec.attempt_id, result.output_file)
        if self.staging:
            _commit(src, os.path.join(self.staging, result.output_file))
            return
        with open(src, "rb") as f:
            for lines in iter(lambda: f.read(CHUNK) + f.readline(), b""):
                yield from ((line,) for line in lines.split(b"\n")[:-1])


@contextmanager
def _scratch() -> Iterator[str]:
    """A private scratch directory for one task, removed however the task ends."""
    root = tempfile.mkdtemp(prefix="hstream-spark-")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _map_input(items: Iterable[Any], copy: str) -> tuple[Split, dict[str, str]]:
    """The map's split: one of hstream's own (local input), or the partition's lines that
    Spark read through its Hadoop filesystem layer, copied to a local file (then the mapper's
    `mapreduce_map_input_file` is the file's URI)."""
    rows = iter(items)
    first = next(rows, None)
    if isinstance(first, Split):
        return first, {}
    uri = "" if first is None else str(first[1])
    size = 0
    with open(copy, "wb") as f:
        batch: list[bytes] = []
        for row in _chain(first, rows):
            batch.append(bytes(row[0]))
            if len(batch) >= 4096:
                size += f.write(b"\n".join(batch) + b"\n")
                batch = []
        if batch:
            size += f.write(b"\n".join(batch) + b"\n")
    env = {"mapreduce_map_input_file": uri, "map_input_file": uri}
    return Split(copy, 0, size), env


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    if first is not None:
        yield first
        yield from rest


def _map_records(outdir: str, index: int, reduces: int) -> Iterator[tuple[int, Any]]:
    """The map's partition files as shuffle records; every reducer gets at least one (possibly
    empty), so it knows every map, as a reducer of the embedded runner does."""
    keyed = shuffle.read_meta(outdir)
    for r in range(reduces):
        with open(os.path.join(outdir, shuffle.partition_name(r)), "rb") as part:
            chunk, seq = part.read(CHUNK), 0
            while True:
                yield r, (index, seq, keyed, chunk)
                chunk, seq = part.read(CHUNK), seq + 1
                if not chunk:
                    break


def _write_runs(items: Iterable[Any], inputs: str) -> shuffle.Fetched:
    """Each map's records back into one file (a sorted run), in the order the map wrote them."""
    os.makedirs(inputs)
    files: dict[int, IO[bytes]] = {}
    last: dict[int, int] = {}
    fetched = shuffle.Fetched()
    try:
        for _, (m, seq, keyed, data) in items:
            if seq != last.get(m, -1) + 1:
                raise RuntimeError(f"map {m} output arrived out of order (chunk {seq})")
            last[m] = seq
            out = files.get(m)
            if out is None:
                out = files[m] = open(os.path.join(inputs, f"map-{m:06d}"), "wb")
            out.write(data)
            fetched.bytes += len(data)
            fetched.records += data.count(b"\n")
            fetched.keyed = fetched.keyed or keyed
    finally:
        for out in files.values():
            out.close()
    fetched.paths = [os.path.join(inputs, f"map-{m:06d}") for m in sorted(files)]
    fetched.maps = len(files)
    return fetched


def _commit(src: str, dst: str) -> None:
    """The first successful attempt of a task publishes its file; a later one (Spark computing
    the task again) finds it there and leaves it."""
    try:
        os.link(src, dst)
    except FileExistsError:
        logger.info("%s is committed already", dst)
    os.unlink(src)


def run_attempt(root: str, spec: TaskSpec, fetched: shuffle.Fetched | None) -> TaskResult:
    """`python -m hstream.runners.sparktask ROOT` in its own session, with hstream importable
    from wherever this process imported it (the zip Spark shipped)."""
    os.makedirs(root)
    env = dict(os.environ)
    home = _unzipped(os.path.dirname(os.path.dirname(os.path.abspath(hstream.__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (home, env.get("PYTHONPATH")) if p)
    message = {"spec": to_dict(spec), "fetched": to_dict(fetched) if fetched else None}
    proc = subprocess.Popen([sys.executable, "-m", "hstream.runners.sparktask", root],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(json.dumps(message).encode())
    finally:
        if proc.poll() is None:  # this worker is being torn down: take the attempt along
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:
        return from_dict(TaskResult, json.loads(out.splitlines()[-1]))
    except (IndexError, ValueError):
        return TaskResult(ok=False, error=f"task runner exited with status {proc.returncode}")


def _unzipped(home: str) -> str:
    """Where hstream's package lies unpacked: its data files are read as files, so the zip
    that `addPyFile` shipped is unpacked once beside itself (a rename makes that atomic)."""
    if not zipfile.is_zipfile(home):
        return home
    target = home + ".unpacked"
    if not os.path.isdir(target):
        temp = tempfile.mkdtemp(prefix=".unpacking-", dir=os.path.dirname(home))
        with zipfile.ZipFile(home) as z:
            z.extractall(temp)
        try:
            os.rename(temp, target)
        except OSError:  # another task was first
            shutil.rmtree(temp, ignore_errors=True)
    return target


def _watch_parent() -> None:
    """If the Python worker dies (Spark killed the task), the attempt dies with it."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    root = (sys.argv[1:] if argv is None else argv)[0]
    message = json.loads(sys.stdin.buffer.read())
    spec = from_dict(TaskSpec, message["spec"])
    logging.basicConfig(level=logging.INFO, filename=os.path.join(root, "task.log"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threading.Thread(target=_watch_parent, daemon=True).start()
    try:
        with open(os.devnull, "wb") as devnull:
            attempt = Attempt(spec, root, protocol.Auth(b""), Reporter(devnull))
            if spec.kind == "map":
                result = run_map(attempt)
            else:
                fetched = from_dict(shuffle.Fetched, message["fetched"])
                result = reduce_fetched(attempt, fetched, Stopwatch())
    except TaskError as e:
        result = TaskResult(ok=False, error=str(e), exit_status=e.exit_status, stderr_tail=e.tail)
    except Exception as e:  # noqa: BLE001 - any crash is this attempt's failure, reported
        logger.exception("attempt failed")
        result = TaskResult(ok=False, error=f"{type(e).__name__}: {e}")
    sys.stdout.write(json.dumps(to_dict(result)) + "\n")
    return 0


def ship_name(index: int, f: ShipFile) -> str:
    """The name a shipped file is added to Spark under: unique even when two have one name."""
    return f"{index}-{os.path.basename(f.path)}"


if __name__ == "__main__":
    sys.exit(main())
