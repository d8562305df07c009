"""Hadoop Streaming's command line: from `hadoop jar hadoop-streaming.jar …` words to a JobSpec.

Both spellings are accepted (`-mapper` and `--mapper`), generic options too
(`-D k=v`, `-Dk=v`, `-files`, `-archives`), and the old names Hadoop still
takes map to the new ones. Anything not understood is an error that names it:
a silently ignored option is a job that does the wrong thing.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from xml.etree import ElementTree

from hstream.errors import ConfigError, HstreamError, OutputExists
from hstream.hadoop import command as commands
from hstream.hadoop import keyfields
from hstream.hadoop.codecs import CODECS
from hstream.hadoop.inputpaths import list_inputs
from hstream.job import JobSpec, ShipFile

#: Old property names Hadoop still accepts, and the new names they stand for.
DEPRECATED = {
    "mapred.reduce.tasks": "mapreduce.job.reduces",
    "mapred.map.tasks": "mapreduce.job.maps",
    "mapred.job.name": "mapreduce.job.name",
    "mapred.map.max.attempts": "mapreduce.map.maxattempts",
    "mapred.reduce.max.attempts": "mapreduce.reduce.maxattempts",
    "mapred.task.timeout": "mapreduce.task.timeout",
    "mapred.map.tasks.speculative.execution": "mapreduce.map.speculative",
    "mapred.reduce.tasks.speculative.execution": "mapreduce.reduce.speculative",
    "mapred.output.compress": "mapreduce.output.fileoutputformat.compress",
    "mapred.output.compression.codec": "mapreduce.output.fileoutputformat.compress.codec",
    "mapred.textoutputformat.separator": "mapreduce.output.textoutputformat.separator",
    "mapred.text.key.partitioner.options": "mapreduce.partition.keypartitioner.options",
    "mapred.text.key.comparator.options": "mapreduce.partition.keycomparator.options",
    "mapred.output.key.comparator.class": "mapreduce.job.output.key.comparator.class",
    "map.output.key.field.separator": "mapreduce.map.output.key.field.separator",
    "mapred.line.input.format.linespermap": "mapreduce.input.lineinputformat.linespermap",
    "key.value.separator.in.input.line":
        "mapreduce.input.keyvaluelinerecordreader.key.value.separator",
    "mapred.job.reduce.input.buffer.percent": "mapreduce.reduce.input.buffer.percent",
    "mapred.max.tracker.failures": "mapreduce.job.maxtaskfailures.per.tracker",
    "mapred.skip.mode.enabled": "mapreduce.task.skip.start.attempts",
    "mapred.partitioner.class": "mapreduce.job.partitioner.class",
    "mapred.data.field.separator": "mapreduce.fieldsel.data.field.separator",
    "map.output.key.value.fields.spec": "mapreduce.fieldsel.map.output.key.value.fields.spec",
    "reduce.output.key.value.fields.spec": "mapreduce.fieldsel.reduce.output.key.value.fields.spec",
    "mapred.mapoutput.key.class": "mapreduce.map.output.key.class",
    "mapred.mapoutput.value.class": "mapreduce.map.output.value.class",
    "mapred.output.key.class": "mapreduce.job.output.key.class",
    "mapred.output.value.class": "mapreduce.job.output.value.class",
}

#: hstream's own settings (`-D hstream.…`); any other hstream.* name is refused like any property.
HSTREAM_SETTINGS = {
    "hstream.sort.buffer.bytes", "hstream.speculative.slowness", "hstream.speculative.lag",
    "hstream.partitioner", "hstream.inputformat",  # set from -partitioner / -inputformat
}

#: Properties hstream implements. Everything else is refused by name.
SUPPORTED = {
    "mapreduce.job.reduces", "mapreduce.job.maps", "mapreduce.job.name",
    "mapreduce.map.maxattempts", "mapreduce.reduce.maxattempts", "mapreduce.task.timeout",
    "mapreduce.map.speculative", "mapreduce.reduce.speculative", "mapreduce.job.speculative",
    "mapreduce.job.maxtaskfailures.per.tracker",
    "mapreduce.output.fileoutputformat.compress",
    "mapreduce.output.fileoutputformat.compress.codec",
    "mapreduce.output.textoutputformat.separator",
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
    "mapreduce.fieldsel.data.field.separator",
    "mapreduce.fieldsel.map.output.key.value.fields.spec",
    "mapreduce.fieldsel.reduce.output.key.value.fields.spec",
    "mapreduce.job.partitioner.class", "num.key.fields.for.partition",
    "mapreduce.map.output.key.class", "mapreduce.map.output.value.class",
    "mapreduce.job.output.key.class", "mapreduce.job.output.value.class",
}

#: Writable classes a text job may name: what streaming reads and writes anyway.
TEXT_CLASSES = {"org.apache.hadoop.io.Text"}

COMPARATORS = {
    "org.apache.hadoop.mapreduce.lib.partition.KeyFieldBasedComparator",
    "org.apache.hadoop.mapred.lib.KeyFieldBasedComparator",
}
PARTITIONERS = {
    "org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner": "KeyFieldBasedPartitioner",
    "org.apache.hadoop.mapreduce.lib.partition.KeyFieldBasedPartitioner":
        "KeyFieldBasedPartitioner",
    # Hadoop's default: hstream's own hash partitioner plays its part.
    "org.apache.hadoop.mapred.lib.HashPartitioner": "",
    "org.apache.hadoop.mapreduce.lib.partition.HashPartitioner": "",
}
#: Input formats by the names Hadoop accepts for them (short names as StreamJob allows).
INPUT_FORMATS = {
    f"{package}{name}": name
    for name, packages in {
        "TextInputFormat": ("", "org.apache.hadoop.mapred.",
                            "org.apache.hadoop.mapreduce.lib.input."),
        "KeyValueTextInputFormat": ("", "org.apache.hadoop.mapred.",
                                    "org.apache.hadoop.mapreduce.lib.input."),
        "NLineInputFormat": ("", "org.apache.hadoop.mapred.lib.",
                             "org.apache.hadoop.mapreduce.lib.input."),
    }.items()
    for package in packages
}
OUTPUT_FORMATS = {"TextOutputFormat", "org.apache.hadoop.mapred.TextOutputFormat",
                  "org.apache.hadoop.mapreduce.lib.output.TextOutputFormat"}
FIELDSEL = "org.apache.hadoop.mapred.lib.FieldSelectionMapReduce"

_VALUE_OPTS = {
    "input", "output", "mapper", "reducer", "combiner", "numReduceTasks", "file", "files",
    "cmdenv", "partitioner", "inputformat", "outputformat", "D", "jobconf", "archives",
    "workers", "config", "conf", "cacheFile", "cacheArchive", "io",
}
_FLAG_OPTS = {"lazyOutput", "verbose", "background", "info", "help"}


@dataclass
class Options:
    """The parsed command line: the job, plus how the client should run it."""

    spec: JobSpec
    workers: int | None = None
    config: str | None = None
    verbose: bool = False
    background: bool = False
    help: bool = False
    lazy: bool = False


def _words(argv: list[str]) -> list[tuple[str, str | None]]:
    """(option, value) pairs; values are None for flags."""
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-") or word in ("-", "--"):
            raise ConfigError(f"unexpected argument: {word}")
        name = word.lstrip("-")
        if name.startswith("D") and len(name) > 1 and "=" in name:
            pairs.append(("D", name[1:]))
            i += 1
            continue
        if "=" in name and name.split("=", 1)[0] in _VALUE_OPTS and word.startswith("--"):
            name, value = name.split("=", 1)
            pairs.append((name, value))
            i += 1
            continue
        if name in _FLAG_OPTS:
            pairs.append((name, None))
            i += 1
            continue
        if name not in _VALUE_OPTS:
            raise ConfigError(f"unknown option: {word}")
        if i + 1 >= len(argv):
            raise ConfigError(f"option {word} needs a value")
        pairs.append((name, argv[i + 1]))
        i += 2
    return pairs


def _property(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"property must be KEY=VALUE: {text}")
    return _check_property(key), value


def _check_property(name: str) -> str:
    """The current name of a property hstream implements; ConfigError names any other."""
    key = DEPRECATED.get(name, name)
    if key in SUPPORTED or key in HSTREAM_SETTINGS:
        return key
    given = f" (given as {name})" if key != name else ""
    if key.startswith("hstream."):
        raise ConfigError(f"unknown hstream setting: {key}")
    raise ConfigError(f"unsupported property: {key}{given}")


def read_conf_file(path: str) -> dict[str, str]:
    """A Hadoop configuration file (`-conf`): <configuration><property><name/><value/>…"""
    try:
        root = ElementTree.parse(path).getroot()
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    except ElementTree.ParseError as e:
        raise ConfigError(f"configuration file {path} is not valid XML: {e}") from None
    conf: dict[str, str] = {}
    for prop in root.iter("property"):
        name, value = prop.findtext("name"), prop.findtext("value")
        if not name:
            raise ConfigError(f"configuration file {path}: a property has no name")
        conf[_check_property(name.strip())] = (value or "").strip()
    return conf


def parse(argv: list[str], cwd: str | None = None) -> Options:
    """Parse a streaming command line; ConfigError names what is wrong.

    Hadoop wants generic options (-D, -files, -archives, -conf) before the streaming
    ones; hstream takes them in any order. -conf files are read first, -D wins over them."""
    cwd = cwd or os.getcwd()
    inputs: list[str] = []
    files: list[ShipFile] = []
    cmdenv: dict[str, str] = {}
    conf: dict[str, str] = {}
    from_files: dict[str, str] = {}
    single: dict[str, str] = {}
    opts = Options(spec=JobSpec(name="", inputs=[], output="", mapper="cat", reducer="cat"))
    for name, value in _words(argv):
        if name in _FLAG_OPTS:
            setattr(opts, {"lazyOutput": "lazy", "info": "help"}.get(name, name), True)
            continue
        assert value is not None
        if name == "input":
            inputs += [v for v in value.split(",") if v]
        elif name in ("file", "files", "archives", "cacheFile", "cacheArchive"):
            files += _ship(value, name in ("archives", "cacheArchive"), cwd)
        elif name == "cmdenv":
            k, sep, v = value.partition("=")
            if not sep or not k:
                raise ConfigError(f"-cmdenv must be NAME=VALUE: {value}")
            cmdenv[k] = v
        elif name in ("D", "jobconf"):
            k, v = _property(value)
            conf[k] = v
        elif name == "conf":
            from_files.update(read_conf_file(os.path.join(cwd, value)))
        elif name == "io":
            if value != "text":
                raise ConfigError(f"unsupported -io: {value} (hstream streams text only)")
        else:
            single[name] = value
    if opts.help:
        return opts
    return _build(opts, single, inputs, files, cmdenv, {**from_files, **conf}, cwd)


def _build(opts: Options, single: dict[str, str], inputs: list[str], files: list[ShipFile],
           cmdenv: dict[str, str], conf: dict[str, str], cwd: str) -> Options:
    if not inputs:
        raise ConfigError("missing required option: -input")
    if "output" not in single:
        raise ConfigError("missing required option: -output")
    if "workers" in single:
        opts.workers = _int(single["workers"], "--workers", minimum=1)
    opts.config = single.get("config")
    _classes(single, conf)
    mapper = single.get("mapper", "cat")
    reducer: str | None = single.get("reducer", "cat")
    reduces = _int(conf.get("mapreduce.job.reduces", "1"), "mapreduce.job.reduces")
    if "numReduceTasks" in single:
        reduces = _int(single["numReduceTasks"], "-numReduceTasks")
    if reducer == "NONE" or reduces == 0:
        reducer, reduces = None, 0
    _check_ints(conf)
    combiner = single.get("combiner")
    if _is_aggregate(mapper):
        raise ConfigError(
            "-mapper aggregate: the aggregate package is a reducer (-reducer aggregate)")
    if reducer is not None and _is_aggregate(reducer):
        reducer = combiner = "aggregate"  # StreamJob sets ValueAggregatorCombiner with it
    if commands.split_command(mapper)[:1] == [FIELDSEL]:
        _fieldsel_map_key(conf)
    mapper = _localize(mapper, "mapper", files, cwd)
    if combiner is not None:
        combiner = _localize(combiner, "combiner", files, cwd)
    if reducer is not None:
        reducer = _localize(reducer, "reducer", files, cwd)
    output = os.path.abspath(os.path.join(cwd, single["output"]))
    spec = JobSpec(
        name=conf.get("mapreduce.job.name", "streamjob"),
        inputs=[os.path.join(cwd, i) for i in inputs],
        output=output, mapper=mapper, reducer=reducer, combiner=combiner, num_reduces=reduces,
        files=files, cmdenv=cmdenv, conf=conf, lazy_output=opts.lazy, cwd=cwd)
    opts.spec = spec
    return opts


def _is_aggregate(command: str) -> bool:
    return command.strip().lower() == "aggregate"


def _fieldsel_map_key(conf: dict[str, str]) -> None:
    """FieldSelectionMapReduce hands Hadoop its key as an object; hstream passes a line. When the
    key's fields are joined by the map output separator itself (TAB by default), the line's key
    is that many fields, so the shuffle sees the key Hadoop would."""
    if "stream.num.map.output.key.fields" in conf:
        return
    sep = conf.get("mapreduce.fieldsel.data.field.separator", "\t")
    map_sep = conf.get("stream.map.output.field.separator", "\t")
    if commands.unescape(sep) != commands.unescape(map_sep):
        return
    from hstream.hadoop.fieldsel import FieldSpecError, parse_spec
    try:
        keys, _ = parse_spec(conf.get("mapreduce.fieldsel.map.output.key.value.fields.spec", "0-:"))
    except FieldSpecError as e:
        raise ConfigError(f"mapreduce.fieldsel.map.output.key.value.fields.spec: {e}") from None
    if len(keys.fields) > 1:
        conf["stream.num.map.output.key.fields"] = str(len(keys.fields))


def _classes(single: dict[str, str], conf: dict[str, str]) -> None:
    """-partitioner, -inputformat, -outputformat and the comparator class: Hadoop's names only."""
    part = single.get("partitioner", conf.get("mapreduce.job.partitioner.class"))
    if part is not None:
        if part not in PARTITIONERS:
            raise ConfigError(f"unsupported partitioner: {part}")
        if PARTITIONERS[part]:
            conf["hstream.partitioner"] = PARTITIONERS[part]
    fields = conf.pop("num.key.fields.for.partition", None)
    if fields is not None:
        n = _int(fields, "num.key.fields.for.partition", minimum=1)
        conf.setdefault("mapreduce.partition.keypartitioner.options", f"-k1,{n}")
    fmt = single.get("inputformat")
    if fmt is not None:
        if fmt not in INPUT_FORMATS:
            raise ConfigError(f"unsupported input format: {fmt}")
        conf["hstream.inputformat"] = INPUT_FORMATS[fmt]
    out = single.get("outputformat")
    if out is not None and out not in OUTPUT_FORMATS:
        raise ConfigError(f"unsupported output format: {out}")
    comparator = conf.get("mapreduce.job.output.key.comparator.class")
    if comparator is not None and comparator not in COMPARATORS:
        raise ConfigError(f"unsupported comparator class: {comparator}")
    for key in ("mapreduce.map.output.key.class", "mapreduce.map.output.value.class",
                "mapreduce.job.output.key.class", "mapreduce.job.output.value.class"):
        if key in conf and conf[key] not in TEXT_CLASSES:
            raise ConfigError(f"unsupported {key}: {conf[key]} (streaming data is Text)")
    _check_keyfield_options(conf)
    codec = conf.get("mapreduce.output.fileoutputformat.compress.codec")
    if codec is not None and codec not in CODECS:
        raise ConfigError(f"unsupported compression codec: {codec}")


def _check_keyfield_options(conf: dict[str, str]) -> None:
    for key in ("mapreduce.partition.keypartitioner.options",
                "mapreduce.partition.keycomparator.options"):
        if key in conf:
            try:
                keyfields.comparator_args(conf[key])
            except keyfields.KeyFieldError as e:
                raise ConfigError(f"{key}: {e}") from None


def _int(text: str, what: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{what} must be a whole number: {text}") from None
    if value < minimum:
        raise ConfigError(f"{what} must be at least {minimum}: {text}")
    return value


_INTS = {  # property: smallest value
    "mapreduce.job.maps": 0, "mapreduce.map.maxattempts": 1, "mapreduce.reduce.maxattempts": 1,
    "stream.num.map.output.key.fields": 1, "stream.num.reduce.output.key.fields": 1,
    "mapreduce.task.timeout": 0, "mapreduce.input.lineinputformat.linespermap": 1,
    "mapreduce.job.maxtaskfailures.per.tracker": 1, "hstream.sort.buffer.bytes": 1,
    "stream.jobconf.truncate.limit": -1,
}
_FLOATS = ("hstream.speculative.slowness", "hstream.speculative.lag")
_SEPARATORS = (
    "stream.map.output.field.separator", "stream.reduce.output.field.separator",
    "stream.map.input.field.separator", "stream.reduce.input.field.separator",
    "mapreduce.map.output.key.field.separator", "mapreduce.output.textoutputformat.separator",
    "mapreduce.input.keyvaluelinerecordreader.key.value.separator",
)
_BOOLEANS = (
    "stream.non.zero.exit.is.failure", "stream.map.input.ignoreKey",
    "mapreduce.output.fileoutputformat.compress", "mapreduce.map.speculative",
    "mapreduce.reduce.speculative", "mapreduce.job.speculative",
    "mapreduce.fileoutputcommitter.marksuccessfuljobs",
)


def _check_ints(conf: dict[str, str]) -> None:
    """Values the daemons parse are checked here, where a bad one is the user's error."""
    for key, minimum in _INTS.items():
        if key in conf:
            _int(conf[key], key, minimum=minimum)
    for key in _FLOATS:
        if key in conf:
            try:
                float(conf[key])
            except ValueError:
                raise ConfigError(f"{key} must be a number: {conf[key]}") from None
    for key in _SEPARATORS:
        if key in conf:
            try:
                conf[key].encode("utf-8").decode("unicode_escape").encode("latin-1")
            except (UnicodeDecodeError, UnicodeEncodeError):
                raise ConfigError(f"{key} has a bad escape: {conf[key]} "
                                  "(write a backslash as \\\\)") from None
    for key in _BOOLEANS:
        if key in conf and conf[key].lower() not in ("true", "false"):
            raise ConfigError(f"{key} must be true or false: {conf[key]}")


#: Archive kinds -archives unpacks, by file name ending (Hadoop's: zip and jar, tar, tgz, tar.gz).
ARCHIVES = (".zip", ".jar", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2")


def _ship(value: str, archive: bool, cwd: str) -> list[ShipFile]:
    shipped = []
    for item in (v for v in value.split(",") if v):
        path, _, alias = item.partition("#")
        if path.startswith("file://"):
            path = path[len("file://"):]
        elif "://" in path:
            raise ConfigError(f"only local files can be shipped: {path}")
        full = os.path.abspath(os.path.join(cwd, path))
        if not os.path.exists(full):
            raise HstreamError(f"file to ship does not exist: {path}", 2)
        if archive and not full.lower().endswith(ARCHIVES):
            raise ConfigError(f"unsupported archive type (want {', '.join(ARCHIVES)}): {path}")
        shipped.append(ShipFile(full, alias or os.path.basename(path), archive))
    return shipped


def _localize(cmd: str, role: str, files: list[ShipFile], cwd: str) -> str:
    """Check the command's program before the job starts; ship it if it is a local file."""
    argv = commands.split_command(cmd)
    if not argv:
        raise ConfigError(f"{role} command is empty")
    if commands.builtin_argv(argv, role) is not None:
        return cmd
    program = argv[0]
    shipped = {f.name for f in files}
    local = os.path.join(cwd, program)
    if os.sep in program or (os.path.isfile(local) and program not in shipped):
        if not os.path.isfile(local):
            raise ConfigError(f"{role} not found: {program}")
        if not os.access(local, os.X_OK):
            raise ConfigError(f"{role} is not executable: {program}")
        name = os.path.basename(program)
        if name not in shipped:
            files.append(ShipFile(os.path.abspath(local), name))
        return " ".join([shlex.quote(name), *(_requote(a) for a in argv[1:])])
    if program in shipped:
        return cmd
    if shutil.which(program) is None:
        raise ConfigError(f"{role} not found: {program}")
    return cmd


def _requote(arg: str) -> str:
    return f"'{arg}'" if (" " in arg or not arg) and "'" not in arg else arg


def check_output(output: str) -> None:
    if os.path.lexists(output):
        raise OutputExists(f"output directory already exists: {output}")


def check_inputs(inputs: list[str]) -> list[str]:
    return list_inputs(inputs)
