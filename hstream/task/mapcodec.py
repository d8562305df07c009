"""`mapreduce.map.output.compress`: map output crosses the shuffle compressed.

A map attempt compresses each partition file once it is complete; the worker serves the
compressed bytes; a reducer decompresses what it fetched before merging. The codec is
`mapreduce.map.output.compress.codec` as the standard library has it: DefaultCodec and
DeflateCodec are zlib, GzipCodec gzip, BZip2Codec bz2. Codecs the standard library lacks
(Snappy, LZ4, ZStandard, LZO) compress with zlib at its fastest level: map output is internal
to the job, so its output is the same.

Spill runs are compressed too, as Hadoop compresses its spills with the map output codec:
`spill_codec` names the command-line tool (`bzip2 -1` for BZip2Codec, else `gzip -1`: fast,
and present on every host) that `sorting.Spiller` pipes each spill sort into, and that map
merges decompress with; sort's own temporary files use it as well. Stdlib only.
"""

from __future__ import annotations

import bz2
import os
import shutil
import zlib
from collections.abc import Callable

from hstream.task.sorting import BZIP2, GZIP, SpillCodec

CHUNK = 1 << 20
DEFAULT_CODEC = "org.apache.hadoop.io.compress.DefaultCodec"
#: Codec class names (and the short names Hadoop's CompressionCodecFactory accepts) to
#: (library, level).
CODECS = {
    "org.apache.hadoop.io.compress.DefaultCodec": ("zlib", 6),
    "org.apache.hadoop.io.compress.DeflateCodec": ("zlib", 6),
    "org.apache.hadoop.io.compress.GzipCodec": ("gzip", 6),
    "org.apache.hadoop.io.compress.BZip2Codec": ("bz2", 9),
    "default": ("zlib", 6), "deflate": ("zlib", 6), "gzip": ("gzip", 6), "bzip2": ("bz2", 9),
}
FAST = ("zlib", 1)


def codec(conf: dict[str, str]) -> tuple[str, int] | None:
    """(library, level) when the job compresses map output, else None."""
    if conf.get("mapreduce.map.output.compress", "false").lower() != "true":
        return None
    return CODECS.get(conf.get("mapreduce.map.output.compress.codec", DEFAULT_CODEC), FAST)


def spill_codec(conf: dict[str, str]) -> SpillCodec | None:
    """The tool for spill runs when the job compresses map output, else None. Spills are
    internal to the attempt, so a host without bzip2 uses gzip."""
    kind = codec(conf)
    if kind is None:
        return None
    return BZIP2 if kind[0] == "bz2" and shutil.which(BZIP2.program) else GZIP


def _compressor(kind: tuple[str, int]) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    library, level = kind
    if library == "bz2":
        c = bz2.BZ2Compressor(level)
        return c.compress, c.flush
    z = zlib.compressobj(level, zlib.DEFLATED, 31 if library == "gzip" else 15)
    return z.compress, z.flush


def _decompressor(kind: tuple[str, int]) -> Callable[[bytes], bytes]:
    if kind[0] == "bz2":
        return bz2.BZ2Decompressor().decompress
    return zlib.decompressobj(31 if kind[0] == "gzip" else 15).decompress


def _rewrite(path: str, step: Callable[[bytes], bytes],
             end: Callable[[], bytes]) -> tuple[int, int]:
    """Pass the file through `step` into a new one that replaces it; (bytes, newlines) of the
    plain side, whichever side that is."""
    size = lines = 0
    with open(path, "rb") as src, open(path + ".codec", "wb") as out:
        for data in iter(lambda: src.read(CHUNK), b""):
            done = step(data)
            out.write(done)
            plain = done if end is _nothing else data
            size, lines = size + len(plain), lines + plain.count(b"\n")
        out.write(end())
    os.replace(path + ".codec", path)
    return size, lines


def _nothing() -> bytes:
    return b""


def compress_file(path: str, kind: tuple[str, int]) -> int:
    """Compress a finished partition file in place; its compressed size."""
    step, end = _compressor(kind)
    _rewrite(path, step, end)
    return os.path.getsize(path)


def decompress_file(path: str, kind: tuple[str, int]) -> tuple[int, int]:
    """Decompress a fetched partition in place; (bytes, records) of the plain data."""
    return _rewrite(path, _decompressor(kind), _nothing)


def compress_partitions(outdir: str, conf: dict[str, str]) -> int | None:
    """Compress every partition file of a map's output; their total size, or None when the job
    does not compress map output."""
    kind = codec(conf)
    if kind is None:
        return None
    return sum(compress_file(os.path.join(outdir, name), kind)
               for name in sorted(os.listdir(outdir)) if name.startswith("part-"))


def decompress_fetched(paths: list[str], conf: dict[str, str]) -> int | None:
    """Decompress a reducer's fetched partitions in place; their record count, or None when
    the job does not compress map output."""
    kind = codec(conf)
    if kind is None:
        return None
    return sum(decompress_file(p, kind)[1] for p in paths)
