"""Hadoop's key-field options: KeyFieldBasedPartitioner, KeyFieldBasedComparator, input formats.

Both Hadoop classes take a subset of GNU sort's key syntax (`-k pos1[,pos2]`,
pos = field[.char], with `n` and `r` flags), which is why the comparator maps
straight onto `sort` arguments. Stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from hstream.job import Split
from hstream.lines import whole_lines
from hstream.partition import KeySpec

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


def _map_input_defaults(conf: dict[str, str]) -> tuple[str, bool]:
    """(input format, ignore key): PipeMapper drops the key only for TextInputFormat by default,
    so a mapper behind KeyValueTextInputFormat or NLineInputFormat sees `key<SEP>value`."""
    fmt = conf.get("hstream.inputformat", "TextInputFormat")
    default = "true" if fmt == "TextInputFormat" else "false"
    return fmt, conf.get("stream.map.input.ignoreKey", default).lower() != "false"


def needs_record_transform(conf: dict[str, str]) -> bool:
    """Whether the mapper's records differ from the split's lines (then `transform_input`)."""
    fmt, ignore_key = _map_input_defaults(conf)
    return not ignore_key or fmt == "KeyValueTextInputFormat"


def transform_input(chunks: Iterator[bytes], conf: dict[str, str], split: Split) -> Iterator[bytes]:
    """Records for input formats other than plain TextInputFormat.

    Keys are byte offsets for TextInputFormat and NLineInputFormat (a Python step per
    line: the slow path), and the text before the first
    `mapreduce.input.keyvaluelinerecordreader.key.value.separator` character for
    KeyValueTextInputFormat (a bytes method per line). `stream.map.input.field.separator`
    joins key and value."""
    from hstream.command import unescape

    fmt, ignore_key = _map_input_defaults(conf)
    in_sep = unescape(conf.get("stream.map.input.field.separator", "\t"))
    kv_sep = unescape(conf.get("mapreduce.input.keyvaluelinerecordreader.key.value.separator", "\t"))[:1]
    records = (_KeyValueRecords(kv_sep or b"\t", in_sep, ignore_key) if fmt == "KeyValueTextInputFormat"
               else _OffsetRecords(_first_line_offset(split), in_sep, ignore_key))
    for lines in whole_lines(chunks):
        yield records(lines)


class _KeyValueRecords:
    """KeyValueTextInputFormat: the first separator of each line becomes `in_sep`, and a line
    without one gains it (key = line, value empty); with ignoreKey only the value remains.
    One bytes method per line (a regex over the buffer measured 3-5 times slower)."""

    def __init__(self, kv_sep: bytes, in_sep: bytes, ignore_key: bool) -> None:
        self.kv_sep = kv_sep
        self.in_sep = in_sep
        self.ignore_key = ignore_key

    def __call__(self, data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines.pop()  # data ends with a newline
        kv, sep = self.kv_sep, self.in_sep
        if self.ignore_key:
            out = [line.partition(kv)[2] for line in lines]
        elif kv == sep:
            out = [line if kv in line else line + sep for line in lines]
        else:
            out = [line.replace(kv, sep, 1) if kv in line else line + sep for line in lines]
        return b"\n".join(out) + b"\n"


class _OffsetRecords:
    """Each line prefixed with its byte offset in the file, or passed as is with ignoreKey."""

    def __init__(self, offset: int, in_sep: bytes, ignore_key: bool) -> None:
        self.offset = offset
        self.in_sep = in_sep
        self.ignore_key = ignore_key

    def __call__(self, data: bytes) -> bytes:
        if self.ignore_key:
            return data
        out = []
        for line in data.split(b"\n")[:-1]:
            out.append(str(self.offset).encode() + self.in_sep + line)
            self.offset += len(line) + 1
        return b"\n".join(out) + b"\n"


def _first_line_offset(split: Split) -> int:
    """Byte offset of the first line a split owns (a split not at 0 starts after a newline)."""
    if split.start == 0 or split.codec:
        return 0
    with open(split.path, "rb") as f:
        f.seek(split.start)
        skipped = 0
        while True:
            data = f.read(1 << 16)
            if not data:
                return split.start + skipped
            nl = data.find(b"\n")
            if nl >= 0:
                return split.start + skipped + nl + 1
            skipped += len(data)


def reduce_input_rejoiner(conf: dict[str, str], key: KeySpec,
                          command: str) -> Callable[[bytes], bytes] | None:
    """When `stream.reduce.input.field.separator` differs from the map output separator, the
    reducer sees key, that separator, value (Hadoop re-joins them); None when nothing changes.
    Built-in Java reducers take key and value as objects, so they are never re-joined."""
    from hstream.command import is_java_builtin, unescape

    if "stream.reduce.input.field.separator" not in conf or is_java_builtin(command):
        return None
    sep = unescape(conf["stream.reduce.input.field.separator"])
    if sep == key.sep:
        return None

    def rejoin(buf: bytes) -> bytes:
        out = []
        for line in buf.split(b"\n")[:-1]:
            k = key.key(line)
            out.append(k + sep + line[len(k) + len(key.sep):] if len(k) < len(line) else k + sep)
        return b"\n".join(out) + b"\n" if out else b""

    return rejoin
