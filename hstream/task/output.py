"""Writing a task's final output the way Hadoop's TextOutputFormat does.

A line's key/value split is redone with the output separator settings and the
pair written as key, `mapreduce.output.textoutputformat.separator`, value; a
line with no separator is a key with an empty value, so it gains a trailing
separator (Hadoop writes `bunnies are pink\\t`). With default settings that
only touches lines without a tab, found with one C-level regex search per
buffer. Output may be compressed; with lazy output no file is created until
the first byte. A buffer holding a long line is written in slices, never copied
whole, so memory stays near the line length limit (`hstream.task.output.line.maxlength`).
Stdlib only.
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from hstream.hadoop.keyfields import KeySpec
from hstream.task.lines import WINDOW, LineCutter, LineLimit, Lines, key_end

_NO_TAB = re.compile(rb"^([^\t\n]*)$", re.M)


class OutputWriter:
    """Receives whole-line chunks from a command's stdout and writes the part file."""

    #: mapred.textoutputformat.ignoreseparator: a key with an empty value gets no separator.
    ignore_sep = False

    def __init__(self, path: str, key: KeySpec, out_sep: bytes, codec: str, lazy: bool,
                 raw: bool = False, make_dirs: bool = True,
                 limit: LineLimit | None = None) -> None:
        self.path = path + codec
        #: False in the job's shared staging area: the manager made the attempt's directory,
        #: and an attempt that outlived its job must not bring a published job's staging back.
        self.make_dirs = make_dirs
        self.key = key
        self.out_sep = out_sep
        self.codec = codec
        self.lazy = lazy
        self.records = 0
        self.bytes = 0
        self._file: IO[bytes] | _ZlibFile | gzip.GzipFile | bz2.BZ2File | None = None
        self._lines = LineCutter(limit)
        self._default = key == KeySpec() and out_sep == b"\t"
        #: Lines already in their final form (a built-in Java reducer wrote them).
        self.raw = raw
        if not lazy:
            self._open()

    def _open(self) -> IO[bytes] | _ZlibFile | gzip.GzipFile | bz2.BZ2File:
        if self._file is None:
            if self.make_dirs:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
            if self.codec == ".gz":
                self._file = gzip.GzipFile(self.path, "wb", compresslevel=6)
            elif self.codec == ".bz2":
                self._file = bz2.BZ2File(self.path, "wb")
            elif self.codec == ".deflate":
                self._file = _ZlibFile(open(self.path, "wb"))
            else:
                self._file = open(self.path, "wb")
        return self._file

    def write(self, data: bytes) -> None:
        lines = self._lines.cut(data)
        if lines:
            with _named(self.path):
                self._write_lines(lines)

    def _write_lines(self, data: Lines) -> None:
        self.records += data.count(b"\n")
        out = self._open()
        if self.raw:
            self._put(out, data)
        elif self._default:
            if _NO_TAB.search(data, 0, len(data) - 1) is None:
                self._put(out, data)
            elif len(data) <= WINDOW:
                self._put(out, _NO_TAB.sub(rb"\1\t", data[:-1]) + b"\n")
            else:
                self._put_tabbed(out, data)
        elif len(data) <= WINDOW:
            lines = bytes(data).split(b"\n")[:-1]
            self._put(out, b"".join(self._format(line) for line in lines))
        else:
            self._put_formatted(out, data)
        if not self.codec and not isinstance(out, _ZlibFile):  # grows as the command writes
            out.flush()

    def _put(self, out: Any, data: Lines | memoryview) -> None:
        self.bytes += len(data)
        out.write(data)

    def _put_tabbed(self, out: Any, data: Lines) -> None:
        """The default rewrite for a big buffer: a TAB after each line that has none, the
        lines written as slices of the buffer."""
        view, pos = memoryview(data), 0
        for m in _NO_TAB.finditer(data, 0, len(data) - 1):
            self._put(out, view[pos:m.end()])
            self._put(out, b"\t")
            pos = m.end()
        self._put(out, view[pos:])

    def _put_formatted(self, out: Any, data: Lines) -> None:
        """`_format` for a big buffer, line by line, writing slices instead of copies."""
        view, start, sep = memoryview(data), 0, self.key.sep
        while start < len(data):
            end = data.index(b"\n", start)
            kend = key_end(data, start, end, self.key)
            self._put(out, view[start:kend])
            self._put(out, self.out_sep)
            self._put(out, view[min(kend + len(sep), end):end + 1])
            start = end + 1

    def _format(self, line: bytes) -> bytes:
        key = self.key.key(line)
        value = line[len(key) + len(self.key.sep):] if len(key) < len(line) else b""
        if not value and self.ignore_sep:
            return key + b"\n"
        return key + self.out_sep + value + b"\n"

    def close(self) -> str | None:
        """Finish the file; its path, or None when lazy output wrote nothing."""
        with _named(self.path):
            last = self._lines.flush()
            if last:
                self._write_lines(last)
            if self._file is None:
                return None
            self._file.close()
        return self.path


@contextmanager
def _named(path: str) -> Iterator[None]:
    """A write error names the part file (a full disk is then reported with its place)."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            e.filename = path
        raise


class _ZlibFile:
    """Hadoop's DefaultCodec: a zlib stream (`.deflate`)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.z = zlib.compressobj(6)

    def write(self, data: bytes) -> Any:
        return self.f.write(self.z.compress(data))

    def close(self) -> None:
        self.f.write(self.z.flush())
        self.f.close()
