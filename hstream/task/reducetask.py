"""A reduce attempt: fetch its partition of every map -> `sort -m` -> reducer -> part file.

Small partitions arrive sorted together in a few packs (`shuffle.Packs`), each one run of
the merge, where that gives the same bytes (`pack_plan`).

The merge feeds the reducer through a plain pipe, so no Python touches the
reducer's input; a second `sort -m -u` beside it counts the groups (over the maps' keys
files, when every map on this host wrote one). Only when
the reducer must see lines rewritten (another input separator) does Python sit
in between. Stdlib only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import IO, Any

from hstream.hadoop import command as commands
from hstream.hadoop import keyfields
from hstream.hadoop.command import unescape
from hstream.hadoop.keyfields import KeySpec
from hstream.job import TaskResult
from hstream.task import mapcodec, shuffle
from hstream.task.attempt import (
    CHUNK,
    Attempt,
    Liveness,
    Stopwatch,
    close_input,
    pump_lines,
    read_bytes,
    sort_order,
    user_errors,
)
from hstream.task.lines import WINDOW, Lines, key_end, windows
from hstream.task.partition import count_groups
from hstream.task.sorting import Run, SortOrder, merge_command, sort_env, sort_failed


def run_reduce(attempt: Attempt, arrivals: IO[bytes] | None = None) -> TaskResult:
    """Fetch (maps that finish later arrive on `arrivals`), then merge and reduce."""
    spec = attempt.spec
    inputs = os.path.join(attempt.root, "inputs")
    os.makedirs(inputs, exist_ok=True)
    watch = Stopwatch()
    total = max(spec.num_maps, len(spec.sources), 1)
    with user_errors():  # a pack's sort that failed: one clear line
        # Map output files on this host are merged where they are, unless the job compresses
        # map output: its fetched files are decompressed in place (`decompress_fetched`).
        fetched = shuffle.fetch_all(spec, inputs, attempt.auth, arrivals,
                                    lambda n: attempt.progress(n / total / 3),
                                    pack_plan(attempt.conf, attempt.buffer, attempt.tmp),
                                    in_place=mapcodec.codec(attempt.conf) is None)
    watch.lap(f"fetch ({len(spec.sources)} maps)")
    if fetched.failed_map is not None:
        return TaskResult(ok=False, fetch_failed_map=fetched.failed_map,
                          error=f"could not fetch map {fetched.failed_map} output: {fetched.error}")
    records = mapcodec.decompress_fetched(fetched.paths, attempt.conf)
    if records is not None:
        fetched.records = records
    result = reduce_fetched(attempt, fetched, watch)
    shutil.rmtree(inputs, ignore_errors=True)
    return result


def pack_plan(conf: dict[str, str], buffer: int, tmpdir: str) -> shuffle.PackPlan | None:
    """Small segments are packed only where the result is the same bytes as merging a file
    per map: compressed segments are decompressed as files after the fetch, and a comparator
    sorts stably, so equal keys keep the order of the merge's inputs (map order), which packs
    filled in arrival order would not."""
    order = sort_order(conf)
    if order.comparator or mapcodec.codec(conf) is not None:
        return None
    return shuffle.PackPlan(order, buffer, tmpdir)


@user_errors()
def reduce_fetched(attempt: Attempt, fetched: shuffle.Fetched, watch: Stopwatch) -> TaskResult:
    """Merge the map outputs on local disk (sorted runs) through the reducer into the part
    file; the Spark runner calls this with what Spark's shuffle delivered."""
    spec = attempt.spec
    attempt.count("Reduce shuffle bytes", fetched.bytes)
    attempt.bytes_fetched = fetched.bytes
    attempt.progress(1 / 3, force=True)
    attempt.count("Shuffled Maps", fetched.maps)
    order = sort_order(attempt.conf)
    runs = [Run(p, fetched.keyed) for p in fetched.paths]
    argv = merge_command(order, runs, attempt.buffer, attempt.tmp) if runs else ["cat", "/dev/null"]
    merge = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sort_env())
    assert merge.stdout is not None
    rejoin = keyfields.reduce_input_rejoiner(attempt.conf, order.key, spec.command)
    errors: list[BaseException] = []
    if rejoin is None:
        # The common case: the merge feeds the reducer through a plain pipe, no Python between.
        proc = attempt.start(spec.command, "reduce", merge.stdout, subprocess.PIPE)
        merge.stdout.close()
        attempt.count("Reduce input records", fetched.records)
        side: threading.Thread = _GroupCounter(attempt, order, _group_runs(runs, fetched.keys))
    else:
        proc = attempt.start(spec.command, "reduce", subprocess.PIPE, subprocess.PIPE)
        side = threading.Thread(target=_feed_reducer, daemon=True, name="feeder",
                                args=(merge, proc, attempt, order, rejoin, errors))
    side.start()
    total = max(fetched.bytes, 1)
    # Hadoop's reduce progress: a third for the copy, the rest as the merge reads its input.
    live = Liveness(attempt, proc.pid,
                    lambda: 1 / 3 + 2 / 3 * min(read_bytes(merge.pid) / total, 1))
    live.start()
    # A built-in Java reducer (aggregate, field selection) writes finished output lines.
    writer = attempt.output_writer(keyfields.reduce_key(attempt.conf),
                                   commands.is_java_builtin(spec.command))
    # A reducer that got no input runs, but Hadoop drops what it writes and reports
    # (PipeMapRed.waitOutputThreads: a collector that discards, Reporter.NULL).
    empty = fetched.records == 0
    attempt.drain(proc, _discard if empty else writer.write, eager=True)
    attempt.check_exit(proc, "reducer")
    live.stop()
    # The group counter reads files and always ends; a feeder may be stuck on a pipe that only
    # a background child of the reducer still holds.
    side.join(attempt.grace if rejoin is not None else None)
    if merge.wait() not in (0, -signal.SIGPIPE) and not errors:
        raise sort_failed(merge, "merging reduce input", attempt.tmp)
    output_file = attempt.publish(writer.close())
    watch.lap("merge and reduce")
    attempt.count("Reduce output records", writer.records)
    attempt.count("Bytes Written", writer.bytes, "File Output Format Counters")
    if not empty:
        attempt.user_counters()
    return TaskResult(ok=True, counters=attempt.counters, output_file=output_file)


def _discard(data: bytes) -> None:
    """Where an empty reducer's output goes."""


def _rejoin_long(buf: Lines, start: int, end: int, key: KeySpec, sep: bytes,
                 write: Callable[[memoryview | bytes], object]) -> bytes | tuple[int, bytes]:
    """`keyfields.reduce_input_rejoiner` for the one line buf[start:end]; returns its key,
    or for a long key its length and digest (no short key can equal it)."""
    view = memoryview(buf)
    kend = key_end(buf, start, end - 1, key)
    write(view[start:kend])
    write(sep)
    write(view[min(kend + len(key.sep), end - 1):end])
    k = view[start:kend]
    return bytes(k) if len(k) <= WINDOW else (len(k), hashlib.sha256(k).digest())


def _group_runs(runs: list[Run], keys: dict[str, str]) -> list[Run]:
    """What the group counter merges: the maps' keys files when every run has one (a line
    per run of a key there, not per record), else the runs themselves."""
    if runs and all(r.path in keys for r in runs):
        return [Run(keys[r.path], True) for r in runs]
    return runs


class _GroupCounter(threading.Thread):
    """Counts reduce input groups beside the reducer: a second, C-speed `sort -m -u` over the
    same inputs (or their keys files) prints one line per group, so no Python touches the
    reducer's input."""

    def __init__(self, attempt: Attempt, order: SortOrder, runs: list[Run]) -> None:
        super().__init__(daemon=True, name="groups")
        self.attempt = attempt
        self.order = order
        self.runs = runs

    def run(self) -> None:
        groups = 0
        if self.runs:
            keyed = [Run(r.path, True) for r in self.runs]
            argv = merge_command(self.order, keyed, 1 << 20, self.attempt.tmp) + ["--unique"]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    env=sort_env())
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read(CHUNK), b""):  # type: ignore[union-attr]
                groups += chunk.count(b"\n")
            proc.wait()
        self.attempt.count("Reduce input groups", groups)


def _feed_reducer(merge: subprocess.Popen[bytes], proc: subprocess.Popen[bytes], attempt: Attempt,
                  order: SortOrder, rejoin: Any, errors: list[BaseException]) -> None:
    """The slow path, for when the reducer must see lines rewritten (a different input
    separator): Python rewrites each buffer and counts groups on the way."""
    assert merge.stdout is not None and proc.stdin is not None
    stdin = proc.stdin
    records = groups = 0
    last: bytes | tuple[int, bytes] | None = None  # a long key is kept as (length, digest)
    key = order.key

    sep = unescape(attempt.conf.get("stream.reduce.input.field.separator", "\t"))

    def consume(lines: Lines) -> None:
        nonlocal records, groups, last
        records += lines.count(b"\n")
        for start, end in windows(lines):
            if end - start > WINDOW:  # one long line: written as slices, never copied whole
                k = _rejoin_long(lines, start, end, key, sep, stdin.write)
                groups, last = groups + (k != last), k
                continue
            buf = bytes(memoryview(lines)[start:end])
            n, last = count_groups(buf, key, last if isinstance(last, bytes) else None)
            groups += n
            stdin.write(rejoin(buf))

    try:
        pump_lines(merge.stdout, consume)
    except BrokenPipeError:
        merge.kill()
    except BaseException as e:  # noqa: BLE001
        errors.append(e)
    finally:
        close_input(stdin)
        attempt.count("Reduce input records", records)
        attempt.count("Reduce input groups", groups)
