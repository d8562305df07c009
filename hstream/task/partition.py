"""Keys, the partition function, and routing sorted data to partitions at C speed.

A line's key is the text before the `fields`-th separator (the whole line when
it has fewer). The partition of a key is CRC-32 of its bytes modulo the number
of reducers: the same on every host, every run, every Python.

The data path never loops over lines in Python. Map output is routed *after*
it is sorted, when every line of a key is adjacent: `route_sorted` takes each
run of lines that share a key as one regex match (a back-reference compares
the lines in C), so the Python cost is per distinct key, not per line. A
common key's long run is crossed by a few C searches (`_run_end`) instead.
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
    """A regex whose every match is one run of adjacent lines with the same key.

    Group 1 is the key; group 2 (empty) is set when the run goes on past the match, which
    takes at most RUN_LINES lines; group 3 is the key of a line with fewer fields than the
    key has. The back-reference does the line-by-line comparison inside the regex engine,
    so Python sees one match per distinct key instead of one per line. Quantifiers are
    possessive (`*+`, `?+`) where the Python has them right: a run never needs to give a line
    back, and a backtracking repeat keeps state for every line and runs several times slower.
    """
    star, opt = (b"*+", b"?+") if possessive else (b"*", b"?")
    upto = b"{0,%d}" % (RUN_LINES - 1) + (b"+" if possessive else b"")
    sep = re.escape(spec.sep)
    if spec.sep == b"\n":  # the whole line is the key (keyonlytext)
        return re.compile(rb"([^\n]" + star + rb")\n(?:\1\n)" + upto + rb"(?:(?=\1\n)())?")
    char = rb"[^" + sep + rb"\n]" if len(spec.sep) == 1 else rb"(?:(?!" + sep + rb")[^\n])"
    field = char + star
    more = rb"(?:" + sep + field + rb"){%d}" % (spec.fields - 1) if spec.fields > 1 else b""
    rest = rb"(?:" + sep + rb"[^\n]" + star + rb")" + opt + rb"\n"
    # A longer separator can begin inside the key ("a:" + "::x" has key "a"), so a line that
    # starts with a key and the separator need not have that key: then a match is one line.
    same = (rb"(?:\1" + rest + rb")" + upto + rb"(?:(?=\1" + sep + rb")())?"
            if len(spec.sep) == 1 else rb"(?:(?!)())?")
    full = rb"(" + field + more + rb")(?=" + sep + rb"|\n)" + rest + same
    # A line with fewer than `fields` fields is all key: only identical lines share it.
    short = rb"([^\n]" + star + rb")\n(?:\3\n)" + upto
    return re.compile(full + rb"|" + short)


def _possessive_works() -> bool:
    """Python 3.11.2's possessive repeat keeps a failed iteration's partial match (fixed
    later in 3.11): a run would end inside the next line. Worker hosts may run any 3.11."""
    probe = _runs_pattern(KeySpec(), possessive=True)
    return [m.group() for m in probe.finditer(b"ab\t1\nab\t1\nabc\t1\n")] == [
        b"ab\t1\nab\t1\n", b"abc\t1\n"]


#: Lines of a run that one regex match takes; a longer run is crossed by `_run_end`.
RUN_LINES = 16
POSSESSIVE = _possessive_works()
_PATTERNS: dict[KeySpec, re.Pattern[bytes]] = {}


def _pattern(spec: KeySpec) -> re.Pattern[bytes]:
    pattern = _PATTERNS.get(spec)
    if pattern is None:
        pattern = _PATTERNS[spec] = _runs_pattern(spec, POSSESSIVE)
    return pattern


def _unparsed(pos: int) -> ValueError:
    return ValueError(f"unparsed map output at offset {pos}")


def key_runs(buf: bytes, spec: KeySpec) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, key) of each run of lines sharing a key; `buf` is whole lines.

    A run may come as several, each with the same key. One match holds at most RUN_LINES
    lines, so the regex keeps bounded state even where its repeats backtrack."""
    pattern, pos, n = _pattern(spec), 0, len(buf)
    while pos < n:
        for m in pattern.finditer(buf, pos):
            start, end = m.span()
            # Never lose or split a line, whatever the regex engine thought of it.
            if start != pos or buf[end - 1] != 0x0A:
                raise _unparsed(pos)
            found = m.lastindex
            if found == 3:
                pos = end
                yield start, end, m.group(3)
                continue
            key = m.group(1)
            if found == 2:  # a long run: cross it by C searches, then match on from its end
                pos = _run_end(buf, end, b"\n" + key + spec.sep, 2 * (end - start))
                yield start, pos, key
                break
            pos = end
            yield start, end, key
        else:
            break
    if pos != n:
        raise _unparsed(pos)


def _run_end(buf: bytes, end: int, prefix: bytes, width: int) -> int:
    """Where the run ends whose line at `end` begins `prefix[1:]` (key and separator).

    The buffer is sorted, so every line between two lines of a key has that key: the last
    occurrence of `prefix` in a window is a line of the run, and the window doubles until
    the line after that occurrence is not. A common key's run costs a few searches. The
    first window is twice what the run's first lines took, so a run just longer than one
    match scans little beyond its end."""
    head = prefix[1:]
    while True:
        found = buf.rfind(prefix, end - 1, end - 1 + len(prefix) + width)
        end = buf.index(b"\n", found + len(prefix) - 1) + 1
        if not buf.startswith(head, end):
            return end
        width <<= 1


def route_sorted(buf: bytes, spec: KeySpec, sinks: list[Sink],
                 keys: list[Sink] | None = None) -> int:
    """Write each run of `buf` (whole lines, sorted by key) to its partition's sink, and with
    `keys`, the run's key as a line to its partition's keys sink.

    Returns the number of runs (distinct keys in the buffer, up to run splits). Adjacent
    runs of one partition are one slice, and each sink gets its slices in one write: a
    write per slice cost as much as finding the runs."""
    reduces, crc = len(sinks), zlib.crc32
    slices: list[list[bytes]] = [[] for _ in sinks]
    named: list[list[bytes]] = [[] for _ in sinks]
    runs, part, since = 0, -1, 0
    for start, _, key in key_runs(buf, spec):
        p = crc(key) % reduces
        named[p].append(key)
        if p != part:
            if part >= 0:
                slices[part].append(buf[since:start])
            part, since = p, start
        runs += 1
    if part >= 0:
        slices[part].append(buf[since:])
    for sink, parts in zip(sinks, slices, strict=True):
        if parts:
            sink.write(parts[0] if len(parts) == 1 else b"".join(parts))
    for sink, names in zip(keys or (), named, strict=False):
        if names:
            sink.write(b"\n".join(names) + b"\n")
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
