"""What the mapper reads: input formats whose records differ from the split's lines.

KeyValueTextInputFormat; TextInputFormat, NLineInputFormat or CombineTextInputFormat with
`stream.map.input.ignoreKey=false` (byte offsets; the default for all but TextInputFormat, as
in PipeMapper); `stream.map.input=keyonlytext` (the mapper sees keys only); and
StreamXmlRecordReader (`-inputreader`), whose records run from a begin tag to an end tag.
Stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import IO

from hstream.hadoop.command import unescape
from hstream.job import Split
from hstream.task.lines import whole_lines

XML_READER = "org.apache.hadoop.streaming.StreamXmlRecordReader"
KEY_ONLY = "keyonlytext"


def _map_input_defaults(conf: dict[str, str]) -> tuple[str, bool]:
    """(input format, ignore key): PipeMapper drops the key only for TextInputFormat by default,
    so a mapper behind any other format (-inputreader's StreamInputFormat too) sees
    `key<SEP>value`."""
    fmt = conf.get("hstream.inputformat", "TextInputFormat")
    if conf.get("stream.recordreader.class"):
        fmt = "StreamInputFormat"
    default = "true" if fmt == "TextInputFormat" else "false"
    return fmt, conf.get("stream.map.input.ignoreKey", default).lower() != "false"


def needs_record_transform(conf: dict[str, str]) -> bool:
    """Whether the mapper's records differ from the split's lines (then `transform_input`).
    An -inputreader's records come formatted from the reader itself."""
    fmt, ignore_key = _map_input_defaults(conf)
    if fmt == "StreamInputFormat":
        return False
    return not ignore_key or fmt == "KeyValueTextInputFormat" or _key_only(conf)


def _key_only(conf: dict[str, str]) -> bool:
    return conf.get("stream.map.input", "text") == KEY_ONLY


def map_input(split: Split, conf: dict[str, str],
              read: Callable[[Split], Iterator[bytes]]) -> Iterator[bytes]:
    """The mapper's input: each of the split's files (one, or a combined split's several)
    read with `read`, its records formatted for the mapper."""
    for part in split.parts or [split]:
        chunks = read(part)
        if needs_record_transform(conf):
            chunks = transform_input(chunks, conf, part)
        yield from chunks


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
    if _key_only(conf):  # KeyOnlyTextInputWriter: the key and a newline, no value
        records.key_only = True
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
        self.key_only = False

    def __call__(self, data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines.pop()  # data ends with a newline
        kv, sep = self.kv_sep, self.in_sep
        if self.key_only:
            if self.ignore_key:
                return b""
            out = [line.partition(kv)[0] for line in lines]
        elif self.ignore_key:
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
        self.key_only = False

    def __call__(self, data: bytes) -> bytes:
        if self.ignore_key:
            return b"" if self.key_only else data
        out = []
        for line in data.split(b"\n")[:-1]:
            offset = str(self.offset).encode()
            out.append(offset if self.key_only else offset + self.in_sep + line)
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


# -- StreamXmlRecordReader ---------------------------------------------------------------------

XML_PREFIX = "stream.recordreader."


def reader_settings(conf: dict[str, str]) -> dict[str, str]:
    """What a split carries for StreamXmlRecordReader (empty without -inputreader): the
    `stream.recordreader.*` settings with Hadoop's defaults, and what follows each record on
    the mapper's stdin: TextInputWriter writes key, separator, value (the record is the key,
    the value is empty), then a newline; ignoreKey drops key and separator, keyonlytext the
    separator."""
    if conf.get("stream.recordreader.class") != XML_READER:
        return {}
    maxrec = conf.get(XML_PREFIX + "maxrec", "50000")
    _, ignore_key = _map_input_defaults(conf)
    sep = unescape(conf.get("stream.map.input.field.separator", "\t"))
    tail = b"\n" if _key_only(conf) or ignore_key else sep + b"\n"
    return {
        "begin": conf[XML_PREFIX + "begin"], "end": conf[XML_PREFIX + "end"],
        "slowmatch": conf.get(XML_PREFIX + "slowmatch", "false").lower(),
        "maxrec": maxrec,
        "lookahead": conf.get(XML_PREFIX + "lookahead", str(2 * int(maxrec))),
        "key": "" if ignore_key else "1",
        "tail": "" if _key_only(conf) and ignore_key else tail.decode("latin-1"),
    }


def xml_records(f: IO[bytes], split: Split, start: int) -> Iterator[bytes]:
    """The records of one split, each followed by its `tail`, a buffer at a time.

    Hadoop's rules: the split owns every record whose begin tag starts before the split's
    end; the search for the first one starts at the split's start; a record runs on past the
    split's end to its end tag; a record whose end tag never comes is dropped. With
    slowmatch, tags inside CDATA sections are skipped and each search looks only
    `lookahead` bytes ahead (a record longer than that ends the split, as in Hadoop)."""
    settings = split.reader
    end = (1 << 62) if split.codec else split.start + split.length
    scanner = _XmlScanner(_Buffer(f, start), settings)
    key = settings["key"] == "1"
    tail = settings["tail"].encode("latin-1")
    out: list[bytes] = []
    size = 0
    for record in scanner.records(end):
        out.append(record + tail if key else tail)
        size += len(record)
        if size >= CHUNK:
            yield b"".join(out)
            out, size = [], 0
    if out:
        yield b"".join(out)


CHUNK = 1 << 20


class _Buffer:
    """A file read forward a megabyte at a time, addressed by absolute offsets; what lies
    before the current search is dropped, so memory holds about one record."""

    def __init__(self, f: IO[bytes], pos: int) -> None:
        if pos:
            f.seek(pos)
        self.f = f
        self.base = pos
        self.data = bytearray()
        self.eof = False

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.f.read(CHUNK)
        self.eof = not chunk
        self.data += chunk
        return bool(chunk)

    def drop(self, upto: int) -> None:
        if upto > self.base:
            del self.data[:upto - self.base]
            self.base = upto

    def find(self, pattern: bytes, at: int) -> int:
        """The offset of the first `pattern` at or after `at`; -1 if the file ends first."""
        while True:
            i = self.data.find(pattern, max(at - self.base, 0))
            if i >= 0:
                return self.base + i
            if not self._more():
                return -1

    def window(self, at: int, size: int) -> bytes:
        """Up to `size` bytes from `at` (fewer at the end of the file)."""
        while self.base + len(self.data) < at + size and self._more():
            pass
        return bytes(self.data[at - self.base: at - self.base + size])

    def slice(self, a: int, b: int) -> bytes:
        return bytes(self.data[a - self.base: b - self.base])


class _XmlScanner:
    """StreamXmlRecordReader's search, with bytes.find for its byte matcher (fast mode) and a
    regex for its CDATA-aware one (slowmatch). One difference: Hadoop's byte matcher misses a
    tag that starts inside a partial match of it (`<<page>`); find does not."""

    def __init__(self, buf: _Buffer, settings: dict[str, str]) -> None:
        self.buf = buf
        self.begin = settings["begin"].encode()
        self.end = settings["end"].encode()
        self.slow = settings["slowmatch"] == "true"
        self.window = max(int(settings["lookahead"]), int(settings["maxrec"]))
        self.synched = False
        if self.slow:
            self.begin_re = _cdata_or(self.begin)
            self.end_re = _cdata_or(self.end)

    def records(self, end: int) -> Iterator[bytes]:
        pos = self.buf.base
        while pos < end:
            begin = self._find(pos, self.begin_re if self.slow else self.begin, False)
            if begin < 0 or begin >= end:
                return
            stop = self._find(begin, self.end_re if self.slow else self.end, True)
            if stop < 0:
                return
            yield self.buf.slice(begin, stop)
            self.buf.drop(stop)
            pos = stop

    def _find(self, at: int, mark: bytes | re.Pattern[bytes], include: bool) -> int:
        """Where the mark starts (or, with `include`, ends); -1 if it never comes."""
        if isinstance(mark, bytes):
            found = self.buf.find(mark, at)
            if found >= 0 and include:
                found += len(mark)
        else:
            found = self._slow_find(at, mark, include)
        if found >= 0 and not include:
            self.buf.drop(found)
        return found

    def _slow_find(self, at: int, pattern: re.Pattern[bytes], include: bool) -> int:
        """slowReadUntilMatch: one window of `lookahead` bytes; a mark counts only outside
        CDATA (until the reader has seen whether it is inside one, the first mark counts
        unless a CDATA end follows it)."""
        window = self.buf.window(at, self.window)
        state = _OUT if self.synched else _UNK
        first: tuple[int, int] | None = None
        for m in pattern.finditer(window):
            kind = _CDATA_BEGIN if m.group(1) else _CDATA_END if m.group(2) else _MARK
            if kind == _CDATA_END:
                first = None
            elif kind == _MARK and first is None:
                first = (m.start(), m.end())
            state = _next_state(state, kind)
            if state == _ACCEPT:
                break
        if state != _UNK:
            self.synched = True
        if first is None or state not in (_ACCEPT, _UNK):
            return -1
        return at + (first[1] if include else first[0])


# StreamXmlRecordReader's states and inputs (the inputs are the regex's group numbers).
_IN, _OUT, _UNK, _ACCEPT = "in", "out", "unknown", "accept"
_CDATA_BEGIN, _CDATA_END, _MARK = 1, 2, 3


def _cdata_or(mark: bytes) -> re.Pattern[bytes]:
    """makePatternCDataOrMark: `CDATA[`, `]]>` or the mark (a regex, as in Hadoop)."""
    return re.compile(rb"(CDATA\[)|(\]\]>)|(" + mark + rb")")


def _next_state(state: str, kind: int) -> str:
    if state == _IN:
        return _OUT if kind == _CDATA_END else _IN
    if kind == _CDATA_BEGIN:
        return _IN
    if kind == _CDATA_END:
        return _OUT
    return _UNK if state == _UNK else _ACCEPT
