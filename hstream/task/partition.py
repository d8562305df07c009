"""Keys, the partition function, and routing sorted data to partitions at C speed.

A line's key is the text before the `fields`-th separator (the whole line when
it has fewer). The partition of a key is CRC-32 of its bytes modulo the number
of reducers: the same on every host, every run, every Python.

The data path never loops over lines in Python. Map output is routed *after*
it is sorted, when every line of a key is adjacent: `route_sorted` takes each
run of lines that share a key as one regex match (a back-reference compares
the lines in C), so the Python cost is per distinct key, not per line.
Stdlib only.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from typing import Protocol

from hstream.hadoop.keyfields import KeySpec


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def partition_of(key: bytes, reduces: int) -> int:
    return zlib.crc32(key) % reduces


def _runs_pattern(spec: KeySpec, possessive: bool) -> re.Pattern[bytes]:
    """A regex whose every match is one run of adjacent lines with the same key (group 1).

    The back-reference does the line-by-line comparison inside the regex engine, so Python
    sees one match per distinct key instead of one per line. Quantifiers are possessive
    (`*+`, `?+`) where the Python has them right: a run never needs to give a line back,
    and a backtracking repeat keeps state for every line of the run (hundreds of bytes each)
    and runs several times slower."""
    star, opt = (b"*+", b"?+") if possessive else (b"*", b"?")
    sep = re.escape(spec.sep)
    char = rb"[^" + sep + rb"\n]" if len(spec.sep) == 1 else rb"(?:(?!" + sep + rb")[^\n])"
    field = char + star
    more = rb"(?:" + sep + field + rb"){%d}" % (spec.fields - 1) if spec.fields > 1 else b""
    nkey = field + more
    rest = rb"(?:" + sep + rb"[^\n]" + star + rb")" + opt + rb"\n"
    full = rb"(" + nkey + rb")(?=" + sep + rb"|\n)" + rest + rb"(?:\1" + rest + rb")" + star
    # A line with fewer than `fields` fields is all key: only identical lines share it.
    short = rb"([^\n]" + star + rb")\n(?:\2\n)" + star
    return re.compile(full + rb"|" + short)


def _possessive_works() -> bool:
    """Python 3.11.2's possessive repeat keeps a failed iteration's partial match (fixed
    later in 3.11): a run would end inside the next line. Worker hosts may run any 3.11."""
    probe = _runs_pattern(KeySpec(), possessive=True)
    return [m.group() for m in probe.finditer(b"ab\t1\nab\t1\nabc\t1\n")] == [
        b"ab\t1\nab\t1\n", b"abc\t1\n"]


POSSESSIVE = _possessive_works()
#: Without possessive repeats a run costs regex memory per line: scan in slices this big.
_SLICE = 1 << 30 if POSSESSIVE else 128 << 10
_PATTERNS: dict[KeySpec, re.Pattern[bytes]] = {}


def _pattern(spec: KeySpec) -> re.Pattern[bytes]:
    pattern = _PATTERNS.get(spec)
    if pattern is None:
        pattern = _PATTERNS[spec] = _runs_pattern(spec, POSSESSIVE)
    return pattern


def _slices(buf: bytes) -> Iterator[tuple[int, int]]:
    """(start, stop) of whole-line slices of at most _SLICE bytes (one long line aside)."""
    pos, n = 0, len(buf)
    while pos < n:
        stop = n if n - pos <= _SLICE else (buf.rfind(b"\n", pos, pos + _SLICE) + 1
                                            or buf.find(b"\n", pos + _SLICE) + 1)
        yield pos, stop
        pos = stop


def _unparsed(pos: int) -> ValueError:
    return ValueError(f"unparsed map output at offset {pos}")


def key_runs(buf: bytes, spec: KeySpec) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, key) of each run of lines sharing a key; `buf` is whole lines."""
    pattern = _pattern(spec)
    for pos, stop in _slices(buf):
        for m in pattern.finditer(buf, pos, stop):
            start, end = m.span()
            # Never lose or split a line, whatever the regex engine thought of it.
            if start != pos or buf[end - 1] != 0x0A:
                raise _unparsed(pos)
            pos = end
            key = m.group(1)
            yield start, end, m.group(2) if key is None else key
        if pos != stop:
            raise _unparsed(pos)


def route_sorted(buf: bytes, spec: KeySpec, sinks: list[Sink]) -> int:
    """Write each run of `buf` (whole lines, sorted by key) to its partition's sink.

    Returns the number of runs (distinct keys in the buffer, up to run splits). Adjacent
    runs of one partition go out as one write: a third less of the map's hottest loop."""
    reduces, crc = len(sinks), zlib.crc32
    runs, part, since = 0, -1, 0
    for start, _, key in key_runs(buf, spec):
        p = crc(key) % reduces
        if p != part:
            if part >= 0:
                sinks[part].write(buf[since:start])
            part, since = p, start
        runs += 1
    if part >= 0:
        sinks[part].write(buf[since:])
    return runs


def count_groups(buf: bytes, spec: KeySpec, last_key: bytes | None) -> tuple[int, bytes | None]:
    """Distinct-key count of sorted `buf`, continuing from the previous buffer's last key."""
    groups = 0
    for _, _, key in key_runs(buf, spec):
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
    for sink, lines in zip(sinks, outs, strict=True):
        if lines:
            sink.write(b"".join(lines))
