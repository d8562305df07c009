"""Cutting byte streams at newlines, so that every consumer of command output sees whole lines.

Commands write in chunks that end anywhere; spills, partitions and output files
must only ever hold whole lines. A last line without its newline gets one, as
Hadoop's line reader gives it. Stdlib only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class LineCutter:
    """Push side: `cut` returns the whole lines completed by a chunk and keeps the rest."""

    def __init__(self) -> None:
        self._tail = b""

    def cut(self, data: bytes) -> bytes:
        data = self._tail + data
        end = data.rfind(b"\n") + 1
        self._tail = data[end:]
        return data[:end]

    def flush(self) -> bytes:
        """The unfinished last line, newline added; empty if there is none."""
        tail, self._tail = self._tail, b""
        return tail + b"\n" if tail else b""


def whole_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Pull side: the same chunks, re-cut so that each one ends with a newline."""
    cutter = LineCutter()
    for data in chunks:
        lines = cutter.cut(data)
        if lines:
            yield lines
    last = cutter.flush()
    if last:
        yield last
