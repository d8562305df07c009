"""Hadoop's FieldSelectionMapReduce: `cut`-like key and value selection, as mapper or reducer.

Properties (as in Hadoop): `mapreduce.fieldsel.data.field.separator` (default TAB),
`mapreduce.fieldsel.map.output.key.value.fields.spec` and
`mapreduce.fieldsel.reduce.output.key.value.fields.spec`, each `keyspec:valuespec`
with 0-based field numbers, ranges `1-3` and open ranges `3-` (values only).
Default spec `0-:`. The Java quirks are kept on purpose, because they decide the
output a user compares against: the separator is a Java regex (String.split,
trailing empty fields dropped), selected fields are joined with the separator
text, and the reducer sees `key + separator + value`. A reduce output with no
key fields is written without a key and without a TAB (Hadoop writes a null
key that way). Stdlib only.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

from hstream.hadoop.command import conf_from_env, unescape
from hstream.hadoop.keyfields import KeySpec

_REGEX_META = set(".$|()[{^?*+\\")


class FieldSpecError(ValueError):
    pass


@dataclass
class FieldSpec:
    """One side of a spec: explicit field numbers, and where an open range starts (-1: none)."""

    fields: list[int] = field(default_factory=list)
    all_from: int = -1


def _extract(items: list[str]) -> FieldSpec:
    spec = FieldSpec()
    for item in items:
        if not item:
            continue
        start, dash, end = item.partition("-")
        try:
            if not dash:
                spec.fields.append(int(item))
            elif not end:
                spec.all_from = int(start or "0")
            else:
                spec.fields += range(int(start or "0"), int(end) + 1)
        except ValueError:
            raise FieldSpecError(f"bad field spec: {item}") from None
    return spec


def parse_spec(text: str) -> tuple[FieldSpec, FieldSpec]:
    """`keyspec:valuespec` -> (key, value); an open range on the key side is ignored."""
    key_text, _, value_text = text.partition(":")
    key = _extract(java_split(key_text, ","))
    key.all_from = -1
    value = _extract(java_split(value_text, ",")) if _ else FieldSpec()
    return key, value


def java_split(text: str, sep: str) -> list[str]:
    """Java's String.split(regex): no split on no match, trailing empty strings dropped."""
    if len(sep) == 1 and sep not in _REGEX_META:
        parts = text.split(sep)
    else:
        pattern = re.compile(sep)
        parts, pos = [], 0
        for m in pattern.finditer(text):
            if m.end() == 0:
                continue  # a zero-width match at the start makes no leading empty string
            parts.append(text[pos:m.start()])
            pos = m.end()
        if not parts:
            return [text]
        parts.append(text[pos:])
    if len(parts) == 1:
        return parts
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def select(fields: list[str], spec: FieldSpec, sep: str) -> str | None:
    """FieldSelectionHelper.selectFields: None when the spec selects nothing at all."""
    if not spec.fields and spec.all_from < 0:
        return None
    out: list[str] = []
    for index in spec.fields:
        out.append((fields[index] if index < len(fields) else "") + sep)
    if spec.all_from >= 0:
        out += [f + sep for f in fields[spec.all_from:]]
    text = "".join(out)
    return text[:-1] if text else text  # Java drops one character, whatever the separator


def extract(text: str, sep: str, key_spec: FieldSpec, value_spec: FieldSpec,
            is_map: bool) -> tuple[str | None, str | None]:
    fields = java_split(text, sep)
    key = select(fields, key_spec, sep)
    value = select(fields, value_spec, sep)
    if is_map and key is None:
        key, value = value, None
    return key, value


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _map_value(line: bytes) -> str:
    """What the Java mapper splits: the line (TextInputFormat ignores its key), else key + value
    concatenated; hstream fed such records as `key<SEP>value`."""
    fmt = conf_from_env("hstream.inputformat", "TextInputFormat")
    default = "true" if fmt == "TextInputFormat" else "false"
    ignore = conf_from_env("stream.map.input.ignoreKey", default)
    if ignore.lower() != "false":
        return _text(line)
    in_sep = unescape(conf_from_env("stream.map.input.field.separator", "\t"))
    key, _, value = line.partition(in_sep)
    return _text(value) if fmt == "TextInputFormat" else _text(key + value)


def run(kind: str, stdin: BinaryIO, stdout: BinaryIO) -> None:
    sep = conf_from_env("mapreduce.fieldsel.data.field.separator", "\t")
    map_sep = unescape(conf_from_env("stream.map.output.field.separator", "\t"))
    key_spec = KeySpec(map_sep, int(conf_from_env("stream.num.map.output.key.fields", "1")))
    if kind == "map":
        keys, values = parse_spec(
            conf_from_env("mapreduce.fieldsel.map.output.key.value.fields.spec", "0-:"))
    else:
        keys, values = parse_spec(
            conf_from_env("mapreduce.fieldsel.reduce.output.key.value.fields.spec", "0-:"))
    out_sep = map_sep if kind != "reduce" else unescape(
        conf_from_env("mapreduce.output.textoutputformat.separator", "\t"))
    out: list[bytes] = []
    for raw in stdin:
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if kind == "map":
            key, value = extract(_map_value(line), sep, keys, values, True)
            out.append(_bytes(key or "") + map_sep + _bytes(value or "") + b"\n")
        else:
            k = key_spec.key(line)
            v = line[len(k) + len(map_sep):] if len(k) < len(line) else b""
            key, value = extract(_text(k) + sep + _text(v), sep, keys, values, False)
            out.append(_output_line(key, value, out_sep, kind == "reduce"))
        if len(out) > 4096:
            stdout.write(b"".join(out))
            out = []
    stdout.write(b"".join(out))
    stdout.flush()


def _output_line(key: str | None, value: str | None, sep: bytes, final: bool) -> bytes:
    """TextOutputFormat's rules for null keys and values (a combiner writes map output)."""
    if not final:
        return _bytes(key or "") + sep + _bytes(value or "") + b"\n"
    if key is None and value is None:
        return b""
    if key is None or value is None:
        return _bytes(key if key is not None else value or "") + b"\n"
    return _bytes(key) + sep + _bytes(value) + b"\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        run(args[0] if args else "map", sys.stdin.buffer, sys.stdout.buffer)
    except (FieldSpecError, re.error) as e:
        print(f"FieldSelectionMapReduce: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
