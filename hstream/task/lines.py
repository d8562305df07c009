"""Cutting byte streams at newlines, so that every consumer of command output sees whole lines.

Commands write in chunks that end anywhere; spills, partitions and output files
must only ever hold whole lines. A last line without its newline gets one, as
Hadoop's line reader gives it. An unfinished line grows in place (linear time,
whatever its length) and never beyond a limit: memory stays bounded by it, and a
longer line fails the attempt with a message naming the setting. Stdlib only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from hstream.hadoop.keyfields import KeySpec

#: Default for `hstream.task.output.line.maxlength` and for hstream's cap on input lines
#: (`mapreduce.input.linerecordreader.line.maxlength`, unlimited in Hadoop).
DEFAULT_MAX_LINE = 64 << 20
OUTPUT_LIMIT = "hstream.task.output.line.maxlength"
INPUT_LIMIT = "mapreduce.input.linerecordreader.line.maxlength"

Lines = bytes | bytearray
#: A buffer up to this size is worked on whole (copies of it are cheap); a line longer than
#: this is handled as slices of its buffer (`windows`), never copied whole.
WINDOW = 4 << 20


class LineTooLong(ValueError):
    """A line longer than its limit; the message names the setting that sets it."""


def line_limit(conf: dict[str, str], name: str) -> int:
    """The limit a property sets (bytes; 0 or less: none)."""
    return int(conf.get(name, DEFAULT_MAX_LINE))


class LineLimit:
    """Watches line lengths across chunks without holding the data: the length of the
    unfinished line is all it keeps."""

    def __init__(self, limit: int, setting: str, where: str) -> None:
        self.limit = limit if limit > 0 else 0
        self.setting = setting
        self.where = where
        self.run = 0

    def check(self, data: Lines) -> None:
        if not self.limit:
            return
        first = data.find(b"\n")
        if first < 0:
            self.run += len(data)
        else:
            last = data.rfind(b"\n")
            if self.run + first > self.limit or (
                    last - first - 1 > self.limit and _longest(data, first + 1, last) > self.limit):
                self.fail()
            self.run = len(data) - last - 1
        if self.run > self.limit:
            self.fail()

    def fail(self) -> None:
        raise LineTooLong(f"{self.where} has a line longer than {self.limit} bytes "
                          f"(the limit {self.setting} sets)")


def _longest(data: Lines, start: int, end: int) -> int:
    """The longest line of data[start:end] (only called when that span exceeds the limit)."""
    return max(map(len, data[start:end].split(b"\n")))


class LineCutter:
    """Push side: `cut` returns the whole lines completed by a chunk and keeps the rest."""

    def __init__(self, limit: LineLimit | None = None) -> None:
        self._tail = bytearray()
        self._limit = limit

    def cut(self, data: bytes) -> Lines:
        if self._limit is not None:
            self._limit.check(data)
        end = data.rfind(b"\n") + 1
        if not end:
            self._tail += data
            return b""
        if not self._tail:
            lines: Lines = data[:end]
        else:  # the unfinished line is handed on as it is: never copied again
            self._tail += memoryview(data)[:end]
            lines = self._tail
        self._tail = bytearray(memoryview(data)[end:])
        return lines

    def flush(self) -> Lines:
        """The unfinished last line, newline added; empty if there is none."""
        tail, self._tail = self._tail, bytearray()
        if tail:
            tail += b"\n"
        return tail


def whole_lines(chunks: Iterable[bytes], limit: LineLimit | None = None) -> Iterator[bytes]:
    """Pull side: the same chunks, re-cut so that each one ends with a newline."""
    cutter = LineCutter(limit)
    for data in chunks:
        lines = cutter.cut(data)
        if lines:
            yield _frozen(lines)
    last = cutter.flush()
    if last:
        yield _frozen(last)


def _frozen(lines: Lines) -> bytes:
    return lines if isinstance(lines, bytes) else bytes(lines)


def windows(buf: Lines, size: int = WINDOW) -> Iterator[tuple[int, int]]:
    """(start, end) spans of whole lines that cover `buf` in order: runs of lines of at most
    `size` bytes, and each line longer than that on its own."""
    start, n = 0, len(buf)
    while start < n:
        stop = buf.rfind(b"\n", start, start + size) + 1
        if stop <= start:  # the line at `start` is longer than `size`
            stop = buf.index(b"\n", start + size) + 1
        yield start, stop
        start = stop


def key_end(buf: Lines, start: int, end: int, key: KeySpec) -> int:
    """Where the key of the line buf[start:end] ends (`KeySpec.key`, by position, no copy)."""
    pos = start - len(key.sep)
    for _ in range(key.fields):
        pos = buf.find(key.sep, pos + len(key.sep), end)
        if pos < 0:
            return end
    return pos
