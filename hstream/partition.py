"""Keys, the partition function, and routing sorted data to partitions at C speed.

A line's key is the text before the `fields`-th separator (the whole line when
it has fewer). The partition of a key is CRC-32 of its bytes modulo the number
of reducers: the same on every host, every run, every Python.

The data path never loops over lines in Python. Map output is routed *after*
it is sorted, when every line of a key is adjacent: `route_sorted` finds the
end of each run of lines that share a key by galloping over the buffer with
`bytes.startswith`/`rfind`, so the Python cost is per distinct key, not per
line. Stdlib only.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class KeySpec:
    """How a line splits into key and value (`stream.map.output.field.separator` etc.)."""

    sep: bytes = b"\t"
    fields: int = 1

    def key(self, line: bytes) -> bytes:
        """The key of one line (without its newline)."""
        if self.fields == 1:
            i = line.find(self.sep)
            return line if i < 0 else line[:i]
        pos = -len(self.sep)
        for _ in range(self.fields):
            pos = line.find(self.sep, pos + len(self.sep))
            if pos < 0:
                return line
        return line[:pos]

    def low_bytes(self) -> re.Pattern[bytes] | None:
        """Bytes that sort below the separator (newline excepted): where they occur in a key,
        sorting whole lines is no longer sorting by key."""
        first = self.sep[0]
        chars = [c for c in range(first) if c != 0x0A]
        if not chars:
            return None
        return re.compile(b"[" + b"".join(re.escape(bytes([c])) for c in chars) + b"]")


def partition_of(key: bytes, reduces: int) -> int:
    return zlib.crc32(key) % reduces


def _run_end(buf: bytes, start: int, first_eol: int, prefix: bytes) -> int:
    """End (exclusive) of the run of lines from `start` that all begin with `prefix`.

    Gallops forward over line starts, then bisects: O(log run length) C calls."""
    n = len(buf)
    good = start  # start of the last line known to begin with prefix
    nxt = first_eol + 1
    if nxt >= n or not buf.startswith(prefix, nxt):
        return nxt
    good = nxt
    step = max(64, (nxt - start) * 2)
    bad = n  # offset at or before which the first non-matching line starts
    while True:
        probe = good + step
        if probe >= n:
            probe = n
            line = buf.rfind(b"\n", good, probe - 1) + 1
        else:
            line = buf.rfind(b"\n", good, probe) + 1
        if line <= good:
            if probe >= n:
                break
            step *= 2
            continue
        if buf.startswith(prefix, line):
            good = line
            if probe >= n:
                break
            step *= 2
        else:
            bad = line
            break
    while True:  # bisect between good (matches) and bad (does not, or end)
        mid = (good + bad) // 2
        line = buf.rfind(b"\n", good, mid) + 1
        if line <= good:
            line = buf.find(b"\n", good, bad) + 1
            if line <= 0 or line >= bad:
                break
            if buf.startswith(prefix, line):
                good = line
                continue
            bad = line
            break
        if buf.startswith(prefix, line):
            good = line
        else:
            bad = line
    end = buf.find(b"\n", good)
    return n if end < 0 else end + 1


def key_runs(buf: bytes, spec: KeySpec) -> Callable[[], tuple[int, int, bytes] | None]:
    """Iterator-like: each call returns (start, end, key) of the next run of one key."""
    pos = 0
    n = len(buf)

    def next_run() -> tuple[int, int, bytes] | None:
        nonlocal pos
        if pos >= n:
            return None
        eol = buf.find(b"\n", pos)
        line = buf[pos:eol]
        key = spec.key(line)
        prefix = buf[pos: pos + len(key) + (len(spec.sep) if len(key) < len(line) else 1)]
        end = _run_end(buf, pos, eol, prefix)
        start, pos = pos, end
        return start, end, key

    return next_run


def route_sorted(buf: bytes, spec: KeySpec, sinks: list[Sink]) -> int:
    """Write each run of `buf` (whole lines, sorted by key) to its partition's sink.

    Returns the number of runs (distinct keys in the buffer, up to run splits)."""
    reduces = len(sinks)
    runs = 0
    next_run = key_runs(buf, spec)
    while (run := next_run()) is not None:
        start, end, key = run
        sinks[zlib.crc32(key) % reduces].write(buf[start:end])
        runs += 1
    return runs


def count_groups(buf: bytes, spec: KeySpec, last_key: bytes | None) -> tuple[int, bytes | None]:
    """Distinct-key count of sorted `buf`, continuing from the previous buffer's last key."""
    groups = 0
    next_run = key_runs(buf, spec)
    while (run := next_run()) is not None:
        key = run[2]
        if key != last_key:
            groups += 1
            last_key = key
    return groups, last_key


def route_lines(buf: bytes, part_key: Callable[[bytes], bytes], sinks: list[Sink]) -> None:
    """The general (slow) path for partitioners that look inside the key: line by line."""
    reduces = len(sinks)
    outs: list[list[bytes]] = [[] for _ in sinks]
    lines = buf.split(b"\n")
    lines.pop()  # buf ends with a newline
    for line in lines:
        outs[zlib.crc32(part_key(line)) % reduces].append(line + b"\n")
    for sink, lines in zip(sinks, outs):
        if lines:
            sink.write(b"".join(lines))
