"""Writing a task's final output the way Hadoop's TextOutputFormat does.

A line's key/value split is redone with the output separator settings and the
pair written as key, `mapreduce.output.textoutputformat.separator`, value; a
line with no separator is a key with an empty value, so it gains a trailing
separator (Hadoop writes `bunnies are pink\\t`). With default settings that
only touches lines without a tab, found with one C-level regex search per
buffer. Output may be compressed; with lazy output no file is created until
the first byte. Stdlib only.
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import zlib
from typing import IO, Any

from hstream.hadoop.keyfields import KeySpec
from hstream.task.lines import LineCutter

_NO_TAB = re.compile(rb"^([^\t\n]*)$", re.M)


class OutputWriter:
    """Receives whole-line chunks from a command's stdout and writes the part file."""

    def __init__(self, path: str, key: KeySpec, out_sep: bytes, codec: str, lazy: bool,
                 raw: bool = False, make_dirs: bool = True) -> None:
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
        self._lines = LineCutter()
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
            self._write_lines(lines)

    def _write_lines(self, data: bytes) -> None:
        self.records += data.count(b"\n")
        if self.raw:
            pass
        elif self._default:
            if _NO_TAB.search(data[:-1]) is not None or data.startswith(b"\n"):
                data = _NO_TAB.sub(rb"\1\t", data[:-1]) + b"\n"
        else:
            data = b"".join(self._format(line) for line in data.split(b"\n")[:-1])
        self.bytes += len(data)
        out = self._open()
        out.write(data)
        if not self.codec and not isinstance(out, _ZlibFile):  # grows as the command writes
            out.flush()

    def _format(self, line: bytes) -> bytes:
        key = self.key.key(line)
        value = line[len(key) + len(self.key.sep):] if len(key) < len(line) else b""
        return key + self.out_sep + value + b"\n"

    def close(self) -> str | None:
        """Finish the file; its path, or None when lazy output wrote nothing."""
        last = self._lines.flush()
        if last:
            self._write_lines(last)
        if self._file is None:
            return None
        self._file.close()
        return self.path


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
