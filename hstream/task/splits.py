"""Input: which files a job reads, how they are cut into map tasks, and reading one cut.

Splitting follows Hadoop's FileInputFormat and LineRecordReader: files whose
names start with `_` or `.` are skipped; plain files are cut by size and each
split owns the lines that *start* inside it (a split that does not start at 0
skips its first partial line, and every split reads on through the line that
crosses its end); `.gz` and `.bz2` files are one split each, decompressed as
they are read. Reading is whole-buffer work in C: no per-line Python.

Each split records its file's size and mtime at submit. A file that changed since,
or a split that ends early, fails the attempt naming the file (Hadoop would read
whatever is there; a job over a file being rewritten is never what anyone meant).
"""

from __future__ import annotations

import bz2
import gzip
import os
from collections.abc import Iterator
from typing import IO

from hstream.errors import ConfigError
from hstream.job import Split
from hstream.task import records
from hstream.task.lines import INPUT_LIMIT, LineTooLong

CHUNK = 1 << 20
CODECS = {".gz": "gz", ".bz2": "bz2"}


def codec_of(path: str) -> str:
    return CODECS.get(os.path.splitext(path)[1], "")


class InputChanged(OSError):
    """An input file is not what it was when the job was submitted."""


def _split(path: str, start: int, length: int, st: os.stat_result, codec: str = "") -> Split:
    return Split(path, start, length, codec, st.st_size, st.st_mtime_ns)


#: The local file system's block size (fs.local.block.size), which caps a split.
BLOCK_SIZE = 32 << 20
MINSIZE = "mapreduce.input.fileinputformat.split.minsize"
MAXSIZE = "mapreduce.input.fileinputformat.split.maxsize"


def split_size(total: int, goal_maps: int, conf: dict[str, str]) -> int:
    """FileInputFormat.computeSplitSize (the old API that streaming uses): the goal size
    (total / mapreduce.job.maps), at most a block, at least split.minsize. hstream also caps it
    at split.maxsize, which only Hadoop's new API reads."""
    goal = total // max(goal_maps, 1)
    block = int(conf.get("fs.local.block.size", BLOCK_SIZE))
    most = int(conf.get(MAXSIZE, 0)) or goal
    return max(int(conf.get(MINSIZE, 1)), 1, min(goal, block, most))


def compute_splits(files: list[str], goal_maps: int,
                   conf: dict[str, str] | None = None) -> list[Split]:
    """Cut files into splits of `split_size` (a file is at least one split; a compressed one is
    exactly one), so that a small input gives `goal_maps` maps, as Hadoop cuts it."""
    stats = {f: os.stat(f) for f in files}
    total = sum(stats[f].st_size for f in files)
    size = split_size(total, goal_maps, conf or {})
    splits: list[Split] = []
    for f in files:
        codec, st = codec_of(f), stats[f]
        length = st.st_size
        if codec or length <= size * 1.1:
            splits.append(_split(f, 0, length, st, codec))
            continue
        start = 0
        while length - start > size * 1.1:  # Hadoop's SPLIT_SLOP: no tiny last split
            splits.append(_split(f, start, size, st))
            start += size
        splits.append(_split(f, start, length - start, st))
    return splits


def job_splits(files: list[str], goal_maps: int, conf: dict[str, str]) -> list[Split]:
    """The job's map tasks: by size, N lines each for NLineInputFormat, many files each for
    CombineTextInputFormat; each carries the -inputreader's settings, if any."""
    fmt = conf.get("hstream.inputformat")
    if fmt == "NLineInputFormat":
        lines = int(conf.get("mapreduce.input.lineinputformat.linespermap", "1"))
        return nline_splits(files, lines)
    if fmt == "CombineTextInputFormat":
        return combine_splits(files, conf)
    splits = compute_splits(files, goal_maps, conf)
    reader = records.reader_settings(conf)
    for split in splits:
        split.reader = reader
    return splits


def combine_splits(files: list[str], conf: dict[str, str]) -> list[Split]:
    """CombineFileInputFormat on one node: each file cut into chunks of at most split.maxsize
    (a compressed file is one chunk), and consecutive chunks packed into one split until it
    holds split.maxsize. Without split.maxsize Hadoop packs a node's whole input into one
    split; hstream, with no data locality, packs up to a block (fs.local.block.size)."""
    most = int(conf.get(MAXSIZE, 0)) or int(conf.get("fs.local.block.size", BLOCK_SIZE))
    splits: list[Split] = []
    parts: list[Split] = []
    for chunk in _chunks(files, max(most, 1)):
        parts.append(chunk)
        if sum(p.length for p in parts) >= most:
            splits.append(_combined(parts))
            parts = []
    if parts:
        splits.append(_combined(parts))
    return splits


def _chunks(files: list[str], most: int) -> Iterator[Split]:
    """OneFileInfo's blocks: a file in pieces of `most`, the last two halved when the rest
    is between one and two pieces (so no piece is tiny)."""
    for f in files:
        st, codec = os.stat(f), codec_of(f)
        left, start = st.st_size, 0
        if codec or left == 0:
            yield _split(f, 0, left, st, codec)
            continue
        while left > 0:
            length = left // 2 if most < left < 2 * most else min(most, left)
            yield _split(f, start, length, st)
            start, left = start + length, left - length


def _combined(parts: list[Split]) -> Split:
    first = parts[0]
    total = sum(p.length for p in parts)
    return Split(first.path, first.start, total, first.codec, first.size, first.mtime_ns,
                 parts=list(parts))


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
            st = os.fstat(fh.fileno())
            for data in iter(lambda: fh.read(chunk), b""):
                nl = data.find(b"\n")
                while nl >= 0:
                    count += 1
                    if count == lines:
                        end = pos + nl + 1
                        splits.append(_nline_split(f, begin, end - begin, st))
                        begin, count = end, 0
                    nl = data.find(b"\n", nl + 1)
                pos += len(data)
        if pos > begin:
            splits.append(_nline_split(f, begin, pos - begin, st))
    return splits


def _nline_split(path: str, begin: int, length: int, st: os.stat_result) -> Split:
    if begin == 0:
        return _split(path, begin, length - 1, st)
    return _split(path, begin - 1, length, st)


def check_unchanged(split: Split, st: os.stat_result) -> None:
    """Fail naming the file if it is not the file the job was submitted with."""
    if split.size >= 0 and (st.st_size, st.st_mtime_ns) != (split.size, split.mtime_ns):
        what = (f"size {split.size} -> {st.st_size}" if st.st_size != split.size
                else "modified")
        raise InputChanged(f"input changed while the job ran: {split.path} ({what})")


def _decoded(split: Split, raw: IO[bytes]) -> IO[bytes]:
    if split.codec == "gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]  # IO[bytes]
    if split.codec == "bz2":
        return bz2.BZ2File(raw, "rb")
    return raw


def read_split(split: Split, chunk: int = CHUNK, max_line: int = 0) -> Iterator[bytes]:
    """The bytes of the lines this split owns, in chunks, every line newline-terminated.
    `max_line` (if set) bounds how far the reader looks for the end of a line it skips.
    The file is checked against the job's record when opened and again when read."""
    with open(split.path, "rb") as raw:
        check_unchanged(split, os.fstat(raw.fileno()))
        with _decoded(split, raw) as f:
            if split.reader:  # StreamXmlRecordReader: records, not lines
                yield from records.xml_records(f, split, 0 if split.codec else split.start)
            elif split.codec:
                yield from _terminated(iter(lambda: f.read(chunk), b""))
            else:
                end = split.start + split.length
                yield from _terminated(
                    _read_range(f, split.start, end, chunk, max_line, split.path))
            check_unchanged(split, os.fstat(raw.fileno()))


def _read_range(f: IO[bytes], start: int, end: int, chunk: int, max_line: int = 0,
                path: str = "") -> Iterator[bytes]:
    """Bytes [s, e): s is just past the first newline at or after `start` (0 stays 0), e just
    past the first newline at or after `end`. Neighbouring splits agree on the boundary."""
    pos = 0
    if start > 0:
        f.seek(start)
        skipped = _skip_line(f, chunk, max_line, path)
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
            raise InputChanged(f"input changed while the job ran: {path or 'a file'} "
                               f"ended {remaining} bytes before its split did")
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


def _skip_line(f: IO[bytes], chunk: int, max_line: int = 0, path: str = "") -> int | None:
    """Bytes up to and including the first newline; None if the file ends first. A line
    longer than `max_line` is an error here too (its own split fails on it), so the
    search never runs on to the end of a file that is one endless line."""
    skipped = 0
    while True:
        data = f.read(chunk)
        if not data:
            return None
        nl = data.find(b"\n")
        if nl >= 0:
            return skipped + nl + 1
        skipped += len(data)
        if 0 < max_line < skipped:
            raise LineTooLong(f"{path} has a line longer than {max_line} bytes "
                              f"(the limit {INPUT_LIMIT} sets)")


def _terminated(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Pass chunks through, adding a final newline if the last line lacks one (as Hadoop does)."""
    last = b""
    for data in chunks:
        if data:
            last = data
            yield data
    if last and not last.endswith(b"\n"):
        yield b"\n"
