"""Input: which files a job reads, how they are cut into map tasks, and reading one cut.

Splitting follows Hadoop's FileInputFormat and LineRecordReader: files whose
names start with `_` or `.` are skipped; plain files are cut by size and each
split owns the lines that *start* inside it (a split that does not start at 0
skips its first partial line, and every split reads on through the line that
crosses its end); `.gz` and `.bz2` files are one split each, decompressed as
they are read. Reading is whole-buffer work in C: no per-line Python.
"""

from __future__ import annotations

import bz2
import gzip
import os
from collections.abc import Iterator
from typing import IO

from hstream.errors import ConfigError
from hstream.job import Split

CHUNK = 1 << 20
MIN_SPLIT = 1 << 20
MAX_SPLIT = 128 << 20
CODECS = {".gz": "gz", ".bz2": "bz2"}


def codec_of(path: str) -> str:
    return CODECS.get(os.path.splitext(path)[1], "")


def compute_splits(files: list[str], goal_maps: int) -> list[Split]:
    """Cut files into about `goal_maps` splits of equal size (each file at least one split)."""
    sizes = {f: os.path.getsize(f) for f in files}
    total = sum(sizes[f] for f in files if not codec_of(f))
    size = max(MIN_SPLIT, min(MAX_SPLIT, -(-total // max(goal_maps, 1))))
    splits: list[Split] = []
    for f in files:
        codec, length = codec_of(f), sizes[f]
        if codec or length <= size * 1.1:
            splits.append(Split(f, 0, length, codec))
            continue
        start = 0
        while length - start > size * 1.1:  # Hadoop's SPLIT_SLOP: no tiny last split
            splits.append(Split(f, start, size))
            start += size
        splits.append(Split(f, start, length - start))
    return splits


def job_splits(files: list[str], goal_maps: int, conf: dict[str, str]) -> list[Split]:
    """The job's map tasks: by size, or N lines each for NLineInputFormat."""
    if conf.get("hstream.inputformat") == "NLineInputFormat":
        lines = int(conf.get("mapreduce.input.lineinputformat.linespermap", "1"))
        return nline_splits(files, lines)
    return compute_splits(files, goal_maps)


def nline_splits(files: list[str], lines: int, chunk: int = CHUNK) -> list[Split]:
    """Hadoop's NLineInputFormat: a split per `lines` lines. Like Hadoop it starts each split one
    byte early (at the newline before its first line) and ends the first one a byte short, since
    a reader skips the partial line at its start and reads through the line at its end."""
    splits: list[Split] = []
    for f in files:
        if codec_of(f):
            raise ConfigError(f"NLineInputFormat cannot split a compressed file: {f}")
        begin = count = pos = 0
        with open(f, "rb") as fh:
            for data in iter(lambda: fh.read(chunk), b""):
                nl = data.find(b"\n")
                while nl >= 0:
                    count += 1
                    if count == lines:
                        end = pos + nl + 1
                        splits.append(_nline_split(f, begin, end - begin))
                        begin, count = end, 0
                    nl = data.find(b"\n", nl + 1)
                pos += len(data)
        if pos > begin:
            splits.append(_nline_split(f, begin, pos - begin))
    return splits


def _nline_split(path: str, begin: int, length: int) -> Split:
    return Split(path, begin, length - 1) if begin == 0 else Split(path, begin - 1, length)


def open_split(split: Split) -> IO[bytes]:
    if split.codec == "gz":
        return gzip.GzipFile(split.path, "rb")  # type: ignore[return-value]  # an IO[bytes]
    if split.codec == "bz2":
        return bz2.BZ2File(split.path, "rb")
    return open(split.path, "rb")


def read_split(split: Split, chunk: int = CHUNK) -> Iterator[bytes]:
    """The bytes of the lines this split owns, in chunks, every line newline-terminated."""
    with open_split(split) as f:
        if split.codec:
            yield from _terminated(iter(lambda: f.read(chunk), b""))
            return
        yield from _terminated(_read_range(f, split.start, split.start + split.length, chunk))


def _read_range(f: IO[bytes], start: int, end: int, chunk: int) -> Iterator[bytes]:
    """Bytes [s, e): s is just past the first newline at or after `start` (0 stays 0), e just
    past the first newline at or after `end`. Neighbouring splits agree on the boundary."""
    pos = 0
    if start > 0:
        f.seek(start)
        skipped = _skip_line(f, chunk)
        if skipped is None:
            return
        pos = start + skipped
        if pos > end:
            return
    f.seek(pos)
    remaining = end - pos
    while remaining > 0:
        data = f.read(min(chunk, remaining))
        if not data:
            return
        remaining -= len(data)
        yield data
    while True:  # the line that contains offset `end` is still ours
        data = f.read(chunk)
        if not data:
            return
        nl = data.find(b"\n")
        if nl >= 0:
            yield data[: nl + 1]
            return
        yield data


def _skip_line(f: IO[bytes], chunk: int) -> int | None:
    """Bytes up to and including the first newline; None if the file ends first."""
    skipped = 0
    while True:
        data = f.read(chunk)
        if not data:
            return None
        nl = data.find(b"\n")
        if nl >= 0:
            return skipped + nl + 1
        skipped += len(data)


def _terminated(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Pass chunks through, adding a final newline if the last line lacks one (as Hadoop does)."""
    last = b""
    for data in chunks:
        if data:
            last = data
            yield data
    if last and not last.endswith(b"\n"):
        yield b"\n"
