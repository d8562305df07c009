"""Sorting map output with GNU sort: bounded-memory spills, then one merge.

Every host has coreutils `sort`, which sorts and merges in C far faster than
Python can touch lines. The map side works like Hadoop's: output accumulates
in a buffer of `hstream.sort.buffer.bytes`; each full buffer is one *spill*, a
`sort` process that writes a sorted run to disk; at the end `sort -m` merges
the runs. Memory is bounded by the buffer, never by the input.

Byte order on whole lines equals byte order on keys unless a key holds a byte
below the separator (see `KeySpec.low_bytes`). Whole-line sorting is about 1.8
times faster, so a spill sorts whole lines while its data has no such byte and
switches to a key sort (`-t SEP -k1,N`) as soon as one appears. Runs of both
kinds are in the same order where they can differ in no way, so one key-order
merge serves any mix.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass, field
from typing import cast

from hstream.hadoop.keyfields import KeySpec
from hstream.task.lines import LineCutter, LineLimit, Lines

logger = logging.getLogger(__name__)

DEFAULT_BUFFER = 64 << 20
SORT_ENV = {"LC_ALL": "C"}


@dataclass(frozen=True)
class SortOrder:
    """How map output is ordered: by key (default) or by a KeyFieldBasedComparator spec."""

    key: KeySpec = KeySpec()
    #: GNU-sort style options of `mapreduce.partition.keycomparator.options`, already
    #: translated to sort arguments (for example ["-k2,2nr"]); empty for the default order.
    comparator: tuple[str, ...] = ()
    #: Field separator inside the key, for the comparator.
    key_field_sep: bytes = b"\t"

    def argv(self, keyed: bool) -> list[str]:
        if self.comparator:
            return ["-s", "-t", _sep_arg(self.key_field_sep), *self.comparator]
        if not keyed:
            return []
        return ["-t", _sep_arg(self.key.sep), f"-k1,{self.key.fields}"]


def _sep_arg(sep: bytes) -> str:
    return sep.decode("latin-1")


def sort_command(order: SortOrder, keyed: bool, buffer: int, tmpdir: str,
                 merge: bool = False) -> list[str]:
    argv = ["sort", f"--buffer-size={max(buffer, 1 << 20) // 1024}K",
            f"--temporary-directory={tmpdir}",
            "--parallel=1"]
    if merge:
        argv.append("--merge")
    return argv + order.argv(keyed)


def sort_env() -> dict[str, str]:
    return {**os.environ, **SORT_ENV}


@dataclass
class Run:
    path: str
    keyed: bool
    records: int = 0


@dataclass
class Spiller:
    """Takes map output in arbitrary chunks, writes sorted runs of at most `buffer` bytes."""

    order: SortOrder
    buffer: int
    workdir: str
    limit: LineLimit | None = None
    runs: list[Run] = field(default_factory=list)
    keyed: bool = False
    _proc: subprocess.Popen[bytes] | None = None
    _filled: int = 0
    _pending: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.keyed = bool(self.order.comparator)
        self._low = self.order.key.low_bytes()
        self._lines = LineCutter(self.limit)

    def write(self, data: bytes) -> None:
        """Add map output; whole lines reach a run, a trailing partial line waits."""
        lines = self._lines.cut(data)
        if lines:
            self._write_lines(lines)

    def _write_lines(self, data: Lines) -> None:
        if not self.keyed and self._low is not None and self._low(cast(bytes, data)):
            if self._proc is not None:
                self._end_run()
            self.keyed = True
            logger.debug("a key holds a byte below the separator: sorting by key field")
        pos, n = 0, len(data)  # slices go out as views: a long line is never copied
        while pos < n:
            if self._proc is None:
                self._start_run()
            room = self.buffer - self._filled
            if n - pos <= room:
                self._feed(data, pos, n)
                return
            cut = data.rfind(b"\n", pos, pos + room) + 1 or data.find(b"\n", pos + room) + 1
            self._feed(data, pos, cut)
            pos = cut
            self._end_run()

    def _feed(self, data: Lines, start: int, end: int) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(memoryview(data)[start:end])
        except BrokenPipeError:  # the sort died; its own message says why
            raise sort_failed(self._proc, "spilling map output", self.workdir) from None
        self._filled += end - start
        self.runs[-1].records += data.count(b"\n", start, end)

    def _start_run(self) -> None:
        path = os.path.join(self.workdir, f"spill{len(self.runs)}.out")
        argv = sort_command(self.order, self.keyed, self.buffer + (self.buffer >> 2), self.workdir)
        with open(path, "wb") as out:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out,
                                          stderr=subprocess.PIPE, env=sort_env())
        self.runs.append(Run(path, self.keyed))
        self._filled = 0

    def _end_run(self) -> None:
        """Close the current spill; it sorts while the next one fills (two at most)."""
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            raise sort_failed(self._proc, "spilling map output", self.workdir) from None
        self._wait_pending()
        self._pending, self._proc = self._proc, None

    def _wait_pending(self) -> None:
        if self._pending is not None:
            if self._pending.wait() != 0:
                raise sort_failed(self._pending, "spilling map output", self.workdir)
            self._pending = None

    def close(self) -> list[Run]:
        last = self._lines.flush()
        if last:
            self._write_lines(last)
        if self._proc is not None:
            self._end_run()
        self._wait_pending()
        return self.runs


class SortFailed(OSError):
    """A `sort` failed; the message says what it was doing and why, in one line."""


def sort_failed(proc: subprocess.Popen[bytes], what: str, where: str) -> SortFailed:
    """The error for a failed sort, from its stderr (read once it has exited): a full disk
    is named as such, with the directory, instead of sort's raw `write failed`."""
    status = proc.wait()
    err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
    return SortFailed(f"{what} failed: {describe_sort_error(err, status, where)}")


def describe_sort_error(err: str, status: int, where: str) -> str:
    if "No space left on device" in err:
        return f"no space left on device in {where}"
    last = err.splitlines()[-1] if err else ""
    return last.removeprefix("sort: ") or f"sort exited with status {status}"


def merge_command(order: SortOrder, runs: list[Run], buffer: int, tmpdir: str) -> list[str]:
    keyed = any(r.keyed for r in runs)
    return sort_command(order, keyed, buffer, tmpdir, merge=True) + [r.path for r in runs]
