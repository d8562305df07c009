"""Which Hadoop properties hstream knows, and what it does with each one a job sets.

A pasted command carries properties of three kinds (README, "Properties"):

- implemented: hstream does what Hadoop does with it (`IMPLEMENTED`, and `hstream.*` settings);
- known to Hadoop but meaningful only on a Hadoop cluster (JVM options, queues, vmem checks,
  replication, cluster addresses, and every other name in Hadoop's own tables): accepted, and
  named once in a notice;
- unknown to every table: an error naming it, with the nearest known name. Hadoop silently
  ignores such names, but in real commands each one was a typo that changed the job.

The tables are data shipped with the package (`data/`): Hadoop 3.4.1's *-default.xml names and
defaults plus streaming's own (defaults.tsv), the deprecated names (deprecated.tsv), and the
few names real commands use that those lack (extra.tsv). They also give the task environment
Hadoop's defaults. Stdlib only (tasks read the defaults on worker hosts).
"""

from __future__ import annotations

import difflib
import functools
import getpass
import os
import re
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from hstream.errors import ConfigError

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

#: Properties hstream implements (current names). Every other known name is only accepted.
IMPLEMENTED = frozenset({
    "mapreduce.job.reduces", "mapreduce.job.maps", "mapreduce.job.name",
    "mapreduce.map.maxattempts", "mapreduce.reduce.maxattempts", "mapreduce.task.timeout",
    "mapreduce.map.speculative", "mapreduce.reduce.speculative", "mapreduce.job.speculative",
    "mapreduce.job.maxtaskfailures.per.tracker",
    "mapreduce.output.fileoutputformat.compress",
    "mapreduce.output.fileoutputformat.compress.codec",
    "mapreduce.output.textoutputformat.separator", "mapred.textoutputformat.ignoreseparator",
    "mapreduce.partition.keypartitioner.options", "mapreduce.partition.keycomparator.options",
    "mapreduce.job.output.key.comparator.class", "mapreduce.map.output.key.field.separator",
    "mapreduce.input.lineinputformat.linespermap",
    "mapreduce.input.keyvaluelinerecordreader.key.value.separator",
    "mapreduce.fileoutputcommitter.marksuccessfuljobs",
    "stream.map.output.field.separator", "stream.num.map.output.key.fields",
    "stream.map.input.field.separator", "stream.reduce.input.field.separator",
    "stream.reduce.output.field.separator", "stream.num.reduce.output.key.fields",
    "stream.map.input.ignoreKey", "stream.non.zero.exit.is.failure",
    "stream.jobconf.truncate.limit", "stream.stderr.reporter.prefix",
    "stream.map.input", "stream.map.output", "stream.reduce.input", "stream.reduce.output",
    "stream.recordreader.class", "stream.recordreader.begin", "stream.recordreader.end",
    "stream.recordreader.slowmatch", "stream.recordreader.maxrec",
    "stream.recordreader.lookahead", "stream.tmpdir",
    "mapreduce.fieldsel.data.field.separator",
    "mapreduce.fieldsel.map.output.key.value.fields.spec",
    "mapreduce.fieldsel.reduce.output.key.value.fields.spec",
    "mapreduce.job.partitioner.class", "num.key.fields.for.partition",
    "mapreduce.map.output.key.class", "mapreduce.map.output.value.class",
    "mapreduce.job.output.key.class", "mapreduce.job.output.value.class",
    "mapreduce.task.io.sort.mb", "fs.local.block.size",
    "mapreduce.input.fileinputformat.split.minsize",
    "mapreduce.input.fileinputformat.split.maxsize",
    "mapreduce.input.fileinputformat.input.dir.recursive",
    "mapreduce.map.output.compress", "mapreduce.map.output.compress.codec",
    "mapreduce.job.priority", "mapreduce.job.reduce.slowstart.completedmaps",
    "mapreduce.map.memory.mb", "mapreduce.reduce.memory.mb",
    "mapred.child.ulimit", "mapred.map.child.ulimit", "mapred.reduce.child.ulimit",
    "mapreduce.task.files.preserve.failedtasks",
    "mapreduce.input.linerecordreader.line.maxlength",
})

#: hstream's own settings (`-D hstream.…`); any other hstream.* name is an error.
HSTREAM_SETTINGS = frozenset({
    "hstream.sort.buffer.bytes", "hstream.speculative.slowness", "hstream.speculative.lag",
    "hstream.partitioner", "hstream.inputformat",  # set from -partitioner / -inputformat
    "hstream.task.output.line.maxlength", "hstream.task.exit.grace.ms",
})

#: Old names Hadoop 1 used that Hadoop 3's deprecation table no longer lists.
EXTRA_RENAMES = {"mapred.partitioner.class": "mapreduce.job.partitioner.class"}

#: Cluster settings that are already true of hstream: no notice for these values.
SILENT_VALUES = {
    "fs.defaultFS": ("file:///", "file:/", "file://"),
    "mapreduce.framework.name": ("local",),
    "mapreduce.jobtracker.address": ("local",),
}

#: What StreamJob.setJobConf sets for a text job, so tasks see it as on Hadoop.
STREAMJOB_SETTINGS = {
    "mapred.input.format.class": "org.apache.hadoop.mapred.TextInputFormat",
    "mapred.output.format.class": "org.apache.hadoop.mapred.TextOutputFormat",
    "mapred.mapper.class": "org.apache.hadoop.streaming.PipeMapper",
    "mapred.reducer.class": "org.apache.hadoop.streaming.PipeReducer",
    "mapred.map.runner.class": "org.apache.hadoop.streaming.PipeMapRunner",
    "mapreduce.map.output.key.class": "org.apache.hadoop.io.Text",
    "mapreduce.map.output.value.class": "org.apache.hadoop.io.Text",
    "mapreduce.job.output.key.class": "org.apache.hadoop.io.Text",
    "mapreduce.job.output.value.class": "org.apache.hadoop.io.Text",
    "stream.map.input.writer.class": "org.apache.hadoop.streaming.io.TextInputWriter",
    "stream.reduce.input.writer.class": "org.apache.hadoop.streaming.io.TextInputWriter",
    "stream.map.output.reader.class": "org.apache.hadoop.streaming.io.TextOutputReader",
    "stream.reduce.output.reader.class": "org.apache.hadoop.streaming.io.TextOutputReader",
    "mapreduce.jobtracker.address": "local",
}


class Use(StrEnum):
    IMPLEMENTED = "implemented"
    #: Known to Hadoop, no effect here: accepted and named in the notice.
    IGNORED = "ignored"
    #: Known to Hadoop, and its value is already what hstream does: accepted silently.
    SILENT = "silent"


@dataclass(frozen=True)
class Tables:
    """Hadoop's property names: current names with their defaults, and old names."""

    defaults: dict[str, str]
    #: old name -> current name (the first, for the one old name Hadoop splits in two)
    renames: dict[str, str]
    #: current name -> its old names
    old_names: dict[str, tuple[str, ...]]

    @functools.cached_property
    def known(self) -> frozenset[str]:
        return (frozenset(self.defaults) | set(self.renames) | IMPLEMENTED | HSTREAM_SETTINGS
                | set(STREAMJOB_SETTINGS))


def _rows(name: str) -> list[list[str]]:
    with open(os.path.join(DATA_DIR, name), encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if not line.startswith("#")]


@functools.cache
def tables() -> Tables:
    """The data files, read once per process."""
    defaults = {row[0]: row[1].replace("\\t", "\t") for row in _rows("defaults.tsv")}
    defaults.update((row[0], row[1]) for row in _rows("extra.tsv"))
    renames: dict[str, str] = dict(EXTRA_RENAMES)
    old_names: dict[str, list[str]] = {}
    for old, new in _rows("deprecated.tsv"):
        renames.setdefault(old, new)
        defaults.setdefault(new, "")
        old_names.setdefault(new, []).append(old)
    return Tables(defaults, renames, {k: tuple(v) for k, v in old_names.items()})


def current_name(name: str) -> str:
    return tables().renames.get(name, name)


@dataclass(frozen=True)
class Property:
    """One property a job sets: the name as given, its current name, and what hstream does."""

    given: str
    name: str
    use: Use


def classify(given: str, value: str) -> Property:
    """What hstream does with a property; ConfigError for a name no table knows."""
    name = current_name(given)
    if name in IMPLEMENTED or name in HSTREAM_SETTINGS:
        return Property(given, name, Use.IMPLEMENTED)
    if name.startswith("hstream."):
        raise ConfigError(f"unknown hstream setting: {name}{_suggestion(name)}")
    if name not in tables().known:
        raise ConfigError(f"unknown property: {given}{_suggestion(given)}")
    silent = _check_class(given, name, value)
    silent = silent or value.strip() in SILENT_VALUES.get(name, ())
    return Property(given, name, Use.SILENT if silent else Use.IGNORED)


#: A misspelling this close to a known name is that name; below it, a known name the
#: given one merely extends (`mapreduce.job.name.job.name`) is the better guess.
_SPELLING_RATIO = 0.9


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name, tables().known, n=1, cutoff=0.75)
    if not close or difflib.SequenceMatcher(None, name, close[0]).ratio() < _SPELLING_RATIO:
        close = _known_prefix(name) or close
    return f" (did you mean {close[0]}?)" if close else ""


def _known_prefix(name: str) -> list[str]:
    """The longest known name that `name` extends by whole dot-separated words."""
    parts = name.split(".")
    for end in range(len(parts) - 1, 1, -1):
        if ".".join(parts[:end]) in tables().known:
            return [".".join(parts[:end])]
    return []


#: What a text job reads and writes anyway, so naming it changes nothing.
_TEXT_CLASSES = (".TextInputFormat", ".TextOutputFormat", ".io.Text")
#: The Java classes that decide what a job computes (a cluster's own classes, such as its
#: scheduler's, do not): hstream cannot run them.
JOB_CLASSES = frozenset({
    "mapred.input.format.class", "mapreduce.job.inputformat.class",
    "mapred.output.format.class", "mapreduce.job.outputformat.class",
    "mapred.mapper.class", "mapreduce.job.map.class", "mapred.reducer.class",
    "mapreduce.job.reduce.class", "mapred.combiner.class", "mapreduce.job.combine.class",
    "mapred.map.runner.class", "mapreduce.job.output.group.comparator.class",
    "mapreduce.job.combiner.group.comparator.class", "mapreduce.input.pathFilter.class",
})


def _check_class(given: str, name: str, value: str) -> bool:
    """A Java class hstream cannot run changes what the job computes: never ignore one.
    True when the class is what a text streaming job uses anyway."""
    if name not in JOB_CLASSES and not (name.startswith("stream.") and name.endswith(".class")):
        return value.strip() == STREAMJOB_SETTINGS.get(name)
    value = value.strip()
    allowed = {tables().defaults.get(name, ""), STREAMJOB_SETTINGS.get(name, "")}
    if value not in allowed and not value.endswith(_TEXT_CLASSES):
        raise ConfigError(f"unsupported {given}: {value} (hstream cannot run Java classes; "
                          "README lists the classes it replaces)")
    return True


#: JobPriority's names, as JobConf.getJobPriorityAsInteger numbers them (more is sooner).
PRIORITIES = {"VERY_HIGH": 5, "HIGH": 4, "NORMAL": 3, "LOW": 2, "VERY_LOW": 1, "DEFAULT": 0,
              "UNDEFINED_PRIORITY": 0}


def job_priority(value: str) -> int:
    """A mapreduce.job.priority value as a number; ValueError for anything else."""
    value = value.strip()
    if value.upper() in PRIORITIES:
        return PRIORITIES[value.upper()]
    return int(value)


# -- the task environment ---------------------------------------------------------------------

_VAR = re.compile(r"\$\{([^}$\s]+)\}")
_MAX_SUBST = 20  # Configuration.MAX_SUBST


def _system_properties() -> dict[str, str]:
    """The Java system properties Hadoop's defaults refer to (`${user.name}` …)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user.name": user, "user.home": os.path.expanduser("~"),
            "java.io.tmpdir": tmpdir()}


def tmpdir() -> str:
    """$TMPDIR or /tmp, without `tempfile.gettempdir()`'s probe: it creates and removes a file
    there, and a task killed in between (Ctrl-C kills whole sessions) would leave it behind."""
    return os.environ.get("TMPDIR") or "/tmp"


def expand(value: str, conf: Mapping[str, str], system: dict[str, str]) -> str:
    """Configuration.get's variable expansion: `${name}` from the job, then system properties."""
    for _ in range(_MAX_SUBST):
        m = _VAR.search(value)
        if m is None:
            return value
        found = conf.get(m.group(1), system.get(m.group(1)))
        if found is None:
            return value
        value = value[:m.start()] + found + value[m.end():]
    return value


def job_view(conf: dict[str, str]) -> dict[str, str]:
    """Every property of the job as a Hadoop task's JobConf holds it: the defaults, what
    StreamJob sets, the job's own, variables expanded, and each set property under its old
    names too (Configuration.setDeprecatedProperties). Empty defaults are left out.

    Made for every attempt (some 1,800 properties): only values holding a `${…}` are
    expanded, the others are as they are."""
    t = tables()
    raw, templated = _raw_view()
    full = {**raw, **conf}
    system = _system_properties()
    view = dict(full)
    for key in (*templated, *conf):
        view[key] = expand(full[key], full, system)
    for name, olds in t.old_names.items():
        if name in view:
            for old in olds:
                view.setdefault(old, view[name])
    return view


def attempt_view(job: dict[str, str], attempt: dict[str, str]) -> dict[str, str]:
    """`job_view({**job, **attempt})` for attempt after attempt of one job (a task runner
    serves many): what does not depend on the attempt's own properties, nearly all of it, is
    expanded once per job; only the attempt's properties, the values that lead to them
    through `${…}`, and their old names are made per attempt."""
    base, over = attempt_overlay(job, attempt)
    return {**base, **over}


def attempt_overlay(job: dict[str, str], attempt: dict[str, str]
                    ) -> tuple[dict[str, str], dict[str, str]]:
    """`attempt_view` in two parts: the job's view, the same object attempt after attempt
    (do not change it), and what the attempt puts over it (a few dozen properties)."""
    base, dependent, owners = _job_part(tuple(job.items()), tuple(sorted(attempt)))
    full = ChainMap(attempt, job, _raw_view()[0])  # looked up a few dozen times: not copied
    system = _system_properties()
    over = dict(attempt)
    for key in dependent:
        over[key] = expand(full[key], full, system)
    for old, name in owners.items():
        over[old] = over[name]
    return base, over


@functools.lru_cache(maxsize=4)
def _job_part(job_items: tuple[tuple[str, str], ...], attempt_keys: tuple[str, ...]
              ) -> tuple[dict[str, str], tuple[str, ...], dict[str, str]]:
    """A job's view without its attempts' properties; the keys whose expansion depends on
    them; and the old names those keys give their value to (old name -> key)."""
    job = dict(job_items)
    raw, templated = _raw_view()
    full = {**raw, **job, **dict.fromkeys(attempt_keys, "")}
    targets = set(attempt_keys)
    dependent = tuple(k for k in (*templated, *job, *attempt_keys)
                      if k in targets or _reaches(k, full, targets, set()))
    owners = {}
    for name, olds in tables().old_names.items():
        for old in olds:
            if name in full and old not in full and old not in owners:
                owners[old] = name
    moving = set(dependent)
    affected = {old: name for old, name in owners.items() if name in moving}
    return job_view(job), dependent, affected


def _reaches(key: str, full: dict[str, str], targets: set[str], seen: set[str]) -> bool:
    """Whether `${…}` in key's value leads, directly or through other values, to `targets`."""
    seen.add(key)
    return any(name in targets or (name not in seen and _reaches(name, full, targets, seen))
               for name in _VAR.findall(full.get(key, "")))


@functools.cache
def _raw_view() -> tuple[dict[str, str], tuple[str, ...]]:
    """The non-empty defaults and StreamJob's settings, and which of them hold a `${…}`."""
    full = {k: v for k, v in tables().defaults.items() if v}
    full.update(STREAMJOB_SETTINGS)
    return full, tuple(k for k, v in full.items() if "${" in v)
