"""Hadoop Streaming's documented examples (E1-E10 of mission-anchors.md), run through
`hstream jar-free` exactly as the Hadoop command line would be, against Hadoop's documented
output (HadoopStreaming.md and the streaming module's own tests)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from conftest import APPS, assert_same_output, read_output, reference, run_hstream

KEYS = b"11.12.1.2\n11.14.2.3\n11.11.4.1\n11.12.1.1\n11.14.2.2\n"
KEYFIELD_CONF = ["-D", "stream.map.output.field.separator=.",
                 "-D", "stream.num.map.output.key.fields=4",
                 "-D", "map.output.key.field.separator=."]
RED = b"roses are red\nviolets are blue\nbunnies are pink\n"


def job(tmp: Path, *args: str, inputs: dict[str, bytes] | None = None, ok: bool = True,
        workers: int = 1):
    for name, data in (inputs or {}).items():
        (tmp / name).write_bytes(data)
    proc = run_hstream("jar-free", "--workers", str(workers), *args, cwd=tmp)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def parts(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(out.glob("part-*"))]


def test_e1_keyfield_partitioner_groups_by_first_two_fields(tmp_path: Path) -> None:
    job(tmp_path, *KEYFIELD_CONF, "-D", "mapreduce.partition.keypartitioner.options=-k1,2",
        "-D", "mapreduce.job.reduces=3", "-input", "in.txt", "-output", "out",
        "-mapper", "/bin/cat", "-reducer", "/bin/cat",
        "-partitioner", "org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner",
        inputs={"in.txt": KEYS})
    got = sorted(parts(tmp_path / "out"))
    # fewer than 4 dots: the whole line is the key, the value empty (hence the TAB)
    assert got == [b"11.11.4.1\t\n", b"11.12.1.1\t\n11.12.1.2\t\n", b"11.14.2.2\t\n11.14.2.3\t\n"]


def test_e1_with_the_mapreduce_alias_and_old_option_name(tmp_path: Path) -> None:
    job(tmp_path, "-D", "stream.map.output.field.separator=.",
        "-D", "stream.num.map.output.key.fields=4",
        "-D", "mapreduce.map.output.key.field.separator=.",
        "-jobconf", "mapred.text.key.partitioner.options=-k1,2", "-numReduceTasks", "3",
        "-input", "in.txt", "-output", "out", "-mapper", "cat", "-reducer", "cat",
        "-partitioner", "org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner",
        inputs={"in.txt": KEYS})
    got = sorted(parts(tmp_path / "out"))
    assert got == [b"11.11.4.1\t\n", b"11.12.1.1\t\n11.12.1.2\t\n", b"11.14.2.2\t\n11.14.2.3\t\n"]


def test_e2_keyfield_comparator_reverse_numeric_keeps_ties_in_map_order(tmp_path: Path) -> None:
    job(tmp_path, *KEYFIELD_CONF,
        "-D", "mapreduce.job.output.key.comparator.class="
              "org.apache.hadoop.mapreduce.lib.partition.KeyFieldBasedComparator",
        "-D", "mapreduce.partition.keycomparator.options=-k2,2nr", "-D", "mapreduce.job.reduces=1",
        "-input", "in.txt", "-output", "out", "-mapper", "/bin/cat", "-reducer", "/bin/cat",
        inputs={"in.txt": KEYS})
    assert read_output(tmp_path / "out") == (
        b"11.14.2.3\t\n11.14.2.2\t\n11.12.1.2\t\n11.12.1.1\t\n11.11.4.1\t\n")


def test_secondary_sort_recipe_with_several_keys(tmp_path: Path) -> None:
    """Partition on field 1, sort by field 1 then field 2 numerically descending."""
    data = b"b.2.x\na.10.y\nb.10.z\na.9.w\na.10.v\n"
    job(tmp_path, "-D", "stream.map.output.field.separator=.",
        "-D", "stream.num.map.output.key.fields=2",
        "-D", "mapreduce.map.output.key.field.separator=.",
        "-D", "mapreduce.partition.keypartitioner.options=-k1,1",
        "-D", "mapreduce.job.output.key.comparator.class="
              "org.apache.hadoop.mapred.lib.KeyFieldBasedComparator",
        "-D", "mapreduce.partition.keycomparator.options=-k1,1 -k2,2nr", "-numReduceTasks", "2",
        "-partitioner", "org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner",
        "-input", "in.txt", "-output", "out", "-mapper", "cat", "-reducer", "cat",
        inputs={"in.txt": data})
    files = [p.splitlines() for p in parts(tmp_path / "out")]
    # the reducer (cat) reads key, TAB, value, as Hadoop hands them over
    for first, want in ((b"a.", [b"a.10\ty", b"a.10\tv", b"a.9\tw"]),
                        (b"b.", [b"b.10\tz", b"b.2\tx"])):
        holding = [[line for line in f if line.startswith(first)] for f in files]
        assert sorted(holding, key=len)[-1] == want  # one partition holds them all, in order
        assert sum(map(len, holding)) == len(want)


def test_e3_aggregate_word_count_with_its_combiner(tmp_path: Path) -> None:
    mapper = tmp_path / "aggmap.sh"
    mapper.write_text("#!/bin/sh\ntr ' ' '\\n' | sed 's/^/LongValueSum:/; s/$/\t1/'\n")
    mapper.chmod(0o755)
    proc = job(tmp_path, "-D", "mapreduce.job.maps=1", "-input", "in.txt", "-output", "out",
               "-mapper", "aggmap.sh", "-reducer", "aggregate", inputs={"in.txt": RED})
    assert read_output(tmp_path / "out") == (
        b"are\t3\nblue\t1\nbunnies\t1\npink\t1\nred\t1\nroses\t1\nviolets\t1\n")
    assert "Combine input records=9" in proc.stderr
    assert "Combine output records=7" in proc.stderr


def test_aggregate_every_type(tmp_path: Path) -> None:
    data = b"".join(f"{line}\n".encode() for line in [
        "LongValueSum:sum\t5", "LongValueSum:sum\t-2",
        "LongValueMax:max\t7", "LongValueMax:max\t11",
        "LongValueMin:min\t7", "LongValueMin:min\t-11", "DoubleValueSum:dsum\t1.5",
        "DoubleValueSum:dsum\t2", "StringValueMax:smax\tpear", "StringValueMax:smax\tapple",
        "StringValueMin:smin\tpear", "StringValueMin:smin\tapple", "UniqValueCount:uniq\tx",
        "UniqValueCount:uniq\ty", "UniqValueCount:uniq\tx", "ValueHistogram:hist\ta",
        "ValueHistogram:hist\tb\t3", "ValueHistogram:hist\ta"])
    job(tmp_path, "-input", "in.txt", "-output", "out", "-mapper", "cat", "-reducer", "aggregate",
        "-numReduceTasks", "1", inputs={"in.txt": data})
    assert read_output(tmp_path / "out") == (
        b"dsum\t3.5\nmax\t11\nmin\t-11\nsum\t3\nsmax\tpear\nsmin\tapple\nuniq\t2\n"
        b"hist\t2\t2\t3\t3\t2.5\t0.5\n")  # in the order of the keys, Type:id


def test_e4_field_selection_map_and_reduce(tmp_path: Path) -> None:
    data = b"".join("-".join(f"{i + j:04d}" for j in range(7)).encode() + b"\n" for i in range(10))
    job(tmp_path, "-D", "mapreduce.fieldsel.data.field.separator=-",
        "-D", "mapreduce.fieldsel.map.output.key.value.fields.spec=6,5,1-3:0-",
        "-D", "mapreduce.fieldsel.reduce.output.key.value.fields.spec=:4,3,2,1,0,0-",
        "-numReduceTasks", "1", "-input", "in.txt", "-output", "out",
        "-mapper", "org.apache.hadoop.mapred.lib.FieldSelectionMapReduce",
        "-reducer", "org.apache.hadoop.mapred.lib.FieldSelectionMapReduce", inputs={"in.txt": data})
    expected = []
    for i in range(10):
        f = [f"{i + j:04d}" for j in range(7)]
        key = [f[6], f[5], f[1], f[2], f[3]]
        fields = key + f
        expected.append("-".join([fields[4], fields[3], fields[2], fields[1], fields[0]] + fields))
    got = read_output(tmp_path / "out").decode().splitlines()
    assert got == expected
    assert got[0] == ("0003-0002-0001-0005-0006-0006-0005-0001-0002-0003-0000-0001-0002-0003-0004"
                      "-0005-0006")


def test_e5_default_streaming_and_combiner(tmp_path: Path) -> None:
    data = b"roses.are.red\nviolets.are.blue\nbunnies.are.pink\n"
    uniq = str(APPS / "compat_uniq.py")
    proc = job(tmp_path, "-D", "mapreduce.job.maps=1", "-input", "in.txt", "-output", "out",
               "-mapper", "tr . \\n", "-combiner", uniq, "-reducer", f"{uniq} R",
               inputs={"in.txt": data})
    want = [b"Rare\t", b"Rblue\t", b"Rbunnies\t", b"Rpink\t", b"Rred\t", b"Rroses\t", b"Rviolets\t"]
    assert sorted(read_output(tmp_path / "out").splitlines()) == want
    assert "Combine input records=9" in proc.stderr and "Combine output records=7" in proc.stderr
    assert_same_output(tmp_path / "out", reference([tmp_path / "in.txt"], "tr . '\\n'", f"{uniq} R",
                                                   tmp_path))


def test_e5_user_counters_from_stderr(tmp_path: Path) -> None:
    proc = job(tmp_path, "-input", "in.txt", "-output", "out",
               "-mapper", str(APPS / "compat_counter.py"),
               "-reducer", "cat", inputs={"in.txt": RED})
    assert "\tUserCounters\n\t\tInputLines=3\n" in proc.stderr
    assert "reporter:" not in proc.stderr


E6_INPUT = (b"roses are \tred\t\n\tviolets are blue\nbunnies are pink\n"
            b"this is for testing a big\tinput line\nsmall input\n")


def test_e6_tab_positions_and_empty_value_trailing_tab(tmp_path: Path) -> None:
    job(tmp_path, "-input", "in.txt", "-output", "out", "-mapper", "cat",
        inputs={"in.txt": E6_INPUT})
    assert read_output(tmp_path / "out") == (
        b"\tviolets are blue\nbunnies are pink\t\nroses are \tred\t\nsmall input\t\n"
        b"this is for testing a big\tinput line\n")


def test_e6_ignore_key_false_gives_byte_offsets(tmp_path: Path) -> None:
    job(tmp_path, "-D", "stream.map.input.ignoreKey=false", "-input", "in.txt", "-output", "out",
        "-mapper", "cat", inputs={"in.txt": E6_INPUT})
    assert read_output(tmp_path / "out") == (
        b"0\troses are \tred\t\n16\t\tviolets are blue\n34\tbunnies are pink\n"
        b"51\tthis is for testing a big\tinput line\n88\tsmall input\n")


def test_e7_custom_separators_everywhere(tmp_path: Path) -> None:
    job(tmp_path, "-input", "in.txt", "-output", "out", "-inputformat", "KeyValueTextInputFormat",
        "-D", "mapreduce.input.keyvaluelinerecordreader.key.value.separator=1",
        "-D", "stream.map.input.field.separator=2", "-mapper", "tr 2 3",
        "-D", "stream.map.output.field.separator=3", "-D", "stream.reduce.input.field.separator=3",
        "-reducer", "tr 3 4", "-D", "stream.reduce.output.field.separator=4",
        "-D", "mapreduce.output.textoutputformat.separator=5",
        inputs={"in.txt": b"roses1are.red\nviolets1are.blue\nbunnies1are.pink\n"})
    assert read_output(tmp_path / "out") == b"bunnies5are.pink\nroses5are.red\nviolets5are.blue\n"


def test_e8_non_zero_exit_fails_the_job_unless_told_otherwise(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes(b"hello\n")
    common = ["-input", "in.txt", "-D", "mapreduce.map.maxattempts=1",
              "-D", "mapreduce.reduce.maxattempts=1"]
    failed = job(tmp_path, *common, "-output", "o1", "-mapper", "sh -c 'cat; exit 1'", ok=False)
    assert failed.returncode == 1, failed.stderr
    assert not (tmp_path / "o1").exists()
    job(tmp_path, *common, "-output", "o2", "-mapper", "sh -c 'cat; exit 1'",
        "-D", "stream.non.zero.exit.is.failure=false")
    assert read_output(tmp_path / "o2") == b"hello\t\n"
    job(tmp_path, *common, "-output", "o4", "-reducer", "sh -c 'cat; exit 2'",
        "-D", "stream.non.zero.exit.is.failure=false")
    assert read_output(tmp_path / "o4") == b"hello\t\n"


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_e9_archives_jar_unpacked_into_the_task_directory(tmp_path: Path) -> None:
    jar = _zip({"cache.txt": b"This is just the cache string\n",
                "cache2.txt": b"This is just the second cache string\n"})
    job(tmp_path, "-archives", "cachedir.jar", "-D", "mapreduce.job.maps=1", "-input", "in.txt",
        "-output", "out", "-mapper", "xargs cat", "-reducer", "cat",
        inputs={"cachedir.jar": jar,
                "in.txt": b"cachedir.jar/cache.txt\ncachedir.jar/cache2.txt\n"})
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000"]
    assert (out / "_SUCCESS").stat().st_size == 0
    part = (out / "part-00000").read_bytes()
    assert part == b"This is just the cache string\t\nThis is just the second cache string\t\n"
    assert len(part) == 69


def test_e10_cut_mapper(tmp_path: Path) -> None:
    data = b"alice\t50\nbruce\t70\ncharlie\t80\ndan\t75\n"
    job(tmp_path, "-input", "in.txt", "-output", "out", "-mapper", "cut -f2", "-reducer", "cat",
        inputs={"in.txt": data})
    assert read_output(tmp_path / "out") == b"50\t\n70\t\n75\t\n80\t\n"
    assert_same_output(tmp_path / "out",
                       reference([tmp_path / "in.txt"], "cut -f2", "cat", tmp_path))
