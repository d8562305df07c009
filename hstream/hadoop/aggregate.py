"""Hadoop's aggregate package: `-reducer aggregate` (ValueAggregatorReducer and -Combiner).

The mapper writes `Type:id<TAB>value`; the reducer groups by that key, folds the
values with the aggregator `Type` names and writes `id<TAB>result`, exactly as
the Java classes format it (a DoubleValueSum of 3 is `3.0`). Used as combiner it
writes partial results under the same key. Run by the task as
`python -m hstream.hadoop.aggregate map|combine|reduce`; the job's properties come from
the environment like any streaming command's. Stdlib only.

The reducer's work is per record, as in Hadoop: there is no C routine for it.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import BinaryIO

from hstream.hadoop.command import conf_from_env, unescape
from hstream.hadoop.keyfields import KeySpec

TYPE_SEPARATOR = b":"
_LONG = re.compile(rb"^[+-]?[0-9]+$")
_MIN_LONG, _MAX_LONG = -(1 << 63), (1 << 63) - 1


class AggregateError(ValueError):
    """A value or key the Java classes would reject (the task fails, naming it)."""


def parse_long(value: bytes) -> int:
    """Java's Long.parseLong: optional sign and digits, nothing else, 64-bit range."""
    if not _LONG.match(value):
        raise AggregateError(f"For input string: \"{value.decode('utf-8', 'replace')}\"")
    n = int(value)
    if not _MIN_LONG <= n <= _MAX_LONG:
        raise AggregateError(f"value out of range for a long: {value.decode()}")
    return n


def wrap_long(n: int) -> int:
    """Java long arithmetic overflows by wrapping around."""
    return (n + (1 << 63)) % (1 << 64) - (1 << 63)


def parse_double(value: bytes) -> float:
    """Java's Double.parseDouble for the forms people write (trailing d/f allowed)."""
    text = value.decode("utf-8", "replace").strip()
    if text[-1:] in ("d", "D", "f", "F") and not text.lower().endswith("inf"):
        text = text[:-1]
    if text in ("NaN", "Infinity", "+Infinity", "-Infinity"):
        return float(text.replace("Infinity", "inf"))
    if not re.match(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$", text):
        raise AggregateError(f"For input string: \"{text}\"")
    return float(text)


def java_double(x: float) -> str:
    """Java's Double.toString: shortest digits, `1.0E10` outside [1e-3, 1e7)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    a = abs(x)
    if 1e-3 <= a < 1e7:
        text = repr(a)
        return sign + (text if "." in text else text + ".0")
    digits_t = Decimal(repr(a)).normalize().as_tuple()
    digits = "".join(map(str, digits_t.digits))
    exponent = len(digits) - 1 + int(digits_t.exponent)
    mantissa = digits[0] + "." + (digits[1:] or "0")
    return f"{sign}{mantissa}E{exponent}"


class Aggregator:
    """One aggregation id's running state (ValueAggregator)."""

    def add(self, value: bytes) -> None:
        raise NotImplementedError

    def report(self) -> bytes:
        raise NotImplementedError

    def combiner_output(self) -> list[bytes]:
        return [self.report()]


class LongValueSum(Aggregator):
    def __init__(self) -> None:
        self.total = 0

    def add(self, value: bytes) -> None:
        self.total = wrap_long(self.total + parse_long(value))

    def report(self) -> bytes:
        return str(self.total).encode()


class LongValueMax(Aggregator):
    def __init__(self) -> None:
        self.best = _MIN_LONG

    def add(self, value: bytes) -> None:
        self.best = max(self.best, parse_long(value))

    def report(self) -> bytes:
        return str(self.best).encode()


class LongValueMin(Aggregator):
    def __init__(self) -> None:
        self.best = _MAX_LONG

    def add(self, value: bytes) -> None:
        self.best = min(self.best, parse_long(value))

    def report(self) -> bytes:
        return str(self.best).encode()


class DoubleValueSum(Aggregator):
    def __init__(self) -> None:
        self.total = 0.0

    def add(self, value: bytes) -> None:
        self.total += parse_double(value)

    def report(self) -> bytes:
        return java_double(self.total).encode()


class StringValueMax(Aggregator):
    """Compares UTF-8 bytes (code point order; Java compares UTF-16 units, which differs only
    between characters above U+FFFF and U+E000..U+FFFF)."""

    def __init__(self) -> None:
        self.best: bytes | None = None

    def add(self, value: bytes) -> None:
        if self.best is None or value > self.best:
            self.best = value

    def report(self) -> bytes:
        return b"null" if self.best is None else self.best


class StringValueMin(StringValueMax):
    def add(self, value: bytes) -> None:
        if self.best is None or value < self.best:
            self.best = value


class UniqValueCount(Aggregator):
    def __init__(self, limit: int = _MAX_LONG) -> None:
        self.items: set[bytes] = set()
        self.limit = limit

    def add(self, value: bytes) -> None:
        if len(self.items) < self.limit:
            self.items.add(value)

    def report(self) -> bytes:
        return str(len(self.items)).encode()

    def combiner_output(self) -> list[bytes]:
        return sorted(self.items)


class ValueHistogram(Aggregator):
    """Values are `item` or `item<TAB>count`; the report is: distinct items, then the minimum,
    median, maximum, mean and standard deviation of their counts."""

    def __init__(self) -> None:
        self.items: dict[bytes, int] = {}

    def add(self, value: bytes) -> None:
        item, tab, count = value.rpartition(b"\t")
        if not tab:
            item, count = value, b"1"
        self.items[item] = self.items.get(item, 0) + parse_long(count)

    def report(self) -> bytes:
        counts = sorted(self.items.values())
        parts = [str(len(counts))]
        if counts:
            n = len(counts)
            mean = sum(counts) * 1.0 / n
            sd = math.sqrt(sum((c - mean) * (c - mean) for c in counts) / n)
            parts += [str(counts[0]), str(counts[n // 2]), str(counts[-1]),
                      java_double(mean), java_double(sd)]
        return "\t".join(parts).encode()

    def combiner_output(self) -> list[bytes]:
        return [item + b"\t" + str(count).encode() for item, count in sorted(self.items.items())]


KINDS: dict[str, type[Aggregator]] = {cls.__name__.lower(): cls for cls in (
    LongValueSum, LongValueMax, LongValueMin, DoubleValueSum, StringValueMax, StringValueMin,
    UniqValueCount, ValueHistogram)}


def make_aggregator(type_name: bytes) -> Aggregator:
    """The aggregator a key's type prefix names (case-insensitive, as Hadoop's lookup)."""
    cls = KINDS.get(type_name.decode("utf-8", "replace").lower())
    if cls is None:
        raise AggregateError(f"unknown aggregation type: {type_name.decode('utf-8', 'replace')}")
    return cls()


def groups(lines: Iterator[bytes], key_spec: KeySpec) -> Iterator[tuple[bytes, list[bytes]]]:
    """(key, values) for each run of lines with one key (the input is sorted)."""
    current: bytes | None = None
    values: list[bytes] = []
    for raw in lines:
        line = raw[:-1] if raw.endswith(b"\n") else raw
        key = key_spec.key(line)
        value = line[len(key) + len(key_spec.sep):] if len(key) < len(line) else b""
        if key != current:
            if current is not None:
                yield current, values
            current, values = key, []
        values.append(value)
    if current is not None:
        yield current, values


def aggregate(key: bytes, values: list[bytes], combine: bool) -> tuple[bytes, list[bytes]]:
    """Fold one group: (output key, output values)."""
    type_name, found, ident = key.partition(TYPE_SEPARATOR)
    if not found:
        name = key.decode('utf-8', 'replace')
        raise AggregateError(f"key has no aggregation type (Type:id): {name}")
    agg = make_aggregator(type_name)
    for value in values:
        agg.add(value)
    if combine:
        return key, agg.combiner_output()
    return ident, [agg.report()]


def run(kind: str, stdin: BinaryIO, stdout: BinaryIO) -> None:
    key_spec = KeySpec(unescape(conf_from_env("stream.map.output.field.separator", "\t")),
                       int(conf_from_env("stream.num.map.output.key.fields", "1")))
    combine = kind == "combine"
    # A combiner's output is map output again; a reducer's is a finished output line.
    sep = key_spec.sep if combine else unescape(
        conf_from_env("mapreduce.output.textoutputformat.separator", "\t"))
    out: list[bytes] = []
    for key, values in groups(iter(stdin), key_spec):
        out_key, results = aggregate(key, values, combine)
        out += [out_key + sep + r + b"\n" for r in results]
        if len(out) > 4096:
            stdout.write(b"".join(out))
            out = []
    stdout.write(b"".join(out))
    stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    kind = args[0] if args else "reduce"
    if kind == "map":
        print("aggregate: Hadoop's aggregate package is a reducer or combiner, not a mapper",
              file=sys.stderr)
        return 2
    try:
        run(kind, sys.stdin.buffer, sys.stdout.buffer)
    except AggregateError as e:
        print(f"aggregate: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
