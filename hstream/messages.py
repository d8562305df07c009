"""What every daemon accepts: each message's schema, checked before it becomes an event.

The handshake proves a peer holds the cluster secret, not that its messages make sense: a
buggy client, a confused worker or (later) a task holding only its job's token can send any
JSON object. So each receiver looks the op up in its table here (`MANAGER`, `FROM_WORKER`,
`TO_WORKER`, `SHUFFLE`), which says who may send it (`Op.senders`: the credential its
connection was authenticated with) and the type, presence and bounds of every field. A
message that does not fit is refused with `BadMessage` naming the field; the receiver answers
that one request with the error and goes on. Fields not in an op's schema are dropped, so a
new field must be added here (tests/test_hostile_wire.py checks that every field of the
dataclasses in `hstream.job` has one).

The limits on what a task reports (stderr tail, status, counters, errors) live here too: the
task runner bounds its reports with the same numbers its worker and the manager check.
Stdlib only: worker hosts and the task runner import it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from hstream.errors import BadMessage
from hstream.job import ATTEMPT_ID, JOB_ID

# -- credentials -------------------------------------------------------------------------

#: Holds the cluster secret: clients, workers and the manager.
SECRET = "secret"
#: Holds one job's token (not issued yet): may only do that job's task work.
JOB_TOKEN = "job"
ANYONE = frozenset({SECRET, JOB_TOKEN})
CLUSTER = frozenset({SECRET})

# -- limits --------------------------------------------------------------------------------

MAX_TEXT = 4096
MAX_NAME = 255
MAX_PATH = 4096
#: A command line, a property or environment value: one execve string (MAX_ARG_STRLEN).
MAX_ARG = 128 << 10
MAX_CONF = 10_000
MAX_INPUTS = 100_000
MAX_FILES = 1_000
MAX_TASKS = 10_000_000
MAX_REDUCES = 100_000
MAX_SLOTS = 1_024
#: A submitted job's JSON, all fields together (tasks get it again in every `run`).
MAX_JOB_BYTES = 16 << 20
INT64 = 1 << 63

#: A task's report: the stderr lines kept, each cut to this many characters.
TAIL_LINES = 10
TAIL_LINE_CHARS = 4096
STATUS_CHARS = 4096
ERROR_CHARS = 16 << 10
#: Hadoop's counter limits (mapreduce.job.counters.max, …groups.max, …name.max).
COUNTERS = 120
COUNTER_GROUPS = 50
GROUP_NAME_CHARS = 128
COUNTER_NAME_CHARS = 64
#: Room for hstream's own counters beside the user's.
FRAMEWORK_COUNTERS = 32
#: One JSON line from the task runner to its worker.
REPORT_BYTES = 1 << 20
#: The end of a finished attempt's stderr log, sent with its result for the job history.
STDERR_CHARS = 64 << 10


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying so when it was cut."""
    if len(text) <= limit:
        return text
    mark = f"... [cut: {len(text):,} characters in all]"
    return text[:max(0, limit - len(mark))] + mark


# -- fields --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One field: its JSON type(s), whether it may be missing or null, and its bounds
    (`low`/`high`: a number's range, or a string's, list's or object's length)."""

    types: tuple[type, ...]
    required: bool = True
    nullable: bool = False
    low: float = 0
    high: float = MAX_TEXT
    pattern: re.Pattern[str] | None = None
    #: Every item of a list, every value of a map.
    items: Field | None = None
    #: Every key of a map.
    keys: Field | None = None
    #: The fields of a nested object.
    shape: Mapping[str, Field] | None = None


def text(high: int = MAX_TEXT, pattern: str | re.Pattern[str] | None = None, low: int = 0,
         required: bool = True, nullable: bool = False) -> Field:
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    return Field((str,), required, nullable, low, high, compiled)


def integer(low: float, high: float, required: bool = True, nullable: bool = False) -> Field:
    return Field((int,), required, nullable, low, high)


def number(low: float = -math.inf, high: float = math.inf, required: bool = True,
           nullable: bool = False) -> Field:
    return Field((int, float), required, nullable, low, high)


def flag(required: bool = True) -> Field:
    return Field((bool,), required)


def listof(item: Field, high: int, low: int = 0, required: bool = True) -> Field:
    return Field((list,), required, False, low, high, items=item)


def mapof(value: Field, high: int, key: Field | None = None, required: bool = True) -> Field:
    return Field((dict,), required, False, 0, high, items=value, keys=key or text(MAX_NAME))


def obj(shape: Mapping[str, Field], required: bool = True, nullable: bool = False) -> Field:
    return Field((dict,), required, nullable, 0, len(shape) + 64, shape=shape)


@dataclass(frozen=True)
class Op:
    """One op a receiver accepts: its fields, and which credentials may send it."""

    fields: Mapping[str, Field]
    senders: frozenset[str] = CLUSTER


# -- checking ------------------------------------------------------------------------------


def check(msg: dict[str, Any], table: Mapping[str, Op], credential: str = SECRET) -> dict[str, Any]:
    """The message with only its schema's fields; BadMessage names the first thing wrong."""
    op = msg.get("op")
    spec = table.get(op) if isinstance(op, str) else None
    if spec is None or not isinstance(op, str):
        raise BadMessage(f"unknown op {clip(str(op), 64)!r}")
    if credential not in spec.senders:
        raise BadMessage(f"op {op} is not allowed with a {credential} credential")
    check_fields(op, msg, spec.fields)
    return {"op": op, **{k: msg[k] for k in spec.fields if k in msg}}


#: Where a value sits in a message: a name, or (its container's place, how, key). Spelled out
#: only for an error: a report holds hundreds of values, and a name made for each costs more
#: than checking it.
Where: TypeAlias = str | tuple["Where", str, Any]


def where_name(where: Where) -> str:
    if isinstance(where, str):
        return where
    parent, how, key = where
    name = where_name(parent)
    if how == ".":
        return f"{name}.{key}"
    if how == "[]":
        return f"{name}[{key}]"
    if how == "key":
        return f"{name} key"
    return f"{name}[{clip(key, 40)!r}]"


def check_fields(where: Where, data: dict[str, Any], shape: Mapping[str, Field]) -> None:
    for name, f in shape.items():
        if name in data:
            check_value((where, ".", name), data[name], f)
        elif f.required:
            raise BadMessage(f"{where_name(where)}: {name} is missing")


def check_value(name: Where, value: Any, f: Field) -> None:
    """Type, then bounds, then the parts (list items, map entries, object fields)."""
    if value is None:
        if f.nullable:
            return
        raise BadMessage(f"{where_name(name)} must not be null")
    if not isinstance(value, f.types) or (isinstance(value, bool) and bool not in f.types):
        raise BadMessage(f"{where_name(name)} must be {_names(f.types)}, not {_json_type(value)}")
    _check_bounds(name, value, f)
    if f.pattern is not None and isinstance(value, str) and not f.pattern.fullmatch(value):
        raise BadMessage(f"{where_name(name)} is malformed: {clip(value, 80)!r}")
    if isinstance(value, list) and f.items is not None:
        for i, item in enumerate(value):
            check_value((name, "[]", i), item, f.items)
    elif isinstance(value, dict):
        _check_object(name, value, f)


def _check_bounds(name: Where, value: Any, f: Field) -> None:
    if isinstance(value, (str, list, dict)):
        if not f.low <= len(value) <= f.high:
            unit = "characters" if isinstance(value, str) else "entries"
            raise BadMessage(f"{where_name(name)} must have {_range(f)} {unit}, "
                             f"not {len(value):,}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise BadMessage(f"{where_name(name)} must be a finite number, not {value}")
    elif not f.low <= value <= f.high:
        raise BadMessage(f"{where_name(name)} must be {_range(f)}, not {clip(repr(value), 40)}")


def _check_object(name: Where, value: dict[str, Any], f: Field) -> None:
    if f.shape is not None:
        check_fields(name, value, f.shape)
        return
    for key, item in value.items():
        if f.keys is not None:
            check_value((name, "key", key), key, f.keys)
        if f.items is not None:
            check_value((name, "[k]", key), item, f.items)


def _range(f: Field) -> str:
    def show(x: float) -> str:
        return f"{x:,.0f}" if math.isfinite(x) and x == int(x) else f"{x:g}"
    if f.low == 0 and math.isfinite(f.high):
        return f"at most {show(f.high)}"
    if not math.isfinite(f.high):
        return f"at least {show(f.low)}"
    return f"{show(f.low)} to {show(f.high)}"


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES[t] for t in types)


def _json_type(value: Any) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


_TYPE_NAMES: dict[type, str] = {str: "a string", int: "an integer", float: "a number",
                                bool: "true or false", list: "a list", dict: "an object"}

# -- the data ------------------------------------------------------------------------------

JOB = text(64, JOB_ID)
ATTEMPT = text(96, ATTEMPT_ID)
#: A worker id or host name, as they appear in logs and status.
HOSTNAME = text(MAX_NAME, r"[A-Za-z0-9._:\[\]%-]+", low=1)
PORT = integer(1, 65535)
PATH = text(MAX_PATH, low=1)
COMMAND = text(MAX_ARG)
OFFSET = integer(0, INT64 - 1)
PROPERTIES = mapof(text(MAX_ARG), MAX_CONF, key=text(MAX_TEXT, low=1), required=False)

SPLIT = {"path": PATH, "start": OFFSET, "length": OFFSET,
         "codec": text(8, "|gz|bz2", required=False),
         "size": integer(-1, INT64 - 1, required=False),
         "mtime_ns": integer(-INT64, INT64 - 1, required=False)}
#: A CombineTextInputFormat split's file ranges, and an -inputreader's settings.
SPLIT_PART = dict(SPLIT)
SPLIT["parts"] = listof(obj(SPLIT_PART), MAX_INPUTS, required=False)
SPLIT["reader"] = mapof(text(MAX_TEXT), 16, key=text(64), required=False)
SHIP_FILE = {"path": PATH, "name": text(MAX_NAME, low=1), "archive": flag(required=False)}
MAP_OUTPUT = {"map_index": integer(0, MAX_TASKS), "attempt_id": ATTEMPT, "host": HOSTNAME,
              "port": PORT}

JOB_SPEC = {
    "name": text(MAX_TEXT), "inputs": listof(PATH, MAX_INPUTS, low=1), "output": PATH,
    "mapper": COMMAND, "reducer": text(MAX_ARG, nullable=True),
    "combiner": text(MAX_ARG, required=False, nullable=True),
    "num_reduces": integer(0, MAX_REDUCES, required=False),
    "num_maps": integer(0, MAX_TASKS, required=False, nullable=True),
    "files": listof(obj(SHIP_FILE), MAX_FILES, required=False),
    "cmdenv": PROPERTIES, "conf": PROPERTIES, "lazy_output": flag(required=False),
    "cwd": text(MAX_PATH, required=False), "shared_fs": flag(required=False),
}

TASK_SPEC = {
    "job_id": JOB, "kind": text(6, "map|reduce"), "index": integer(0, MAX_TASKS),
    "attempt": integer(0, 1 << 20), "num_reduces": integer(0, MAX_REDUCES),
    "command": COMMAND, "combiner": text(MAX_ARG, nullable=True), "conf": PROPERTIES,
    "env": PROPERTIES, "files": listof(obj(SHIP_FILE), MAX_FILES), "output_dir": PATH,
    "split": obj(SPLIT, required=False, nullable=True),
    "sources": listof(obj(MAP_OUTPUT), MAX_TASKS, required=False),
    "num_maps": integer(0, MAX_TASKS, required=False),
    "lazy_output": flag(required=False), "shared_fs": flag(required=False),
    "manager": text(MAX_NAME, required=False),
}

COUNTER_MAP = mapof(
    mapof(integer(-INT64, INT64 - 1), COUNTERS + FRAMEWORK_COUNTERS,
          key=text(COUNTER_NAME_CHARS)),
    COUNTER_GROUPS + FRAMEWORK_COUNTERS, key=text(GROUP_NAME_CHARS), required=False)

TASK_RESULT = {
    "ok": flag(), "counters": COUNTER_MAP,
    "output_file": text(MAX_NAME, required=False, nullable=True),
    "error": text(ERROR_CHARS, required=False),
    "fetch_failed_map": integer(0, MAX_TASKS, required=False, nullable=True),
    "exit_status": integer(-1024, 1024, required=False, nullable=True),
    "stderr_tail": listof(text(TAIL_LINE_CHARS), TAIL_LINES, required=False),
    "packed": Field((list,), False, True, 2, MAX_REDUCES + 1, items=integer(0, INT64)),
}

HELD_OUTPUT = {"job_id": JOB, "attempt_id": ATTEMPT, "counters": COUNTER_MAP}

# -- the tables ----------------------------------------------------------------------------

#: The first message on a connection to the manager.
MANAGER: dict[str, Op] = {
    "submit": Op({"job": obj(JOB_SPEC)}),
    "status": Op({}),
    "kill": Op({"job_id": JOB}),
    "logs": Op({"job_id": JOB}),
    "shutdown": Op({}),
    "register": Op({"worker_id": HOSTNAME, "host": HOSTNAME, "shuffle_port": PORT,
                    "slots": integer(1, MAX_SLOTS), "pid": integer(0, INT64, required=False),
                    "version": integer(0, 1 << 16, required=False),
                    # Finished map output kept through a manager restart (journal.py).
                    "held": listof(obj(HELD_OUTPUT), MAX_TASKS, required=False)}),
    # Follow a running job again (a client whose manager restarted).
    "attach": Op({"job_id": JOB}),
    # The relay (shared_fs = no): a task's own job's data.
    "read_split": Op({"job_id": JOB, "split": obj(SPLIT)}, ANYONE),
    "get_file": Op({"job_id": JOB, "name": text(MAX_NAME, low=1)}, ANYONE),
    "put_output": Op({"job_id": JOB, "attempt_id": ATTEMPT, "name": text(MAX_NAME, low=1)},
                     ANYONE),
}

#: What a registered worker sends the manager on its connection.
FROM_WORKER: dict[str, Op] = {
    "progress": Op({"attempt_id": ATTEMPT,
                    "progress": number(-1e6, 1e6, required=False, nullable=True),
                    "status": text(STATUS_CHARS, required=False, nullable=True),
                    "bytes": listof(integer(0, INT64 - 1), 3, required=False)}),
    "done": Op({"attempt_id": ATTEMPT, "result": obj(TASK_RESULT),
                "stderr": text(STDERR_CHARS, required=False)}),
}

#: What the manager sends a worker.
TO_WORKER: dict[str, Op] = {
    "registered": Op({"heartbeat_interval": number(0.001, 3600), "heartbeat_port": PORT,
                      "session": text(64, required=False),
                      "manager_timeout": number(0, 86400, required=False, nullable=True)}),
    "run": Op({"spec": obj(TASK_SPEC)}),
    "kill": Op({"attempt_id": ATTEMPT}),
    # Maps finished since a reduce attempt started (slowstart): fetch these too.
    "sources": Op({"attempt_id": ATTEMPT, "sources": listof(obj(MAP_OUTPUT), MAX_TASKS)}),
    "job_done": Op({"job_id": JOB}),
    "ping": Op({}),
    "shutdown": Op({}),
    "error": Op({"message": text(ERROR_CHARS)}),
}

#: A worker's shuffle server: a reducer fetching one map's partition.
SHUFFLE: dict[str, Op] = {
    "fetch": Op({"job_id": JOB, "attempt_id": ATTEMPT, "partition": integer(0, MAX_REDUCES),
                 "in_place": flag(required=False)}, ANYONE),
}
