"""Hadoop Streaming's command line: from `hadoop jar hadoop-streaming.jar …` words to a JobSpec.

Both spellings are accepted (`-mapper` and `--mapper`), generic options too (`-D k=v`, `-Dk=v`,
`-files`, `-archives`, `-conf`, `-fs`, `-jt`), and old property names map to the new ones.
Properties follow `properties.py`: implemented ones take effect, Hadoop's cluster-only ones are
accepted and named in a notice (`Options.ignored`), unknown names are errors. Exit statuses are
StreamJob's: 1 for a command line it cannot parse (`UsageError`), 3 for a configuration hstream
cannot honour, 4 output exists, 5 input missing.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from xml.etree import ElementTree

from hstream.errors import ConfigError, HstreamError, OutputExists, UsageError
from hstream.hadoop import command as commands
from hstream.hadoop import keyfields, properties
from hstream.hadoop.codecs import CODECS
from hstream.hadoop.inputpaths import list_inputs, split_paths
from hstream.hadoop.properties import Use
from hstream.job import JobSpec, ShipFile, plain_name

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
        "CombineTextInputFormat": ("", "org.apache.hadoop.mapred.lib.",
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
    "workers", "config", "conf", "cacheFile", "cacheArchive", "io", "inputreader",
    "fs", "jt", "dfs", "additionalconfspec", "libjars", "tokenCacheFile", "mapdebug",
    "reducedebug",
}
#: Options that take every following word that is not an option (commons-cli's unlimited
#: arguments in StreamJob): `-file mapper.py reducer.py`, as a shell glob expands `-file *.py`.
_MULTI_OPTS = {"input", "file", "cacheFile", "cacheArchive"}
_FLAG_OPTS = {"lazyOutput", "verbose", "background", "info", "help", "debug"}
#: Options that only mean something to a Hadoop cluster: accepted, named in the notice.
_CLUSTER_OPTS = {"libjars", "tokenCacheFile", "mapdebug", "reducedebug", "debug"}
#: `-input -` reads standard input, `-output -` writes standard output.
STDIO = "-"
#: A path with a scheme (`hdfs://…`, `file:/…`) is left as it is: `--runner spark` reads it,
#: hstream's own runner makes `file:` URIs paths and refuses the rest (`require_local`).
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


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
    #: Options and properties accepted without effect, as given (for the notice line).
    ignored: list[str] = field(default_factory=list)


def _words(argv: list[str]) -> list[tuple[str, str | None]]:
    """(option, value) pairs; values are None for flags. UsageError (exit 1, as StreamJob)
    for anything that is not an option or is one without its value."""
    if not argv:
        raise UsageError("no arguments (-help lists the options)")
    if argv[0].lower() == "streamjob":  # HadoopStreaming.main's explicit sub-command
        argv = argv[1:]
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        name, values, i = _option(argv, i)
        pairs += [(name, v) for v in values]
    return pairs


def _option(argv: list[str], i: int) -> tuple[str, list[str | None], int]:
    """The option at argv[i]: its name, its values, and where the next option starts."""
    word = argv[i]
    if not word.startswith("-") or word in ("-", "--"):
        raise UsageError(f"unexpected argument: {word}")
    name = word.lstrip("-")
    if name.startswith("D") and len(name) > 1 and "=" in name:
        return "D", [name[1:]], i + 1
    if "=" in name and name.split("=", 1)[0] in _VALUE_OPTS and word.startswith("--"):
        name, value = name.split("=", 1)
        return name, [value], i + 1
    if name in _FLAG_OPTS:
        return name, [None], i + 1
    if name not in _VALUE_OPTS:
        raise UsageError(f"unknown option: {word}")
    if i + 1 >= len(argv):
        raise UsageError(f"option {word} needs a value")
    values: list[str | None] = [argv[i + 1]]
    i += 2
    while name in _MULTI_OPTS and i < len(argv) and not argv[i].startswith("-"):
        values.append(argv[i])
        i += 1
    return name, values, i


@dataclass
class _Conf:
    """Properties as they arrive (-conf files, then -D), checked against the policy."""

    values: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, None] = field(default_factory=dict)

    def set(self, given: str, value: str) -> None:
        prop = properties.classify(given, value)
        self.values[prop.name] = value
        if prop.use is Use.IGNORED:
            self.ignored[given] = None

    def option(self, name: str, value: str | None) -> None:
        """A generic option that only a cluster uses (-fs, -jt, -libjars …)."""
        value = (value or "").strip()
        if name in ("fs", "dfs"):
            self.set("fs.defaultFS", value)
            self.ignored.pop("fs.defaultFS", None)
            self._note(f"-{name}", value not in properties.SILENT_VALUES["fs.defaultFS"])
        elif name == "jt":
            if value != "local":
                self.values["yarn.resourcemanager.address"] = value
            self._note("-jt", value != "local")
        else:
            self._note(f"-{name}", True)

    def _note(self, option: str, ignored: bool) -> None:
        """The last of a repeated option counts: it is in the notice, or no longer."""
        self.ignored.pop(option, None)
        if ignored:
            self.ignored[option] = None


def _property(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"property must be KEY=VALUE: {text}")
    return key.strip(), value


def read_conf_file(path: str) -> list[tuple[str, str]]:
    """A Hadoop configuration file (`-conf`): <configuration><property><name/><value/>…"""
    try:
        root = ElementTree.parse(path).getroot()
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    except ElementTree.ParseError as e:
        raise ConfigError(f"configuration file {path} is not valid XML: {e}") from None
    found: list[tuple[str, str]] = []
    for prop in root.iter("property"):
        name, value = prop.findtext("name"), prop.findtext("value")
        if not name:
            raise ConfigError(f"configuration file {path}: a property has no name")
        found.append((name.strip(), (value or "").strip()))
    return found


def parse(argv: list[str], cwd: str | None = None) -> Options:
    """Parse a streaming command line; ConfigError names what is wrong.

    Hadoop wants generic options (-D, -files, -archives, -conf) before the streaming
    ones; hstream takes them in any order. -conf files are read first, -D wins over them."""
    cwd = cwd or os.getcwd()
    inputs: list[str] = []
    files: list[ShipFile] = []
    cmdenv: dict[str, str] = {}
    from_files: list[tuple[str, str]] = []
    from_args: list[tuple[str, str]] = []
    single: dict[str, str] = {}
    conf = _Conf()
    opts = Options(spec=JobSpec(name="", inputs=[], output="", mapper="cat", reducer="cat"))
    for name, value in _words(argv):
        if name in _CLUSTER_OPTS or name in ("fs", "dfs", "jt"):
            conf.option(name, value)
            continue
        if name in _FLAG_OPTS:
            setattr(opts, {"lazyOutput": "lazy", "info": "help"}.get(name, name), True)
            continue
        assert value is not None
        if name == "input":
            inputs += split_paths(value)
        elif name in ("file", "files", "archives", "cacheFile", "cacheArchive"):
            files += _ship(value, name in ("archives", "cacheArchive"), cwd)
        elif name == "cmdenv":
            k, sep, v = value.partition("=")
            if not sep or not k:
                raise ConfigError(f"-cmdenv must be NAME=VALUE: {value}")
            cmdenv[k] = v
        elif name in ("D", "jobconf"):
            from_args.append(_property(value))
        elif name in ("conf", "additionalconfspec"):
            from_files += read_conf_file(os.path.join(cwd, value))
        elif name == "io":
            if value != "text":
                raise ConfigError(f"unsupported -io: {value} (hstream streams text only)")
        elif name == "inputreader":
            from_args += input_reader(value)
        else:
            single[name] = value
    if opts.help:
        return opts
    for key, value in from_files + from_args:
        conf.set(key, value)
    opts.ignored = list(conf.ignored)
    return _build(opts, single, inputs, files, cmdenv, conf.values, cwd)


#: -inputreader classes, by the names StreamJob resolves (short names are in its package).
READERS = {"StreamXmlRecordReader", "org.apache.hadoop.streaming.StreamXmlRecordReader"}


def input_reader(spec: str) -> list[tuple[str, str]]:
    """`-inputreader "StreamXmlRecordReader,begin=<page>,end=</page>"` as the properties
    StreamJob sets from it: stream.recordreader.class and one stream.recordreader.NAME each."""
    reader, *settings = spec.split(",")
    if reader.strip() not in READERS:
        raise ConfigError(f"unsupported -inputreader: {reader} (hstream has StreamXmlRecordReader)")
    found = [("stream.recordreader.class", "org.apache.hadoop.streaming.StreamXmlRecordReader")]
    for item in settings:
        k, _, v = item.partition("=")
        found.append((f"stream.recordreader.{k}", v))
    return found


#: URI schemes of file systems other than the local one: hstream reads and writes local paths.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")


SPARK_HINT = ", or run the job on Spark (--runner spark)"


def local_path(path: str, what: str, hint: str = SPARK_HINT) -> str:
    """A local path from a Hadoop path: `file:///x` and `file:/x` are `/x`; any other scheme
    (hdfs://, s3a://, gs:// …) is an error that says what to do instead."""
    m = _SCHEME.match(path)
    if m is None or len(m.group(1)) == 1:  # no scheme (or a Windows drive letter)
        return path
    if m.group(1).lower() == "file":
        rest = path[m.end():]
        return rest if rest.startswith("/") else "/" + rest
    raise ConfigError(f"{what} {path}: hstream's own runner reads and writes local paths; copy "
                      "the data to a local or shared directory (e.g. hdfs dfs -get) and name "
                      f"that{hint}")


def require_local(spec: JobSpec) -> None:
    """For hstream's own runner: `file:` URIs become paths; another scheme is an error."""
    spec.inputs = [local_path(i, "-input") for i in spec.inputs]
    spec.output = local_path(spec.output, "-output")


def _build(opts: Options, single: dict[str, str], inputs: list[str], files: list[ShipFile],
           cmdenv: dict[str, str], conf: dict[str, str], cwd: str) -> Options:
    if not inputs:
        raise UsageError("missing required option: -input")
    if "output" not in single:
        raise UsageError("missing required option: -output")
    if "workers" in single:
        opts.workers = _int(single["workers"], "--workers", minimum=1)
    opts.config = single.get("config")
    _classes(single, conf)
    mapper = single.get("mapper", "cat")
    reducer: str | None = single.get("reducer", "cat")
    reduces = _int(conf.get("mapreduce.job.reduces", "1"), "mapreduce.job.reduces")
    if "numReduceTasks" in single:  # StreamJob's Integer.parseInt: a usage error (exit 1)
        try:
            reduces = _int(single["numReduceTasks"], "-numReduceTasks")
        except ConfigError as e:
            raise UsageError(str(e)) from None
    if reducer == "NONE" or reduces == 0:
        reducer, reduces = None, 0
    _check_text_io(conf, reducer is None)
    check_values(conf)
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
    output = _path(single["output"], cwd)
    spec = JobSpec(
        name=conf.get("mapreduce.job.name", "streamjob"),
        inputs=[i if i == STDIO or _URI.match(i) else os.path.join(cwd, i) for i in inputs],
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
    _check_record_reader(conf)
    codec = conf.get("mapreduce.output.fileoutputformat.compress.codec")
    if codec is not None and codec not in CODECS:
        raise ConfigError(f"unsupported compression codec: {codec}")


def _check_record_reader(conf: dict[str, str]) -> None:
    """StreamXmlRecordReader needs its begin and end marks; with slowmatch they are regular
    expressions (Hadoop compiles them too)."""
    if not conf.get("stream.recordreader.class"):
        return
    for mark in ("begin", "end"):
        value = conf.get(f"stream.recordreader.{mark}", "")
        if not value:
            raise ConfigError(f"StreamXmlRecordReader needs stream.recordreader.{mark} "
                              f"(-inputreader \"StreamXmlRecordReader,begin=<tag>,end=</tag>\")")
        if conf.get("stream.recordreader.slowmatch", "false").lower() == "true":
            try:
                re.compile(value.encode())
            except re.error as e:
                raise ConfigError(f"stream.recordreader.{mark}: bad pattern {value}: {e}") from None


#: The stream.* I/O identifiers: text everywhere, keyonlytext where the data is still text.
_IO = ("stream.map.input", "stream.map.output", "stream.reduce.input", "stream.reduce.output")


def _check_text_io(conf: dict[str, str], map_only: bool) -> None:
    """keyonlytext where its meaning is text: the mapper sees keys, a map-only or reduce
    output is written as keys (no separator), the reducer sees keys. rawbytes and typedbytes
    are not text."""
    for key in _IO:
        value = conf.get(key, "text")
        if value not in ("text", "keyonlytext"):
            raise ConfigError(f"unsupported {key}: {value} (hstream streams text: text or "
                              "keyonlytext)")
    if conf.get("stream.map.input") == "keyonlytext" and _drops_map_key(conf):
        raise ConfigError("stream.map.input=keyonlytext with TextInputFormat gives the mapper "
                          "nothing (its key is dropped); set stream.map.input.ignoreKey=false "
                          "for byte offsets")
    if (conf.get("stream.map.output") == "keyonlytext" and not map_only
            and conf.get("stream.reduce.input") != "keyonlytext"):
        raise ConfigError("stream.map.output=keyonlytext needs stream.reduce.input=keyonlytext "
                          "(Hadoop would hand the reducer key<TAB>(null))")


def _drops_map_key(conf: dict[str, str]) -> bool:
    text_format = conf.get("hstream.inputformat", "TextInputFormat") == "TextInputFormat"
    default = "true" if text_format and not conf.get("stream.recordreader.class") else "false"
    return conf.get("stream.map.input.ignoreKey", default).lower() == "true"


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
    "mapreduce.input.linerecordreader.line.maxlength": 1,
    "hstream.task.output.line.maxlength": 1, "hstream.task.exit.grace.ms": 0,
    "mapreduce.task.io.sort.mb": 1,
    "mapreduce.map.memory.mb": -1, "mapreduce.reduce.memory.mb": -1,
    "mapred.child.ulimit": 0, "mapred.map.child.ulimit": 0, "mapred.reduce.child.ulimit": 0,
    "mapreduce.input.fileinputformat.split.minsize": 0,
    "mapreduce.input.fileinputformat.split.maxsize": 0, "fs.local.block.size": 1,
    "stream.recordreader.maxrec": 1, "stream.recordreader.lookahead": 1,
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
    "mapreduce.fileoutputcommitter.marksuccessfuljobs", "mapred.textoutputformat.ignoreseparator",
    "mapreduce.map.output.compress", "mapreduce.task.files.preserve.failedtasks",
    "stream.recordreader.slowmatch",
    "mapreduce.input.fileinputformat.input.dir.recursive",
)


def check_values(conf: dict[str, str]) -> None:
    """The property values the daemons parse; the manager checks a submitted job's again, since
    any holder of the secret may send one without this module's help."""
    _check_ints(conf)
    _check_keyfield_options(conf)
    if "mapreduce.job.priority" in conf:
        try:
            properties.job_priority(conf["mapreduce.job.priority"])
        except ValueError:
            raise ConfigError(f"mapreduce.job.priority must be VERY_HIGH, HIGH, NORMAL, LOW, "
                              f"VERY_LOW or a number: {conf['mapreduce.job.priority']}") from None


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
        path = local_path(path, "file to ship", "")
        full = os.path.abspath(os.path.join(cwd, path))
        if not os.path.exists(full):
            raise UsageError(f"file to ship does not exist: {path}")
        if archive and not full.lower().endswith(ARCHIVES):
            raise ConfigError(f"unsupported archive type (want {', '.join(ARCHIVES)}): {path}")
        name = alias or os.path.basename(path)
        if not plain_name(name):  # it becomes a path in the task's directory
            raise ConfigError(f"the name a file is shipped under must be a plain name "
                              f"(no '/', '..' or NUL): {name!r} in {item!r}")
        shipped.append(ShipFile(full, name, archive))
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
        # Not executable is fine: like Hadoop, the task makes its own copy executable.
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


def _path(path: str, cwd: str) -> str:
    """An absolute path, except STDIO: the client swaps that for a real path (`hstream.cli`)."""
    if path == STDIO or _URI.match(path):  # hdfs://, s3a://: for --runner spark
        return path
    return os.path.abspath(os.path.join(cwd, path))


def check_output(output: str) -> None:
    if output != STDIO and os.path.lexists(output):
        raise OutputExists(f"output directory already exists: {output}")


def make_output_parent(output: str) -> None:
    """Create the output's missing parent directories, as Hadoop does."""
    if output == STDIO:
        return
    try:
        os.makedirs(os.path.dirname(output), exist_ok=True)
    except OSError as e:
        raise HstreamError(f"cannot create the output's parent directory: {e}") from None


def check_inputs(inputs: list[str]) -> list[str]:
    return list_inputs([i for i in inputs if i != STDIO])
