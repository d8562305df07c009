"""Hadoop's key-field options: KeyFieldBasedPartitioner, KeyFieldBasedComparator, input formats.

Both Hadoop classes take a subset of GNU sort's key syntax (`-k pos1[,pos2]`,
pos = field[.char], with `n` and `r` flags), which is why the comparator maps
straight onto `sort` arguments. Stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from hstream.job import Split

_KEYDEF = re.compile(r"^-k(\d+)(?:\.(\d+))?([nr]*)(?:,(\d+)(?:\.(\d+))?([nr]*))?$")
_FLAGS = re.compile(r"^-[nr]+$")


class KeyFieldError(ValueError):
    pass


def _tokens(options: str) -> list[str]:
    tokens: list[str] = []
    for word in options.split():
        if tokens and tokens[-1] == "-k":
            tokens[-1] = "-k" + word
        else:
            tokens.append(word)
    return tokens


def comparator_args(options: str) -> list[str]:
    """`mapreduce.partition.keycomparator.options` as GNU sort arguments (validated)."""
    args: list[str] = []
    for tok in _tokens(options):
        if not (_KEYDEF.match(tok) or _FLAGS.match(tok)):
            raise KeyFieldError(f"unsupported key comparator option: {tok}")
        args.append(tok)
    return args


def _fields(options: str) -> list[tuple[int, int, int, int]]:
    """(start field, start char, end field, end char) per -k; 0 means 'to the end'."""
    specs = []
    for tok in _tokens(options):
        m = _KEYDEF.match(tok)
        if not m:
            raise KeyFieldError(f"unsupported key partitioner option: {tok}")
        f1, c1, _, f2, c2, _ = m.groups()
        specs.append((int(f1), int(c1 or 1), int(f2 or 0), int(c2 or 0)))
    return specs


def partition_key_function(options: str, sep: bytes) -> Callable[[bytes], bytes]:
    """The part of a key that KeyFieldBasedPartitioner hashes."""
    specs = _fields(options)
    if not specs:
        return lambda key: key

    def part_key(key: bytes) -> bytes:
        fields = key.split(sep)
        pieces = []
        for f1, c1, f2, c2 in specs:
            if f1 > len(fields):
                continue
            last = len(fields) if f2 == 0 else min(f2, len(fields))
            chosen = fields[f1 - 1: last]
            if not chosen:
                continue
            chosen[0] = chosen[0][c1 - 1:]
            if c2 and f2 and f2 <= len(fields):
                chosen[-1] = chosen[-1][:c2 - (c1 - 1 if f1 == f2 else 0)]
            pieces.append(sep.join(chosen))
        return sep.join(pieces)

    return part_key


def partition_key(conf: dict[str, str]) -> Callable[[bytes], bytes]:
    """For a map output line: its key (per stream.* settings), then the partitioner's part."""
    from hstream.task import map_key, _sep  # the task module owns the stream.* settings

    key_spec = map_key(conf)
    sep = _sep(conf, "mapreduce.map.output.key.field.separator")
    options = conf.get("mapreduce.partition.keypartitioner.options", "")
    part = partition_key_function(options, sep)
    return lambda line: part(key_spec.key(line))


def transform_input(chunks: Iterator[bytes], conf: dict[str, str], split: Split) -> Iterator[bytes]:
    """Records for input formats other than plain TextInputFormat (per line: the slow path)."""
    fmt = conf.get("hstream.inputformat", "TextInputFormat")
    ignore_key = conf.get("stream.map.input.ignoreKey", "true").lower() != "false"
    in_sep = conf.get("stream.map.input.field.separator", "\t").encode()
    kv_sep = conf.get("mapreduce.input.keyvaluelinerecordreader.key.value.separator", "\t").encode()
    offset = split.start
    tail = b""
    for data in chunks:
        data = tail + data
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        out = []
        for line in data[:cut].split(b"\n")[:-1]:
            if fmt == "KeyValueTextInputFormat":
                key, found, value = line.partition(kv_sep)
                out.append(key + in_sep + value if found else key + in_sep)
            elif not ignore_key:
                out.append(str(offset).encode() + in_sep + line)
            else:
                out.append(line)
            offset += len(line) + 1
        if out:
            yield b"\n".join(out) + b"\n"
