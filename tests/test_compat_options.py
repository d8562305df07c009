"""Hadoop Streaming's options and properties, end to end through `hstream jar-free`: each job's
output is what Hadoop writes for the same command line."""

from __future__ import annotations

import bz2
import gzip
import io
import re
import tarfile
from pathlib import Path

import pytest
from conftest import APPS, assert_same_output, read_output, reference, run_hstream, wait_for
from test_compat_examples import RED, job, parts

LINES = b"one\ntwo\nthree\nfour\nfive\n"


def test_map_output_key_fields_and_reduce_output_separators(tmp_path: Path) -> None:
    # key = the first two '.'-fields; the reducer sees key<TAB>value (x.1<TAB>b, y<TAB>), turns
    # TABs into dots and writes 'a.b.c', which splits after 2 fields too
    job(tmp_path, "-D", "stream.map.output.field.separator=.",
        "-D", "stream.num.map.output.key.fields=2",
        "-D", "stream.reduce.output.field.separator=.",
        "-D", "stream.num.reduce.output.key.fields=2",
        "-input", "in.txt", "-output", "out", "-mapper", "cat", "-reducer", "tr '\\t' .",
        inputs={"in.txt": b"x.2.c\nx.1.b\ny\n"})
    assert read_output(tmp_path / "out") == b"x.1\tb\nx.2\tc\ny.\t\n"


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
    proc = job(tmp_path, "-D", "mapreduce.map.maxattempts=2", "-D", "mapreduce.job.maps=1",
               "-input", "in.txt", "-output", "out", "-mapper", counter, "-reducer", "cat",
               inputs={"in.txt": RED})
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
    one_map_a_file = ["-D", "mapreduce.job.maps=1"]
    job(tmp_path, "-lazyOutput", *one_map_a_file, "-input", "in", "-output", "lazy",
        "-mapper", "sed /skip/d", "-numReduceTasks", "0")
    job(tmp_path, *one_map_a_file, "-input", "in", "-output", "eager", "-mapper", "sed /skip/d",
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
        (["-D", "mapred.job.reduces=0"], "did you mean mapreduce.job.reduces?"),
        (["-D", "mapred.input.format.class=com.example.Custom"], "com.example.Custom"),
        (["-input", "s3a://bucket/logs"], "copy the data to a local or shared directory"),
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
    for extra in (["-bogus"], ["-mapper", "cat", "stray"]):  # StreamJob's usage errors
        proc = run_hstream("jar-free", *base, *extra, cwd=tmp_path)
        assert proc.returncode == 1 and extra[-1] in proc.stderr, (extra, proc.stderr)
    assert run_hstream("jar-free", cwd=tmp_path).returncode == 1
    assert not (tmp_path / "out").exists()


WORDS = b"b a\nc b a\n"
CLUSTER_ONLY = ["-D", "mapreduce.map.java.opts=-Xmx2g", "-D", "mapred.job.queue.name=etl",
                "-D", "yarn.nodemanager.vmem-check-enabled=false", "-D", "dfs.replication=2",
                "-D", "mapreduce.reduce.memory.mb=2048", "-fs", "hdfs://nn:8020",
                "-jt", "rm.example.com:8032", "-D", "mapred.job.priority=HIGH",
                "-D", "mapreduce.map.cpu.vcores=2"]


def test_cluster_only_settings_run_and_are_named_in_one_notice(tmp_path: Path) -> None:
    proc = job(tmp_path, *CLUSTER_ONLY, "-input", "in.txt", "-output", "out",
               "-mapper", "tr ' ' '\\n'", "-reducer", "uniq -c", inputs={"in.txt": WORDS})
    assert read_output(tmp_path / "out") == b"      2 a\t\n      2 b\t\n      1 c\t\n"
    notices = [line for line in proc.stderr.splitlines() if line.startswith("ignored")]
    assert notices == ["ignored (no effect in hstream): -fs, -jt, mapreduce.map.java.opts, "
                       "mapred.job.queue.name, yarn.nodemanager.vmem-check-enabled, "
                       "dfs.replication, and 1 more (-verbose lists them)"], proc.stderr
    proc = job(tmp_path, *CLUSTER_ONLY, "-verbose", "-fs", "file:///", "-input", "in.txt",
               "-output", "out2", inputs={"in.txt": WORDS})
    assert ("ignored (no effect in hstream): -jt, mapreduce.map.java.opts, mapred.job.queue.name, "
            "yarn.nodemanager.vmem-check-enabled, dfs.replication, mapreduce.map.cpu.vcores\n"
            in proc.stderr), proc.stderr  # -fs file:/// is what hstream does anyway


def test_file_uris_and_missing_output_parents(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes(b"x\n")
    job(tmp_path, "-input", f"file://{tmp_path / 'in.txt'}", "-output", "new/deeper/out",
        "-reducer", "NONE")
    assert read_output(tmp_path / "new" / "deeper" / "out") == b"x\t\n"


def test_reducer_sees_key_tab_value_when_the_map_separator_differs(tmp_path: Path) -> None:
    """With map output split on '.', Hadoop's reducer reads key, TAB (the default
    stream.reduce.input.field.separator), value."""
    job(tmp_path, "-D", "stream.map.output.field.separator=.",
        "-D", "stream.num.map.output.key.fields=2", "-input", "in.txt", "-output", "out",
        "-mapper", "cat", "-reducer", "cat", inputs={"in.txt": b"roses.are.red\nsolo\n"})
    assert read_output(tmp_path / "out") == b"roses.are\tred\nsolo\t\n"


def test_keyonlytext_output_and_ignoreseparator_drop_the_trailing_tab(tmp_path: Path) -> None:
    job(tmp_path, "-D", "stream.map.output=keyonlytext", "-numReduceTasks", "0",
        "-input", "in.txt", "-output", "out", inputs={"in.txt": b"k\tv\nsolo\n"})
    assert read_output(tmp_path / "out") == b"k\tv\nsolo\n"
    job(tmp_path, "-D", "mapred.textoutputformat.ignoreseparator=true", "-input", "in.txt",
        "-output", "out2", "-reducer", "cat")
    assert read_output(tmp_path / "out2") == b"k\tv\nsolo\n"


def test_keyonlytext_map_output_sends_every_copy_of_a_line_to_one_reducer(
        tmp_path: Path) -> None:
    """With stream.map.output=keyonlytext the whole line is the key: each line's copies,
    from every map, meet in one reducer, so counting them gives the pipeline's counts."""
    (tmp_path / "in").mkdir()
    for f in range(3):
        (tmp_path / "in" / f"f{f}").write_bytes(
            b"".join(b"w%d\n" % ((i * 7 + f) % 41) for i in range(400)))
    job(tmp_path, "-D", "stream.map.output=keyonlytext", "-D", "stream.reduce.input=keyonlytext",
        "-numReduceTasks", "3", "-input", "in", "-output", "out", "-mapper", "cat",
        "-reducer", "uniq -c")
    assert_same_output(tmp_path / "out", reference(sorted((tmp_path / "in").iterdir()), "cat",
                                                   "uniq -c", tmp_path))


def test_combine_text_input_format_packs_small_files_into_few_maps(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for i in range(300):
        (tmp_path / "in" / f"f{i:03d}").write_bytes(b"w%d x\n" % (i % 7) * 10)
    proc = job(tmp_path, "-inputformat", "org.apache.hadoop.mapred.lib.CombineTextInputFormat",
               "-D", "mapreduce.input.fileinputformat.split.maxsize=4000",
               "-D", "stream.map.input.ignoreKey=true", "-input", "in", "-output", "out",
               "-mapper", "tr ' ' '\\n'", "-reducer", "uniq -c")
    assert "Launched map tasks=4" in proc.stderr, proc.stderr
    want = reference(sorted((tmp_path / "in").iterdir()), "tr ' ' '\\n'", "uniq -c", tmp_path)
    assert_same_output(tmp_path / "out", want)


def test_map_count_follows_mapreduce_job_maps_for_small_inputs(tmp_path: Path) -> None:
    lines = b"".join(b"line %d\n" % i for i in range(40))
    proc = job(tmp_path, "-D", "mapreduce.job.maps=4", "-input", "in.txt", "-output", "out",
               "-reducer", "NONE", inputs={"in.txt": lines})
    assert "Launched map tasks=4" in proc.stderr
    assert len(parts(tmp_path / "out")) == 4
    assert b"".join(parts(tmp_path / "out")) == lines.replace(b"\n", b"\t\n")


def test_sort_buffer_and_map_output_compression(tmp_path: Path) -> None:
    """mapreduce.task.io.sort.mb=1 spills every megabyte (each record is spilled twice: in its
    spill, then in the merge); mapreduce.map.output.compress shrinks what crosses the shuffle;
    the output is the same."""
    data = b"".join(b"key%05d value %d\n" % (i % 5000, i) for i in range(150000))
    proc = job(tmp_path, "-D", "mapreduce.task.io.sort.mb=1", "-D", "mapreduce.job.maps=1",
               "-D", "mapreduce.map.output.compress=true", "-numReduceTasks", "2",
               "-input", "in.txt", "-output", "out", "-reducer", "cat", inputs={"in.txt": data})
    counters = counter_values(proc.stderr)
    assert counters["Spilled Records"] == 2 * counters["Map output records"] == 300000
    assert counters["Map output materialized bytes"] < counters["Map output bytes"] // 3
    assert counters["Reduce input records"] == 150000
    assert_same_output(tmp_path / "out", reference([tmp_path / "in.txt"], "cat", "cat", tmp_path))


def counter_values(stderr: str) -> dict[str, int]:
    found = {}
    for line in stderr.splitlines():
        name, eq, value = line.strip().partition("=")
        if eq and value.isdigit():
            found[name] = int(value)
    return found


def test_memory_limit_fails_an_attempt_that_exceeds_it(tmp_path: Path) -> None:
    hog = tmp_path / "hog.py"
    hog.write_text("#!/usr/bin/env python3\nimport sys, time\nsys.stdin.read()\n"
                   "block = b'x' * (400 << 20)\ntime.sleep(30)\n")
    hog.chmod(0o755)
    proc = job(tmp_path, "-D", "mapreduce.map.memory.mb=150", "-D", "mapreduce.map.maxattempts=1",
               "-input", "in.txt", "-output", "out", "-mapper", str(hog), ok=False,
               inputs={"in.txt": b"x\n"})
    assert proc.returncode == 1, proc.stderr
    assert "exceeded 150 MB of memory" in proc.stderr, proc.stderr


def test_failed_attempt_directory_kept_and_stream_tmpdir(tmp_path: Path) -> None:
    """keep.failed.task.files keeps a failed attempt's directory and the failure says where;
    stream.tmpdir holds the attempts' temporary files, and nothing of them after the job."""
    fail = tmp_path / "fail.sh"
    fail.write_text('#!/bin/sh\ncat > seen.txt\necho "tmp is $TMPDIR" >&2\nexit 4\n')
    fail.chmod(0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = job(tmp_path, "-D", "keep.failed.task.files=true", "-D", f"stream.tmpdir={scratch}",
               "-D", "mapreduce.map.maxattempts=1", "-input", "in.txt", "-output", "out",
               "-mapper", str(fail), ok=False, inputs={"in.txt": b"x\n"})
    assert proc.returncode == 1
    kept = Path(re.search(r"its directory is kept in (\S+)\)", proc.stderr).group(1))
    assert kept.parent.parent == scratch / "hstream-kept"
    assert (kept / "work" / "seen.txt").read_bytes() == b"x\n"
    assert f"tmp is {scratch}/hstream-attempt_" in proc.stderr
    assert sorted(p.name for p in scratch.iterdir()) == ["hstream-kept"]


def test_recursive_input_directories_and_brace_globs(tmp_path: Path) -> None:
    for rel in ("logs/a/1.txt", "logs/a/deep/2.txt", "logs/b/3.txt", "logs/c/4.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode() + b"\n")
    job(tmp_path, "-D", "mapreduce.input.fileinputformat.input.dir.recursive=true",
        "-input", "logs/{a,b}", "-output", "out", "-reducer", "cat")
    assert read_output(tmp_path / "out") == b"logs/a/1.txt\t\nlogs/a/deep/2.txt\t\nlogs/b/3.txt\t\n"


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


def test_map_output_compression_compresses_the_spills(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Like Hadoop's IFile spills, every spill run is written with the map output codec (here
    by the deprecated names): a failed map's kept directory holds them in gzip's or bzip2's
    format, together the sorted map output. A job that succeeds with a single reducer (the
    runs merged straight into its partition) gives the serial pipeline's output."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the failed attempts are kept
    data = b"".join(b"key%05d value %d\n" % (i % 5000, i) for i in range(150000))
    (tmp_path / "in.txt").write_bytes(data)
    fail = tmp_path / "fail.sh"
    fail.write_text("#!/bin/sh\ncat\nexit 7\n")
    fail.chmod(0o755)
    spill_conf = ("-D", "mapred.compress.map.output=true", "-D", "mapreduce.task.io.sort.mb=1",
                  "-D", "mapreduce.job.maps=1", "-input", "in.txt")
    for codec, opener in (("GzipCodec", gzip.open), ("BZip2Codec", bz2.open)):
        proc = job(tmp_path, *spill_conf, "-D", "keep.failed.task.files=true",
                   "-D", f"mapred.map.output.compression.codec={CODECS}.{codec}",
                   "-D", "mapreduce.map.maxattempts=1", "-output", f"failed-{codec}",
                   "-mapper", str(fail), ok=False)
        kept = Path(re.search(r"its directory is kept in (\S+)\)", proc.stderr).group(1))
        spills = sorted(kept.rglob("spill*.out*"))
        assert len(spills) >= 3, proc.stderr
        runs = [opener(p).read() for p in spills]  # fails on a file not in the codec's format
        assert all(run.splitlines() == sorted(run.splitlines()) for run in runs)
        assert sorted(b"".join(runs).splitlines()) == sorted(data.splitlines())
    bzip2 = f"mapreduce.map.output.compress.codec={CODECS}.BZip2Codec"
    proc = job(tmp_path, *spill_conf, "-D", bzip2, "-output", "out", "-numReduceTasks", "1",
               "-reducer", "cat")
    assert counter_values(proc.stderr)["Spilled Records"] == 2 * 150000
    assert_same_output(tmp_path / "out", reference([tmp_path / "in.txt"], "cat", "cat", tmp_path))


CODECS = "org.apache.hadoop.io.compress"
