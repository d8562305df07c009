"""Unit tests of the pure parts of Hadoop compatibility: key-field options, the aggregate
package, field selection specs, command splitting, command-line parsing, NLine splits."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest

from hstream.errors import ConfigError, HstreamError, InputNotFound, UsageError
from hstream.hadoop import aggregate as agg
from hstream.hadoop import command, fieldsel, keyfields, properties, streaming
from hstream.hadoop.keyfields import KeySpec
from hstream.hadoop.properties import Use
from hstream.job import Split
from hstream.task import knobs, mapcodec, records
from hstream.task.output import OutputWriter
from hstream.task.splits import combine_splits, compute_splits, nline_splits, read_split

# -- key fields --------------------------------------------------------------------


@pytest.mark.parametrize("options,key,want", [
    ("-k1,2", b"11.12.1.2", b"11.12"),
    ("-k2,2", b"11.12.1.2", b"12"),
    ("-k3", b"11.12.1.2", b"1.2"),
    ("-k1.2,1.2", b"11.12.1.2", b"1"),
    ("-k2.1,3.1", b"ab.cd.ef", b"cd.e"),
    ("-k 1,1 -k3,3", b"a.b.c", b"a.c"),
    ("-k5,5", b"a.b", b""),
    ("", b"a.b", b"a.b"),
])
def test_partition_key_function(options: str, key: bytes, want: bytes) -> None:
    assert keyfields.partition_key_function(options, b".")(key) == want


def test_comparator_args_accepts_gnu_subset_and_refuses_the_rest() -> None:
    assert keyfields.comparator_args("-k2,2nr") == ["-k2,2nr"]
    assert keyfields.comparator_args("-k 1,1 -k2,2n -r") == ["-k1,1", "-k2,2n", "-r"]
    for bad in ("-k2,2x", "-t.", "--key=1", "-f"):
        with pytest.raises(keyfields.KeyFieldError):
            keyfields.comparator_args(bad)


def test_transform_input_offsets_and_keyvalue_records(tmp_path: Path) -> None:
    f = tmp_path / "in.txt"
    f.write_bytes(b"ab\ncd\nef\n")
    split = Split(str(f), 2, 7)  # owns the lines starting after offset 2: cd, ef
    chunks = read_split(split)
    got = b"".join(records.transform_input(chunks, {"stream.map.input.ignoreKey": "false"}, split))
    assert got == b"3\tcd\n6\tef\n"
    f.write_bytes(b"k1v\nnone\n")
    conf = {"hstream.inputformat": "KeyValueTextInputFormat",
            "stream.map.input.field.separator": ":",
            "mapreduce.input.keyvaluelinerecordreader.key.value.separator": "1x"}
    whole = Split(str(f), 0, f.stat().st_size)
    assert b"".join(records.transform_input(read_split(whole), conf, whole)) == b"k:v\nnone:\n"
    conf["stream.map.input.ignoreKey"] = "true"
    assert b"".join(records.transform_input(read_split(whole), conf, whole)) == b"v\n\n"
    f.write_bytes(b"a\tb\tc\n\n\\1\n")
    whole = Split(str(f), 0, f.stat().st_size)
    conf = {"hstream.inputformat": "KeyValueTextInputFormat",
            "stream.map.input.field.separator": "\\"}
    assert b"".join(records.transform_input(read_split(whole), conf, whole)) == (
        b"a\\b\tc\n\\\n\\1\\\n")
    assert records.needs_record_transform(conf)
    assert not records.needs_record_transform({})
    assert records.needs_record_transform({"hstream.inputformat": "NLineInputFormat"})


def test_reduce_input_rejoiner() -> None:
    rejoin = keyfields.reduce_input_rejoiner(
        {"stream.reduce.input.field.separator": ":"}, KeySpec(), "cat")
    assert rejoin is not None and rejoin(b"k\tv\tw\nsolo\n") == b"k:v\tw\nsolo:\n"
    assert keyfields.reduce_input_rejoiner({"stream.reduce.input.field.separator": "\\t"},
                                           KeySpec(), "cat") is None
    assert keyfields.reduce_input_rejoiner({"stream.reduce.input.field.separator": ":"}, KeySpec(),
                                           "aggregate") is None
    # the defaults differ too: map output split on '.', reduce input joined with TAB
    dots = {"stream.map.output.field.separator": ".", "stream.num.map.output.key.fields": "2"}
    rejoin = keyfields.reduce_input_rejoiner(dots, keyfields.map_key(dots), "cat")
    assert rejoin is not None and rejoin(b"roses.are.red\nsolo\n") == b"roses.are\tred\nsolo\t\n"
    keys = keyfields.reduce_input_rejoiner({"stream.reduce.input": "keyonlytext"}, KeySpec(), "cat")
    assert keys is not None and keys(b"k\tv\nsolo\n") == b"k\nsolo\n"


# -- aggregate ---------------------------------------------------------------------


@pytest.mark.parametrize("kind,values,report", [
    ("LongValueSum", [b"1", b"2", b"-5"], b"-2"),
    ("longvaluesum", [b"9223372036854775807", b"1"], b"-9223372036854775808"),  # Java wraps
    ("LongValueMax", [b"3", b"10", b"-1"], b"10"),
    ("LongValueMin", [b"3", b"10", b"-1"], b"-1"),
    ("DoubleValueSum", [b"1", b"2"], b"3.0"),
    ("DoubleValueSum", [b"1e10"], b"1.0E10"),
    ("DoubleValueSum", [b"0.0001"], b"1.0E-4"),
    ("DoubleValueSum", [b"0.001", b"1234567"], b"1234567.001"),
    ("StringValueMax", [b"b", b"abc", b"B"], b"b"),
    ("StringValueMin", [b"b", b"abc", b"B"], b"B"),
    ("UniqValueCount", [b"x", b"y", b"x"], b"2"),
    ("ValueHistogram", [b"a", b"b\t4", b"a", b"c"],
     b"3\t1\t2\t4\t2.3333333333333335\t1.247219128924647"),
])
def test_aggregators_report_like_java(kind: str, values: list[bytes], report: bytes) -> None:
    a = agg.make_aggregator(kind.encode())
    for v in values:
        a.add(v)
    assert a.report() == report


def test_aggregate_combiner_output_feeds_the_reducer() -> None:
    key, out = agg.aggregate(b"ValueHistogram:h", [b"a", b"b", b"a"], combine=True)
    assert key == b"ValueHistogram:h" and out == [b"a\t2", b"b\t1"]
    key, out = agg.aggregate(b"ValueHistogram:h", out + [b"a"], combine=False)
    assert key == b"h" and out == [b"2\t1\t3\t3\t2.0\t1.0"]
    _, out = agg.aggregate(b"UniqValueCount:u", [b"y", b"x", b"y"], combine=True)
    assert out == [b"x", b"y"]


def test_aggregate_rejects_what_java_rejects() -> None:
    for key, value in ((b"nokind", b"1"), (b"Bogus:x", b"1"), (b"LongValueSum:x", b"1.5"),
                       (b"LongValueSum:x", b" 1")):
        with pytest.raises(agg.AggregateError):
            agg.aggregate(key, [value], combine=False)


def test_aggregate_run_groups_sorted_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("mapreduce_output_textoutputformat_separator", ",")
    out = io.BytesIO()
    agg.run("reduce", io.BytesIO(b"LongValueSum:a\t1\nLongValueSum:a\t2\nLongValueMax:b\t5\n"), out)
    assert out.getvalue() == b"a,3\nb,5\n"


@pytest.mark.parametrize("x,text", [(0.0, "0.0"), (-0.0, "-0.0"), (1.5, "1.5"), (1e7, "1.0E7"),
                                    (9999999.0, "9999999.0"), (123456789.0, "1.23456789E8"),
                                    (0.001, "0.001"), (-2.5e-5, "-2.5E-5"), (float("nan"), "NaN")])
def test_java_double(x: float, text: str) -> None:
    assert agg.java_double(x) == text


# -- field selection ---------------------------------------------------------------


def test_parse_spec() -> None:
    keys, values = fieldsel.parse_spec("4,3,0,1:6,5,1-3,7-")
    assert keys.fields == [4, 3, 0, 1] and values.fields == [6, 5, 1, 2, 3] and values.all_from == 7
    keys, values = fieldsel.parse_spec(":4,3,2,1,0,0-")
    assert keys.fields == [] and values.all_from == 0
    keys, values = fieldsel.parse_spec("0-:")
    assert keys.fields == [] and keys.all_from == -1 and values.fields == []
    with pytest.raises(fieldsel.FieldSpecError):
        fieldsel.parse_spec("a:1")


@pytest.mark.parametrize("text,sep,want", [
    ("a-b-c", "-", ["a", "b", "c"]), ("a--b--", "-", ["a", "", "b"]), ("---", "-", []),
    ("", "-", [""]), ("abc", "-", ["abc"]), ("a.b", ".", []), ("a1b22c", "[0-9]+", ["a", "b", "c"]),
    ("-a", "-", ["", "a"]),
])
def test_java_split(text: str, sep: str, want: list[str]) -> None:
    assert fieldsel.java_split(text, sep) == want


def test_extract_e4_line() -> None:
    line = "0000-0001-0002-0003-0004-0005-0006"
    keys, values = fieldsel.parse_spec("6,5,1-3:0-")
    key, value = fieldsel.extract(line, "-", keys, values, True)
    assert key == "0006-0005-0001-0002-0003" and value == line
    rkeys, rvalues = fieldsel.parse_spec(":4,3,2,1,0,0-")
    assert fieldsel.extract(key + "-" + value, "-", rkeys, rvalues, False) == (
        None, "0003-0002-0001-0005-0006-0006-0005-0001-0002-0003"
              "-0000-0001-0002-0003-0004-0005-0006")
    # fields beyond the line are empty; the map with no key fields moves the value into the key
    assert fieldsel.extract("a-b", "-", *fieldsel.parse_spec("5,0:"), True) == ("-a", None)
    assert fieldsel.extract("a-b", "-", *fieldsel.parse_spec(":1"), True) == ("b", None)


# -- commands and the command line -------------------------------------------------


@pytest.mark.parametrize("text,argv", [
    ("cut -f2", ["cut", "-f2"]), ("sh -c 'cat; exit 1'", ["sh", "-c", "cat; exit 1"]),
    ('tr "a b" x', ["tr", "a b", "x"]), ("a  ''  b", ["a", "", "b"]), ("x|y", ["x|y"]),
])
def test_split_command(text: str, argv: list[str]) -> None:
    assert command.split_command(text) == argv


def test_builtins() -> None:
    assert command.is_java_builtin("aggregate")
    assert command.is_java_builtin("org.apache.hadoop.mapred.lib.FieldSelectionMapReduce")
    assert not command.is_java_builtin("org.apache.hadoop.mapred.lib.IdentityReducer")
    assert not command.is_java_builtin("cat")
    assert command.unescape("\\t") == b"\t" and command.unescape("é") == "é".encode()


def test_truncated_environment_keeps_the_builtins_settings_whole() -> None:
    conf = {"stream.map.output.field.separator": ".", "mapreduce.job.name": "long name",
            "mapreduce.fieldsel.map.output.key.value.fields.spec": "1,0:2-"}
    env = command.task_environment(conf, {}, {}, truncate=0)
    assert env["mapreduce_job_name"] == ""
    assert env["stream_map_output_field_separator"] == "."
    assert command.conf_from_env(
        "mapreduce.fieldsel.map.output.key.value.fields.spec", "", env) == "1,0:2-"


def _parse(tmp_path: Path, *args: str) -> streaming.Options:
    (tmp_path / "in.txt").write_bytes(b"x\n")
    return streaming.parse(["-input", "in.txt", "-output", "out", *args], cwd=str(tmp_path))


def test_parse_maps_old_names_and_classes(tmp_path: Path) -> None:
    spec = _parse(tmp_path, "-jobconf", "mapred.reduce.tasks=3", "-D", "mapred.job.name=n",
                  "-Dmap.output.key.field.separator=.", "-D", "num.key.fields.for.partition=2",
                  "-partitioner", "org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner",
                  "-inputformat", "org.apache.hadoop.mapred.lib.NLineInputFormat").spec
    assert spec.num_reduces == 3 and spec.name == "n"
    assert spec.conf["mapreduce.map.output.key.field.separator"] == "."
    assert spec.conf["mapreduce.partition.keypartitioner.options"] == "-k1,2"
    assert spec.conf["hstream.partitioner"] == "KeyFieldBasedPartitioner"
    assert spec.conf["hstream.inputformat"] == "NLineInputFormat"


def test_parse_aggregate_brings_its_combiner_and_fieldsel_its_key(tmp_path: Path) -> None:
    spec = _parse(tmp_path, "-reducer", "Aggregate", "-combiner", "cat").spec
    assert spec.reducer == "aggregate" and spec.combiner == "aggregate"
    spec = _parse(tmp_path, "-mapper", "org.apache.hadoop.mapred.lib.FieldSelectionMapReduce",
                  "-D", "mapreduce.fieldsel.map.output.key.value.fields.spec=2,0:1").spec
    assert spec.conf["stream.num.map.output.key.fields"] == "2"
    spec = _parse(tmp_path, "-mapper", "org.apache.hadoop.mapred.lib.FieldSelectionMapReduce",
                  "-D", "mapreduce.fieldsel.data.field.separator=-",
                  "-D", "mapreduce.fieldsel.map.output.key.value.fields.spec=2,0:1").spec
    assert "stream.num.map.output.key.fields" not in spec.conf


def test_parse_errors_name_the_culprit(tmp_path: Path) -> None:
    for args, name in ((["-bogus", "1"], "-bogus"), (["-D", "no.such.prop=1"], "no.such.prop"),
                       (["-mapper", "cat", "stray"], "stray"), (["-input"], "-input"),
                       (["-D", "hstream.nope=1"], "hstream.nope"), (["-D", "novalue"], "novalue"),
                       (["-archives", "in.txt"], "in.txt"), (["-io", "typedbytes"], "typedbytes"),
                       (["-D", "mapreduce.partition.keycomparator.options=-k2,2x"], "-k2,2x"),
                       (["-D", "mapred.job.reduces=0"], "mapreduce.job.reduces"),
                       (["-D", "mapred.input.format.class=com.example.Custom"], "Custom"),
                       (["-D", "mapred.job.priority=URGENT"], "URGENT"),
                       (["-D", "stream.map.output=typedbytes"], "typedbytes"),
                       (["-inputreader", "StreamXmlRecordReader,begin=<a>"],
                        "stream.recordreader.end"),
                       (["-inputreader", "com.example.Reader"], "com.example.Reader"),
                       (["-files", "s3a://bucket/map.py"], "s3a://bucket/map.py"),
                       (["-D", "hstream.speculative.lag=soon"], "hstream.speculative.lag"),
                       (["-D", "stream.map.output.field.separator=\\"],
                        "stream.map.output.field.separator"),
                       (["-D", "mapreduce.output.fileoutputformat.compress.codec=Lz4"], "Lz4"),
                       (["-D", "mapreduce.map.output.key.class=org.apache.hadoop.io.LongWritable"],
                        "LongWritable")):
        with pytest.raises(HstreamError, match=name.replace(".", r"\.")):
            _parse(tmp_path, *args)


def test_remote_uris_say_what_to_do_and_file_uris_are_paths(tmp_path: Path) -> None:
    spec = _parse(tmp_path, "-input", "file:///data/a,file:/data/b", "-output", "file:///o").spec
    streaming.require_local(spec)
    assert (spec.inputs[1:], spec.output) == (["/data/a", "/data/b"], "/o")
    for uri in ("hdfs://nn:8020/logs", "s3a://bucket/x", "gs://b/y"):
        spec = _parse(tmp_path, "-input", uri).spec
        assert spec.inputs[-1] == uri  # --runner spark reads it
        with pytest.raises(ConfigError, match=f"-input {uri}: .*copy the data.*--runner spark"):
            streaming.require_local(spec)


def test_usage_errors_exit_1_as_in_streamjob(tmp_path: Path) -> None:
    """StreamJob.run returns 1 for a command line it cannot parse; 3 stays for what hstream
    cannot honour, 5 for a missing input (Hadoop 3's InvalidInputException)."""
    (tmp_path / "in.txt").write_bytes(b"x\n")
    for args in ([], ["-bogus"], ["-input", "in.txt", "-output", "o", "-mapper", "cat", "stray"],
                 ["-input"], ["-input", "in.txt"], ["-output", "o"],
                 ["-input", "in.txt", "-output", "o", "-files", "missing.py"],
                 ["-input", "in.txt", "-output", "o", "-numReduceTasks", "two"]):
        with pytest.raises(UsageError):
            streaming.parse(args, cwd=str(tmp_path))
    assert UsageError("x").exit_code == 1 and InputNotFound("x").exit_code == 5
    assert ConfigError("x").exit_code == 3


def test_unknown_property_suggests_the_known_name_it_starts_with() -> None:
    """A known name with words pasted after it (a real command's
    `mapreduce.job.name.job.name='kuddai job'`) is suggested over a merely similar one."""
    with pytest.raises(ConfigError, match=r"\(did you mean mapreduce\.job\.name\?\)"):
        properties.classify("mapreduce.job.name.job.name", "kuddai job")
    with pytest.raises(ConfigError, match=r"\(did you mean mapreduce\.job\.reduces\?\)"):
        properties.classify("mapred.job.reduces", "0")


def test_property_policy(tmp_path: Path) -> None:
    """Implemented properties take effect, Hadoop's cluster-only ones are named in the
    notice, cluster addresses that are already true are silent, unknown names are errors."""
    opts = _parse(tmp_path, "-D", "mapreduce.map.java.opts=-Xmx2g", "-D", "mapred.job.queue.name=q",
                  "-D", "dfs.replication=2", "-D", "yarn.nodemanager.vmem-check-enabled=false",
                  "-D", "mapreduce.job.reduces=2", "-D", "fs.defaultFS=file:///",
                  "-D", "mapred.output.format.class=org.apache.hadoop.mapred.TextOutputFormat",
                  "-fs", "hdfs://nn:8020", "-jt", "local", "-libjars", "x.jar")
    assert opts.ignored == ["-fs", "-libjars", "mapreduce.map.java.opts", "mapred.job.queue.name",
                            "dfs.replication", "yarn.nodemanager.vmem-check-enabled"]
    assert opts.spec.num_reduces == 2
    assert opts.spec.conf["mapreduce.job.queuename"] == "q"  # tasks see it under its new name
    assert _parse(tmp_path, "-fs", "file:///", "-jt", "local").ignored == []
    for name, hint in (("mapred.job.reduces", "mapreduce.job.reduces"),
                       ("stream.map.output.field.seperator", "stream.map.output.field.separator"),
                       ("mapreduce.job.queue", "mapreduce.job.queuename")):
        with pytest.raises(ConfigError, match=f"unknown property: {name} \\(did you mean {hint}"):
            _parse(tmp_path, "-D", f"{name}=1")
    assert properties.classify("hstream.sort.buffer.bytes", "1").use is Use.IMPLEMENTED
    # a cluster's own classes are the cluster's business; a job's text classes are no news
    assert properties.classify("yarn.resourcemanager.scheduler.class", "x.Fair").use is Use.IGNORED
    assert properties.classify("mapreduce.job.inputformat.class",
                               "org.apache.hadoop.mapreduce.lib.input.TextInputFormat").use is (
        Use.SILENT)
    assert properties.classify("keep.failed.task.files", "true").name == (
        "mapreduce.task.files.preserve.failedtasks")


def test_task_environment_holds_hadoops_defaults_and_old_names() -> None:
    """What PipeMapRed exports: every property, defaults included and `${var}` expanded, each
    set property under its old names too, and what StreamJob sets for a text job."""
    view = properties.job_view({"mapreduce.job.reduces": "7", "hadoop.tmp.dir": "/x"})
    assert view["mapreduce.task.io.sort.factor"] == "10"
    assert view["mapred.reduce.tasks"] == "7"
    assert view["mapreduce.cluster.local.dir"] == "/x/mapred/local"
    assert view["mapreduce.map.output.key.class"] == "org.apache.hadoop.io.Text"
    assert view["mapred.output.format.class"] == "org.apache.hadoop.mapred.TextOutputFormat"
    assert view["mapreduce.jobtracker.address"] == "local"
    assert "${" not in view["yarn.resourcemanager.address"]
    env = command.task_environment(view, {}, {})
    assert len(env) > 1500 and sum(len(k) + len(v) for k, v in env.items()) < 256 << 10


def test_conf_file(tmp_path: Path) -> None:
    (tmp_path / "c.xml").write_text("<configuration><property><name>mapred.job.name</name>"
                                    "<value>fromxml</value></property></configuration>")
    assert _parse(tmp_path, "-conf", "c.xml").spec.name == "fromxml"
    assert _parse(tmp_path, "-D", "mapreduce.job.name=cli", "-conf", "c.xml").spec.name == "cli"
    (tmp_path / "bad.xml").write_text(
        "<configuration><property><name>x.y</name></property></configuration>")
    with pytest.raises(ConfigError, match="x.y"):
        _parse(tmp_path, "-conf", "bad.xml")


# -- splits and output ----------------------------------------------------------------


def test_nline_splits_give_each_map_n_lines(tmp_path: Path) -> None:
    f = tmp_path / "in.txt"
    f.write_bytes(b"one\ntwo\nthree\nfour\nfive")
    splits = nline_splits([str(f)], 2, chunk=3)
    assert [(s.start, s.length) for s in splits] == [(0, 7), (7, 11), (18, 4)]
    assert [b"".join(read_split(s)) for s in splits] == [b"one\ntwo\n", b"three\nfour\n", b"five\n"]
    assert len(nline_splits([str(f)], 1)) == 5 and len(nline_splits([str(f)], 10)) == 1


def test_output_writer_raw_and_deflate(tmp_path: Path) -> None:
    w = OutputWriter(str(tmp_path / "part"), KeySpec(), b"\t", ".deflate", lazy=False, raw=True)
    w.write(b"no tab\nk\tv\n")
    path = w.close()
    assert path is not None and path.endswith(".deflate")
    assert zlib.decompress(Path(path).read_bytes()) == b"no tab\nk\tv\n"
    w = OutputWriter(str(tmp_path / "p2"), KeySpec(), b"\t", "", lazy=True)
    assert w.close() is None and not (tmp_path / "p2").exists()


def test_split_counts_follow_hadoops_goal_size(tmp_path: Path) -> None:
    """FileInputFormat: goal = total / mapreduce.job.maps (2 by default), capped by the block
    size and raised to split.minsize; the last split may be 10 % over (SPLIT_SLOP)."""
    f = tmp_path / "in.txt"
    f.write_bytes(b"symlink1/cacheArchive1\nsymlink2/cacheArchive2")  # 45 bytes
    assert [(s.start, s.length) for s in compute_splits([str(f)], 2)] == [(0, 22), (22, 23)]
    assert len(compute_splits([str(f)], 5)) == 5
    assert len(compute_splits([str(f)], 2, {"mapreduce.input.fileinputformat.split.minsize":
                                            "100"})) == 1
    assert len(compute_splits([str(f)], 1, {"fs.local.block.size": "10"})) == 5
    assert len(compute_splits([str(f)], 1, {"mapreduce.input.fileinputformat.split.maxsize":
                                            "15"})) == 3


def test_combine_splits_pack_small_files_and_cut_big_ones(tmp_path: Path) -> None:
    files = []
    for i in range(50):
        files.append(tmp_path / f"f{i:02d}")
        files[-1].write_bytes(b"line\n" * 20)  # 100 bytes each
    big = tmp_path / "big"
    big.write_bytes(b"x\n" * 600)  # 1200 bytes
    conf = {"hstream.inputformat": "CombineTextInputFormat",
            "mapreduce.input.fileinputformat.split.maxsize": "1000"}
    splits = combine_splits([str(p) for p in [*files, big]], conf)
    assert [len(s.parts) for s in splits] == [10, 10, 10, 10, 10, 2]
    assert sum(s.length for s in splits) == 50 * 100 + 1200
    assert [(p.start, p.length) for p in splits[-1].parts] == [(0, 600), (600, 600)]
    assert len(combine_splits([str(p) for p in files], {})) == 1  # no maxsize: up to a block


def test_combined_split_feeds_each_file_with_its_own_offsets(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one\ntwo\n")
    b.write_bytes(b"three\n")
    [split] = combine_splits([str(a), str(b)], {})
    conf = {"hstream.inputformat": "CombineTextInputFormat"}  # ignoreKey is false, as in Hadoop
    assert b"".join(records.map_input(split, conf, read_split)) == b"0\tone\n4\ttwo\n0\tthree\n"
    conf["stream.map.input.ignoreKey"] = "true"
    assert b"".join(records.map_input(split, conf, read_split)) == b"one\ntwo\nthree\n"


XML = (b"<doc><x>CDATA[ <page>no</page> ]]></x><page>a\n1</page> <page>b</page>\n"
       b"<page>c</page><page>unfinished")


@pytest.mark.parametrize("slowmatch", ["false", "true"])
def test_xml_records_are_read_once_whatever_the_splits(tmp_path: Path, slowmatch: str) -> None:
    """StreamXmlRecordReader: a split owns the records that begin in it, reads on past its end
    to the end tag, and drops a record that never ends. slowmatch skips tags inside CDATA."""
    f = tmp_path / "in.xml"
    f.write_bytes(XML)
    conf = {"stream.recordreader.class": records.XML_READER, "stream.recordreader.begin": "<page>",
            "stream.recordreader.end": "</page>", "stream.recordreader.slowmatch": slowmatch}
    want = [b"<page>a\n1</page>", b"<page>b</page>", b"<page>c</page>"]
    if slowmatch == "false":
        want.insert(0, b"<page>no</page>")
    for size in (1, 5, 13, 40, len(XML)):
        splits = compute_splits([str(f)], len(XML) // size + 1, {"fs.local.block.size": str(size)})
        for split in splits:
            split.reader = records.reader_settings(conf)
        got = b"".join(b"".join(records.map_input(s, conf, read_split)) for s in splits)
        assert got.split(b"\t\n")[:-1] == want, size


def test_xml_reader_settings_follow_textinputwriter() -> None:
    base = {"stream.recordreader.class": records.XML_READER, "stream.recordreader.begin": "<a>",
            "stream.recordreader.end": "</a>"}
    assert records.reader_settings(base)["tail"] == "\t\n"  # key, separator, empty value
    assert records.reader_settings(base)["lookahead"] == "100000"  # 2 * maxrec
    assert records.reader_settings({**base, "stream.map.input": "keyonlytext"})["tail"] == "\n"
    ignore = records.reader_settings({**base, "stream.map.input.ignoreKey": "true"})
    assert (ignore["key"], ignore["tail"]) == ("", "\n")  # the (empty) value only
    assert records.reader_settings({}) == {}


@pytest.mark.parametrize("codec", ["org.apache.hadoop.io.compress.DefaultCodec",
                                   "org.apache.hadoop.io.compress.GzipCodec",
                                   "org.apache.hadoop.io.compress.BZip2Codec",
                                   "org.apache.hadoop.io.compress.SnappyCodec"])
def test_map_output_compression_round_trip(tmp_path: Path, codec: str) -> None:
    data = b"".join(b"word%d\t1\n" % (i % 97) for i in range(20000))
    (tmp_path / "part-00000").write_bytes(data)
    conf = {"mapreduce.map.output.compress": "true", "mapreduce.map.output.compress.codec": codec}
    size = mapcodec.compress_partitions(str(tmp_path), conf)
    assert size is not None and size == (tmp_path / "part-00000").stat().st_size < len(data) // 4
    assert mapcodec.decompress_fetched([str(tmp_path / "part-00000")], conf) == 20000
    assert (tmp_path / "part-00000").read_bytes() == data
    assert mapcodec.compress_partitions(str(tmp_path), {}) is None


def test_attempt_knobs() -> None:
    assert knobs.sort_buffer({"mapreduce.task.io.sort.mb": "10"}) == 10 << 20
    assert knobs.sort_buffer({"mapreduce.task.io.sort.mb": "10",
                              "hstream.sort.buffer.bytes": "5"}) == 5
    assert knobs.memory_mb({"mapreduce.map.memory.mb": "-1"}, "map") == 0
    assert knobs.memory_mb({"mapreduce.reduce.memory.mb": "512"}, "reduce") == 512
    assert knobs.with_ulimit(["cat"], {}, "map") == ["cat"]
    argv = knobs.with_ulimit(["cat"], {"mapred.child.ulimit": "1024"}, "reduce")
    assert argv[:2] == ["/bin/sh", "-c"] and argv[-2:] == ["1024", "cat"]


def test_the_memory_guard_counts_only_the_oom_kills_of_its_own_attempt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept runner's next map runs in the cgroup of its earlier ones, whose OOM kills the
    kernel still counts in memory.events: only a new one fails this attempt."""
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n")
    monkeypatch.setattr(knobs, "_own_cgroup", lambda: str(tmp_path))
    guard = knobs.MemoryGuard(64)
    assert (tmp_path / "memory.max").read_text() == str(64 << 20)
    assert not guard.oom_killed()
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
    assert guard.oom_killed()


def test_keyonlytext_and_ignoreseparator_write_lines_as_they_are() -> None:
    assert keyfields.writes_keys_only({"stream.reduce.output": "keyonlytext"}, "reduce")
    assert keyfields.writes_keys_only({"stream.map.output": "keyonlytext"}, "map")
    assert not keyfields.writes_keys_only({"stream.map.output": "keyonlytext"}, "reduce")
    ignore = {"mapred.textoutputformat.ignoreseparator": "true"}
    assert keyfields.writes_keys_only(ignore, "reduce")
    assert not keyfields.writes_keys_only({**ignore, "stream.num.reduce.output.key.fields": "2"},
                                          "reduce")
    assert keyfields.map_key({"stream.map.output": "keyonlytext"}).key(b"a\tb") == b"a\tb"
