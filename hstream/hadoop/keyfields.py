"""Keys: how a line splits into key and value, KeyFieldBasedPartitioner, KeyFieldBasedComparator.

Both Hadoop classes take a subset of GNU sort's key syntax (`-k pos1[,pos2]`,
pos = field[.char], with `n` and `r` flags), which is why the comparator maps
straight onto `sort` arguments. Stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from hstream.hadoop.command import is_java_builtin, unescape

_KEYDEF = re.compile(r"^-k(\d+)(?:\.(\d+))?([nr]*)(?:,(\d+)(?:\.(\d+))?([nr]*))?$")
_FLAGS = re.compile(r"^-[nr]+$")


@dataclass(frozen=True)
class KeySpec:
    """How a line splits into key and value (`stream.map.output.field.separator` etc.)."""

    sep: bytes = b"\t"
    fields: int = 1

    def key(self, line: bytes) -> bytes:
        """The key of one line (without its newline)."""
        if self.fields == 1:
            i = line.find(self.sep)
            return line if i < 0 else line[:i]
        pos = -len(self.sep)
        for _ in range(self.fields):
            pos = line.find(self.sep, pos + len(self.sep))
            if pos < 0:
                return line
        return line[:pos]

    def low_bytes(self) -> Callable[[bytes], bool] | None:
        """A test for bytes that sort below the separator (newline excepted): where they occur
        in a key, sorting whole lines is no longer sorting by key. None if there are none.

        A few `in` searches (memchr speed) beat a regex character class fivefold; for many
        candidate bytes one `translate` pass does."""
        chars = bytes(c for c in range(self.sep[0]) if c != 0x0A)
        if not chars:
            return None
        if len(chars) <= 12:
            singles = [bytes([c]) for c in chars]
            return lambda data: any(c in data for c in singles)
        return lambda data: len(data.translate(None, chars)) != len(data)


def setting_sep(conf: dict[str, str], name: str) -> bytes:
    """A separator property's bytes (TAB by default; `\\t`-style escapes honoured)."""
    return unescape(conf.get(name, "\t"))


#: A separator no line holds: with it the key is the whole line.
WHOLE_LINE = KeySpec(b"\n", 1)


def map_key(conf: dict[str, str]) -> KeySpec:
    """The map output key: `stream.map.output.field.separator` and `….key.fields`; the whole
    line with `stream.map.output=keyonlytext` (KeyOnlyTextOutputReader)."""
    if conf.get("stream.map.output") == "keyonlytext":
        return WHOLE_LINE
    return KeySpec(setting_sep(conf, "stream.map.output.field.separator"),
                   int(conf.get("stream.num.map.output.key.fields", "1")))


def writes_keys_only(conf: dict[str, str], kind: str) -> bool:
    """Whether the part file gets the command's lines as they are: KeyOnlyTextOutputReader
    (`stream.map.output` of a map-only job, `stream.reduce.output` of a reducer) makes each
    line a key with no value, which TextOutputFormat writes without a separator. So does
    `mapred.textoutputformat.ignoreseparator` when the default key settings apply."""
    prefix = f"stream.{kind}.output"
    if conf.get(prefix) == "keyonlytext":
        return True
    default = (setting_sep(conf, f"{prefix}.field.separator") == b"\t"
               and conf.get(f"stream.num.{kind}.output.key.fields", "1") == "1"
               and setting_sep(conf, "mapreduce.output.textoutputformat.separator") == b"\t")
    return ignores_separator(conf) and default


def ignores_separator(conf: dict[str, str]) -> bool:
    return conf.get("mapred.textoutputformat.ignoreseparator", "false").lower() == "true"


def reduce_key(conf: dict[str, str]) -> KeySpec:
    """The reduce output key: `stream.reduce.output.field.separator` and `….key.fields`."""
    return KeySpec(setting_sep(conf, "stream.reduce.output.field.separator"),
                   int(conf.get("stream.num.reduce.output.key.fields", "1")))


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
    key_spec = map_key(conf)
    sep = setting_sep(conf, "mapreduce.map.output.key.field.separator")
    options = conf.get("mapreduce.partition.keypartitioner.options", "")
    part = partition_key_function(options, sep)
    return lambda line: part(key_spec.key(line))


def reduce_input_rejoiner(conf: dict[str, str], key: KeySpec,
                          command: str) -> Callable[[bytes], bytes] | None:
    """What the reducer sees, as Hadoop's TextInputWriter writes it: the key, then
    `stream.reduce.input.field.separator` (TAB by default), then the value; only the key with
    `stream.reduce.input=keyonlytext`. None when that is the line as the mapper wrote it (the
    two separators are the same). Built-in Java reducers take key and value as objects, so
    they are never re-joined."""
    if is_java_builtin(command):
        return None
    if conf.get("stream.reduce.input") == "keyonlytext":
        return lambda buf: b"".join(key.key(line) + b"\n" for line in buf.split(b"\n")[:-1])
    sep = setting_sep(conf, "stream.reduce.input.field.separator")
    if sep == key.sep:
        return None

    def rejoin(buf: bytes) -> bytes:
        out = []
        for line in buf.split(b"\n")[:-1]:
            k = key.key(line)
            out.append(k + sep + line[len(k) + len(key.sep):] if len(k) < len(line) else k + sep)
        return b"\n".join(out) + b"\n" if out else b""

    return rejoin
