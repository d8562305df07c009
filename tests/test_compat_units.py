"""Unit tests of the pure parts of Hadoop compatibility: key-field options, the aggregate
package, field selection specs, command splitting, command-line parsing, NLine splits."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest

from hstream.errors import ConfigError
from hstream.hadoop import aggregate as agg
from hstream.hadoop import command, fieldsel, keyfields, streaming
from hstream.hadoop.keyfields import KeySpec
from hstream.job import Split
from hstream.task import records
from hstream.task.output import OutputWriter
from hstream.task.splits import nline_splits, read_split

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
                       (["-D", "hstream.nope=1"], "hstream.nope"), (["-D", "novalue"], "novalue"),
                       (["-archives", "in.txt"], "in.txt"), (["-io", "typedbytes"], "typedbytes"),
                       (["-D", "mapreduce.partition.keycomparator.options=-k2,2x"], "-k2,2x"),
                       (["-D", "mapred.compress.map.output=true"], "mapred.compress.map.output"),
                       (["-D", "hstream.speculative.lag=soon"], "hstream.speculative.lag"),
                       (["-D", "stream.map.output.field.separator=\\"],
                        "stream.map.output.field.separator"),
                       (["-D", "mapreduce.output.fileoutputformat.compress.codec=Lz4"], "Lz4"),
                       (["-D", "mapreduce.map.output.key.class=org.apache.hadoop.io.LongWritable"],
                        "LongWritable")):
        with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
            _parse(tmp_path, *args)


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
