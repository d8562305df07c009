"""A map attempt: split -> mapper -> sorted spills -> one sorted file per reducer.

The split streams into the mapper on a feeder thread; the mapper's output fills
`Spiller` runs (GNU sort, bounded buffer; compressed with mapreduce.map.output.compress);
the runs are merged once and routed to one sorted partition file per reducer, through
`combiner | sort` when there is a combiner. A map-only job writes the mapper's output as its
part file. Stdlib only.
"""

from __future__ import annotations

import os
import subprocess
import zlib
from collections.abc import Iterator
from typing import Any

from hstream.hadoop import command as commands
from hstream.hadoop import keyfields
from hstream.hadoop.keyfields import KeySpec
from hstream.job import Split, TaskResult
from hstream.task import mapcodec, records, remote, shuffle
from hstream.task.attempt import (
    CHUNK,
    Attempt,
    Liveness,
    Stopwatch,
    TaskError,
    close_input,
    pump_lines,
    sort_order,
    user_errors,
)
from hstream.task.lines import INPUT_LIMIT, WINDOW, LineLimit, Lines, key_end, line_limit, windows
from hstream.task.partition import route_lines, route_sorted
from hstream.task.pooled import Pooled
from hstream.task.sorting import (
    Run,
    SortOrder,
    Spiller,
    merge_to_file,
    merged_runs,
    sort_command,
    sort_env,
)
from hstream.task.splits import read_split


def _feed(proc: subprocess.Popen[bytes], chunks: Iterator[bytes], attempt: Attempt,
          total: int, errors: list[BaseException]) -> None:
    """Stream the split into the mapper; a mapper that stops reading early is its own business."""
    stdin = proc.stdin
    assert stdin is not None
    records = done = 0
    try:
        for data in chunks:
            records += data.count(b"\n")
            done += len(data)
            stdin.write(data)
            attempt.bytes_read = done
            attempt.fraction = min(done / total, 1.0) if total else 0.0
            attempt.progress(attempt.fraction)
    except BrokenPipeError:
        pass
    except BaseException as e:  # noqa: BLE001 - reported by the main thread
        errors.append(e)
        proc.kill()  # bad input: its output is no use, and the error is the input's
    finally:
        close_input(stdin)
        attempt.count("Map input records", records)
        attempt.count("Bytes Read", done, "File Input Format Counters")


def _map_input(attempt: Attempt) -> Iterator[bytes]:
    spec = attempt.spec
    assert spec.split is not None
    max_line = line_limit(attempt.conf, INPUT_LIMIT)

    def read(split: Split) -> Iterator[bytes]:  # one file's range (a combined split has many)
        if spec.shared_fs:
            chunks = read_split(split, max_line=max_line)
        else:
            chunks = remote.read_remote_split(spec.manager, attempt.auth, spec.job_id, split)
        return _bounded(chunks, LineLimit(max_line, INPUT_LIMIT, split.path))

    return records.map_input(spec.split, attempt.conf, read)


def _bounded(chunks: Iterator[bytes], limit: LineLimit) -> Iterator[bytes]:
    """The input as it is, failing at the first line longer than the limit (a file that is
    one endless line must not stream into the mapper for ever)."""
    for data in chunks:
        limit.check(data)
        yield data


@user_errors()
def run_map(attempt: Attempt) -> TaskResult:
    spec = attempt.spec
    assert spec.split is not None
    errors: list[BaseException] = []
    proc = attempt.start(spec.command, "map", subprocess.PIPE, subprocess.PIPE)
    feeder = Pooled(target=_feed, name="feeder",
                    args=(proc, _map_input(attempt), attempt, spec.split.length, errors))
    feeder.start()
    live = Liveness(attempt, proc.pid, lambda: attempt.fraction)
    live.start()
    assert proc.stdout is not None
    output_file = None
    packed = None
    if spec.num_reduces == 0:
        writer = attempt.output_writer(keyfields.map_key(attempt.conf))
        attempt.drain(proc, writer.write, eager=True)
        _check_input(feeder, errors, attempt)
        attempt.check_exit(proc, "mapper")
        output_file = attempt.publish(writer.close())
        attempt.count("Map output records", writer.records)
        attempt.count("Bytes Written", writer.bytes, "File Output Format Counters")
    else:
        watch = Stopwatch()
        order = sort_order(attempt.conf)
        spiller = Spiller(order, attempt.buffer, attempt.tmp, attempt.output_limit(),
                          codec=mapcodec.spill_codec(attempt.conf))
        out_bytes = attempt.drain(proc, spiller.write)
        _check_input(feeder, errors, attempt)
        runs = spiller.close(keep_small=attempt.packs and not spec.combiner)
        small = spiller.small
        attempt.check_exit(proc, "mapper")
        spilled = sum(os.path.getsize(r.path) for r in runs)
        watch.lap(f"map and sort ({len(runs)} spills, {spilled} bytes on disk)")
        records = sum(r.records for r in runs) if small is None else small.count(b"\n")
        attempt.count("Map output records", records)
        attempt.count("Map output bytes", out_bytes)
        attempt.count("Spilled Records", records)
        if small is not None:
            packed = _pack(attempt, order, small)
        else:
            _partition(attempt, order, runs)
        watch.lap(f"merge and partition ({spec.num_reduces} partitions)")
    live.stop()
    attempt.user_counters()
    return TaskResult(ok=True, counters=attempt.counters, output_file=output_file, packed=packed)


def _check_input(feeder: Pooled, errors: list[BaseException],
                 attempt: Attempt) -> None:
    """Once the mapper's output has ended, its input was all read or it failed; a feeder
    still writing feeds a pipe that only a background child of the mapper holds."""
    feeder.join(attempt.grace)
    if errors:
        raise TaskError(f"reading input failed: {errors[0]}")


def _partition(attempt: Attempt, order: SortOrder, runs: list[Run]) -> None:
    """Merge the spills and write one sorted file per reducer into the map output dir."""
    spec = attempt.spec
    outdir = shuffle.map_output_dir(attempt.job_dir, spec.attempt_id)
    os.makedirs(outdir, exist_ok=True)
    keyed = any(r.keyed for r in runs)
    if len(runs) > 1:
        attempt.count("Spilled Records", sum(r.records for r in runs))
    counts = None  # partitions' line counts, where known for free
    if spec.num_reduces == 1 and not spec.combiner:
        _single_partition(attempt, order, runs, os.path.join(outdir, shuffle.partition_name(0)))
        counts = [sum(r.records for r in runs)]
    else:
        _route(attempt, order, runs, outdir)
    for r in runs:
        if os.path.exists(r.path):
            os.unlink(r.path)
    compressed = mapcodec.compress_partitions(outdir, attempt.conf)
    if compressed is not None:
        attempt.count("Map output materialized bytes", compressed)
    shuffle.write_meta(outdir, keyed or spec.combiner is not None, counts)


def _pack(attempt: Attempt, order: SortOrder, data: bytes) -> list[int]:
    """A small map's sorted output, routed in memory and appended to its runner's pack."""
    reduces = attempt.spec.num_reduces
    if reduces == 1:
        return shuffle.append_pack(attempt.job_dir, [data])
    sinks = [_MemorySink() for _ in range(reduces)]
    if data:
        _router(attempt, order, sinks)(data)
    return shuffle.append_pack(attempt.job_dir, [bytes(s.data) for s in sinks])


class _MemorySink:
    """One reducer's share of a small map's output, before it goes to the pack."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes | memoryview, lines: int | None = None) -> None:
        self.data += data


def _single_partition(attempt: Attempt, order: SortOrder, runs: list[Run], path: str) -> None:
    """One reducer: no routing at all; the run is the partition, or `sort -m` writes it."""
    if not runs:
        open(path, "wb").close()
    else:
        merge_to_file(order, runs, attempt.buffer, attempt.tmp, path, "merging map output")


def _route(attempt: Attempt, order: SortOrder, runs: list[Run], outdir: str) -> None:
    spec = attempt.spec
    sinks = [_PartitionSink(attempt, order, os.path.join(outdir, shuffle.partition_name(r)))
             for r in range(spec.num_reduces)]
    keys = ([_StagedFile(os.path.join(outdir, shuffle.keys_name(r)))
             for r in range(spec.num_reduces)] if _keys_known(attempt, order) else None)
    router = _router(attempt, order, sinks, keys)
    if runs:
        with merged_runs(order, runs, attempt.buffer, attempt.tmp, "merging map output") as merged:
            pump_lines(merged, router)
    for sink in sinks:
        sink.close()
    for names in keys or []:
        names.close()
    if spec.combiner:
        attempt.count("Combine input records", sum(s.records for s in sinks))
        attempt.count("Combine output records", sum(s.combined for s in sinks))


def _keys_known(attempt: Attempt, order: SortOrder) -> bool:
    """Whether routing names each partition's keys for free, and they are the keys the
    reducer groups by: the default partitioner and order, no combiner (it makes new keys),
    a one-byte separator (what `sort -t` takes), and output a reducer may read in place
    (not compressed)."""
    return not (attempt.spec.combiner or attempt.conf.get("hstream.partitioner")
                or order.comparator or len(order.key.sep) != 1
                or mapcodec.codec(attempt.conf) is not None)


class _StagedFile:
    """A map output file that appears whole at `path` when closed (written beside it first):
    a partition, or its keys, a line each in the partition's order (a key whose run spans two
    buffers comes twice), from which its reducer counts its input groups instead of merging
    the whole data again (`shuffle.keys_name`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = open(path + ".tmp", "wb")

    def write(self, data: bytes | memoryview) -> None:
        self.file.write(data)

    def close(self) -> None:
        self.file.close()
        os.replace(self.path + ".tmp", self.path)


def _router(attempt: Attempt, order: SortOrder, sinks: list[Any],
            keys: list[Any] | None = None) -> Any:
    """Buffers of whole lines to their partitions (and their keys to `keys`): windows of
    short lines by the C-speed routes, each long line as a slice of its buffer (memory stays
    near the line limit)."""
    partitioner = attempt.conf.get("hstream.partitioner", "")
    part_key = keyfields.partition_key(attempt.conf) if partitioner else None

    def route(buf: bytes) -> None:
        if part_key is not None:
            route_lines(buf, part_key, sinks)
        elif order.comparator:
            route_lines(buf, order.key.key, sinks)
        else:
            route_sorted(buf, order.key, sinks, keys)

    def routed(buf: Lines) -> None:
        if len(buf) <= WINDOW:
            route(bytes(buf))
            return
        for start, end in windows(buf):
            if end - start <= WINDOW:
                route(bytes(memoryview(buf)[start:end]))
            else:
                _route_long(buf, start, end, order.key, part_key, sinks, keys)

    return routed


def _route_long(buf: Lines, start: int, end: int, key: KeySpec, part_key: Any,
                sinks: list[Any], keys: list[Any] | None = None) -> None:
    """One long line, buf[start:end], to its partition by the same key as the routes above,
    written as a slice of its buffer."""
    view = memoryview(buf)
    k = view[start:key_end(buf, start, end - 1, key)]
    part = zlib.crc32(part_key(bytes(k)) if part_key is not None else k) % len(sinks)
    sinks[part].write(view[start:end], 1)
    if keys is not None:
        keys[part].write(k)
        keys[part].write(b"\n")


class _PartitionSink:
    """One reducer's share of this map's output: a file, or `combiner | sort` into one."""

    def __init__(self, attempt: Attempt, order: SortOrder, path: str) -> None:
        self.path = path
        self.records = 0
        self.combined = 0
        self.out = _StagedFile(path)
        self.combiner: subprocess.Popen[bytes] | None = None
        self.sort: subprocess.Popen[bytes] | None = None
        self.attempt = attempt
        if attempt.spec.combiner:
            spills = mapcodec.spill_codec(attempt.conf)
            argv = sort_command(order, True, 16 << 20, attempt.tmp,
                                compress=spills.program if spills else None)
            self.sort = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=self.out.file,
                                         env=sort_env())
            try:
                cargv = commands.resolve(attempt.spec.combiner, attempt.work, kind="combine")
            except OSError as e:
                raise TaskError(f"combiner: {e}") from None
            self.combiner = subprocess.Popen(cargv, stdin=subprocess.PIPE, stdout=self.sort.stdin,
                                             cwd=attempt.work, env=attempt.environment())
            assert self.sort.stdin is not None
            self.sort.stdin.close()

    def write(self, data: bytes | memoryview, lines: int | None = None) -> None:
        """Lines for this partition (`lines` of them, if the caller counted); they are
        counted only for the combiner's counters."""
        if self.combiner is not None:
            if lines is None:
                assert not isinstance(data, memoryview)
                lines = data.count(b"\n")
            self.records += lines
            assert self.combiner.stdin is not None
            self.combiner.stdin.write(data)
        else:
            self.out.write(data)

    def close(self) -> None:
        if self.combiner is not None and self.sort is not None:
            assert self.combiner.stdin is not None
            self.combiner.stdin.close()
            if self.combiner.wait() != 0:
                raise TaskError(f"combiner subprocess failed with code {self.combiner.returncode}")
            if self.sort.wait() != 0:
                raise TaskError("sorting combiner output failed")
        self.out.close()
        if self.combiner is not None:
            with open(self.path, "rb") as f:
                chunks = iter(lambda: f.read(CHUNK), b"")
                self.combined = sum(chunk.count(b"\n") for chunk in chunks)
