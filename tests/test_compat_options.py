"""Hadoop Streaming's options and properties, end to end through `hstream jar-free`: each job's
output is what Hadoop writes for the same command line."""

from __future__ import annotations

import bz2
import gzip
import io
import tarfile
from pathlib import Path

from conftest import APPS, read_output, run_hstream, wait_for
from test_compat_examples import RED, job

LINES = b"one\ntwo\nthree\nfour\nfive\n"


def test_map_output_key_fields_and_reduce_output_separators(tmp_path: Path) -> None:
    # key = the first two '.'-fields; the reducer writes 'a.b.c' which splits after 2 fields too
    job(tmp_path, "-D", "stream.map.output.field.separator=.",
        "-D", "stream.num.map.output.key.fields=2",
        "-D", "stream.reduce.output.field.separator=.",
        "-D", "stream.num.reduce.output.key.fields=2",
        "-input", "in.txt", "-output", "out", "-mapper", "cat", "-reducer", "cat",
        inputs={"in.txt": b"x.2.c\nx.1.b\ny\n"})
    assert read_output(tmp_path / "out") == b"x.1\tb\nx.2\tc\ny\t\n"


def test_reduce_input_separator_rejoins_key_and_value(tmp_path: Path) -> None:
    job(tmp_path, "-D", "stream.reduce.input.field.separator=:",
        "-input", "in.txt", "-output", "out",
        "-mapper", "cat", "-reducer", "cat", inputs={"in.txt": b"k\tv\nsolo\n"})
    # the reducer sees k:v and solo: (Hadoop writes key, separator, value); neither has a TAB
    assert read_output(tmp_path / "out") == b"k:v\t\nsolo:\t\n"


def test_textoutputformat_separator(tmp_path: Path) -> None:
    job(tmp_path, "-D", "mapreduce.output.textoutputformat.separator=,", "-input", "in.txt",
        "-output", "out", "-mapper", "cat", "-reducer", "NONE", inputs={"in.txt": b"k\tv\nsolo\n"})
    assert read_output(tmp_path / "out") == b"k,v\nsolo,\n"


def test_nline_input_format_gives_n_lines_and_offsets_per_map(tmp_path: Path) -> None:
    proc = job(tmp_path, "-inputformat", "org.apache.hadoop.mapred.lib.NLineInputFormat",
               "-D", "mapreduce.input.lineinputformat.linespermap=2", "-input", "in.txt",
               "-output", "out", "-mapper", "cat", "-numReduceTasks", "0", inputs={"in.txt": LINES})
    assert "Launched map tasks=3" in proc.stderr
    out = tmp_path / "out"
    # like Hadoop, the mapper of an NLineInputFormat job sees the byte offset as key
    assert [p.read_bytes() for p in sorted(out.glob("part-*"))] == [
        b"0\tone\n4\ttwo\n", b"8\tthree\n14\tfour\n", b"19\tfive\n"]


def test_keyvalue_input_format_with_ignore_key(tmp_path: Path) -> None:
    job(tmp_path, "-inputformat", "org.apache.hadoop.mapred.KeyValueTextInputFormat",
        "-D", "stream.map.input.ignoreKey=true", "-input", "in.txt", "-output", "out",
        "-mapper", "cat", "-reducer", "NONE", inputs={"in.txt": b"k1\tv1\nk2\tv2\n"})
    assert read_output(tmp_path / "out") == b"v1\t\nv2\t\n"


def test_failed_attempts_are_retried_and_their_counters_dropped(tmp_path: Path) -> None:
    counter = f"{APPS / 'compat_counter.py'} fail-first"
    proc = job(tmp_path, "-D", "mapreduce.map.maxattempts=2", "-input", "in.txt", "-output", "out",
               "-mapper", counter, "-reducer", "cat", inputs={"in.txt": RED})
    assert "\t\tInputLines=3\n" in proc.stderr, proc.stderr  # not 6: attempt 0 failed
    assert "Failed map tasks=1" in proc.stderr
    assert read_output(tmp_path / "out") == (
        b"bunnies are pink\t\nroses are red\t\nviolets are blue\t\n")
    failed = job(tmp_path, "-D", "mapreduce.map.maxattempts=1", "-input", "in.txt", "-output", "o2",
                 "-mapper", counter, "-reducer", "cat", ok=False)
    assert failed.returncode == 1
    assert "compat_counter.py" in failed.stderr


def test_reduce_max_attempts(tmp_path: Path) -> None:
    flaky = "sh -c 'cat; case $mapreduce_task_attempt_id in *_0) exit 1;; esac'"
    job(tmp_path, "-D", "mapreduce.reduce.maxattempts=2", "-input", "in.txt", "-output", "out",
        "-reducer", flaky, inputs={"in.txt": b"a\n"})
    assert read_output(tmp_path / "out") == b"a\t\n"
    failed = job(tmp_path, "-D", "mapreduce.reduce.maxattempts=1",
                 "-input", "in.txt", "-output", "o2",
                 "-reducer", flaky, ok=False)
    assert failed.returncode == 1


def test_lazy_output_writes_no_empty_part_files(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_bytes(b"skip\nskip\n")
    (tmp_path / "in" / "b.txt").write_bytes(b"keep\n")
    job(tmp_path, "-lazyOutput", "-input", "in", "-output", "lazy", "-mapper", "sed /skip/d",
        "-numReduceTasks", "0")
    job(tmp_path, "-input", "in", "-output", "eager", "-mapper", "sed /skip/d",
        "-numReduceTasks", "0")
    assert sorted(p.name for p in (tmp_path / "lazy").glob("part-*")) == ["part-00001"]
    assert sorted(p.name for p in (tmp_path / "eager").glob("part-*")) == [
        "part-00000", "part-00001"]
    assert read_output(tmp_path / "lazy") == b"keep\t\n"


def test_output_compression_codecs(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes(RED)
    want = b"bunnies are pink\t\nroses are red\t\nviolets are blue\t\n"
    for codec, ext, decompress in (("GzipCodec", "gz", gzip.decompress),
                                   ("BZip2Codec", "bz2", bz2.decompress)):
        out = tmp_path / f"out-{ext}"
        job(tmp_path, "-D", "mapreduce.output.fileoutputformat.compress=true",
            "-D", "mapreduce.output.fileoutputformat.compress.codec="
                  f"org.apache.hadoop.io.compress.{codec}",
            "-input", "in.txt", "-output", out.name, "-mapper", "cat", "-reducer", "cat")
        assert [p.name for p in out.glob("part-*")] == [f"part-00000.{ext}"]
        assert decompress((out / f"part-00000.{ext}").read_bytes()) == want


def test_archives_tgz_and_files_with_aliases(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"from the tarball\n"
        info = tarfile.TarInfo("inner.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "bundle.tar.gz").write_bytes(buf.getvalue())
    (tmp_path / "notes.txt").write_bytes(b"from a shipped file\n")
    job(tmp_path, "-archives", "bundle.tar.gz#tgz", "-files", "notes.txt#renamed.txt",
        "-input", "in.txt", "-output", "out", "-mapper", "xargs cat", "-reducer", "cat",
        inputs={"in.txt": b"tgz/inner.txt\nrenamed.txt\n"})
    assert read_output(tmp_path / "out") == b"from a shipped file\t\nfrom the tarball\t\n"


def test_generic_options_repeated_D_comma_inputs_old_names_and_job_name(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a\n")
    (tmp_path / "b.txt").write_bytes(b"b\n")
    env = str(APPS / "compat_env.py")
    proc = job(tmp_path, "-D", "mapred.job.name=MyJob", "-D", "mapred.reduce.tasks=2",
               "-jobconf", "stream.non.zero.exit.is.failure=true", "-verbose",
               "-input", "a.txt,b.txt", "-output", "out",
               "-mapper", f"{env} mapreduce_job_name map_input_file mapreduce_map_input_file",
               "-reducer", "NONE")
    lines = sorted(read_output(tmp_path / "out").decode().splitlines())
    assert lines == sorted([
        "mapreduce_job_name=MyJob\t", "mapreduce_job_name=MyJob\t",
        f"map_input_file={tmp_path / 'a.txt'}\t", f"map_input_file={tmp_path / 'b.txt'}\t",
        f"mapreduce_map_input_file={tmp_path / 'a.txt'}\t",
        f"mapreduce_map_input_file={tmp_path / 'b.txt'}\t"])
    # -verbose prints the resolved configuration under the new names
    assert "mapreduce.job.name=MyJob" in proc.stderr
    assert "mapreduce.job.reduces=2" in proc.stderr


def test_conf_file_and_cache_file(tmp_path: Path) -> None:
    (tmp_path / "job.xml").write_text(
        "<?xml version='1.0'?><configuration>"
        "<property><name>mapreduce.output.textoutputformat.separator</name><value>;</value></property>"
        "<property><name>mapreduce.job.reduces</name><value>0</value></property></configuration>")
    (tmp_path / "side.txt").write_bytes(b"side\tdata\n")
    job(tmp_path, "-conf", "job.xml", "-cacheFile", f"file://{tmp_path / 'side.txt'}#side",
        "-input", "in.txt", "-output", "out", "-mapper", "xargs cat", inputs={"in.txt": b"side\n"})
    assert read_output(tmp_path / "out") == b"side;data\n"


def test_unknown_options_and_properties_are_errors_naming_them(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes(b"x\n")
    base = ["-input", "in.txt", "-output", "out"]
    cases = [
        (["-mapdebug", "x"], "-mapdebug"),
        (["-D", "mapreduce.map.output.compress=true"], "mapreduce.map.output.compress"),
        (["-D", "hstream.no.such.setting=1"], "hstream.no.such.setting"),
        (["-inputformat", "SequenceFileAsTextInputFormat"], "SequenceFileAsTextInputFormat"),
        (["-partitioner", "com.example.MyPartitioner"], "com.example.MyPartitioner"),
        (["-D", "stream.non.zero.exit.is.failure=maybe"], "stream.non.zero.exit.is.failure"),
        (["-mapper", "aggregate"], "aggregate"),
    ]
    for extra, name in cases:
        proc = run_hstream("jar-free", *base, *extra, cwd=tmp_path)
        assert proc.returncode == 3, (extra, proc.stderr)
        assert name in proc.stderr, (extra, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_hstream_settings_are_accepted(tmp_path: Path) -> None:
    job(tmp_path, "-D", "hstream.sort.buffer.bytes=1048576", "-input", "in.txt", "-output", "out",
        inputs={"in.txt": b"b\na\n"})
    assert read_output(tmp_path / "out") == b"a\t\nb\t\n"


def test_help_info_and_background_without_cluster(tmp_path: Path) -> None:
    for flag in ("-help", "-info", "--help"):
        proc = run_hstream("jar-free", flag, cwd=tmp_path)
        assert proc.returncode == 0 and "-input" in proc.stdout, proc.stderr
    (tmp_path / "in.txt").write_bytes(b"x\n")
    proc = run_hstream("jar-free", "-background", "-input", "in.txt", "-output", "out",
                       cwd=tmp_path)
    assert proc.returncode == 3 and "-background" in proc.stderr, proc.stderr


def test_background_submits_to_a_running_cluster_and_returns_the_job_id(tmp_path: Path) -> None:
    from hstream import protocol
    from hstream.cluster import clusterstate, config
    from hstream.cluster.localcluster import LocalCluster

    (tmp_path / "in.txt").write_bytes(b"b\na\n")
    ini = tmp_path / "cluster.ini"
    ini.write_text(f"[manager]\nhost = 127.0.0.1\nworkdir = {tmp_path / 'mgr'}\n"
                   "[workers]\nhosts = 127.0.0.1\n")
    cfg = config.load(str(ini))
    with LocalCluster(workers=1) as cluster:  # stands in for `hstream cluster up`
        clusterstate.write_state(cfg, cluster.port, 0, 0)
        protocol.write_secret(cfg.secret_file, cluster.secret)
        proc = run_hstream("jar-free", "--config", str(ini), "-background", "-input", "in.txt",
                           "-output", "out", "-mapper", "cat", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().startswith("job_"), proc.stdout
        wait_for(lambda: (tmp_path / "out" / "_SUCCESS").exists(), 30,
                 "the background job's output")
    assert read_output(tmp_path / "out") == b"a\t\nb\t\n"
