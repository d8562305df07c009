"""Output compression codecs by their Hadoop class names (and short names), as file suffixes.
Stdlib only."""

from __future__ import annotations

CODECS = {
    "org.apache.hadoop.io.compress.GzipCodec": ".gz",
    "org.apache.hadoop.io.compress.DefaultCodec": ".deflate",
    "org.apache.hadoop.io.compress.BZip2Codec": ".bz2",
    "gzip": ".gz",
    "bzip2": ".bz2",
}
