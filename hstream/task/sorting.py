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

from hstream.hadoop.keyfields import KeySpec
from hstream.task.lines import LineCutter

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
    runs: list[Run] = field(default_factory=list)
    keyed: bool = False
    _proc: subprocess.Popen[bytes] | None = None
    _filled: int = 0
    _pending: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.keyed = bool(self.order.comparator)
        self._low = self.order.key.low_bytes()
        self._lines = LineCutter()

    def write(self, data: bytes) -> None:
        """Add map output; whole lines reach a run, a trailing partial line waits."""
        lines = self._lines.cut(data)
        if lines:
            self._write_lines(lines)

    def _write_lines(self, data: bytes) -> None:
        if not self.keyed and self._low is not None and self._low(data):
            if self._proc is not None:
                self._end_run()
            self.keyed = True
            logger.debug("a key holds a byte below the separator: sorting by key field")
        while data:
            if self._proc is None:
                self._start_run()
            room = self.buffer - self._filled
            if len(data) <= room:
                self._feed(data)
                return
            cut = data.rfind(b"\n", 0, room) + 1 or data.find(b"\n", room) + 1
            self._feed(data[:cut])
            data = data[cut:]
            self._end_run()

    def _feed(self, data: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(data)
        self._filled += len(data)
        self.runs[-1].records += data.count(b"\n")

    def _start_run(self) -> None:
        path = os.path.join(self.workdir, f"spill{len(self.runs)}.out")
        argv = sort_command(self.order, self.keyed, self.buffer + (self.buffer >> 2), self.workdir)
        with open(path, "wb") as out:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, env=sort_env())
        self.runs.append(Run(path, self.keyed))
        self._filled = 0

    def _end_run(self) -> None:
        """Close the current spill; it sorts while the next one fills (two at most)."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.close()
        self._wait_pending()
        self._pending, self._proc = self._proc, None

    def _wait_pending(self) -> None:
        if self._pending is not None:
            if self._pending.wait() != 0:
                raise OSError(f"sort failed with status {self._pending.returncode}")
            self._pending = None

    def close(self) -> list[Run]:
        last = self._lines.flush()
        if last:
            self._write_lines(last)
        if self._proc is not None:
            self._end_run()
        self._wait_pending()
        return self.runs


def merge_command(order: SortOrder, runs: list[Run], buffer: int, tmpdir: str) -> list[str]:
    keyed = any(r.keyed for r in runs)
    return sort_command(order, keyed, buffer, tmpdir, merge=True) + [r.path for r in runs]
