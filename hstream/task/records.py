"""Input formats whose records differ from the split's lines: KeyValueTextInputFormat, and
TextInputFormat or NLineInputFormat with `stream.map.input.ignoreKey=false` (byte offsets).
Stdlib only.
"""

from __future__ import annotations

from collections.abc import Iterator

from hstream.hadoop.command import unescape
from hstream.job import Split
from hstream.task.lines import whole_lines


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
    fmt, ignore_key = _map_input_defaults(conf)
    in_sep = unescape(conf.get("stream.map.input.field.separator", "\t"))
    kv_name = "mapreduce.input.keyvaluelinerecordreader.key.value.separator"
    kv_sep = unescape(conf.get(kv_name, "\t"))[:1]
    records: _KeyValueRecords | _OffsetRecords
    if fmt == "KeyValueTextInputFormat":
        records = _KeyValueRecords(kv_sep or b"\t", in_sep, ignore_key)
    else:
        records = _OffsetRecords(_first_line_offset(split), in_sep, ignore_key)
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
