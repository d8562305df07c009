"""Streaming jobs end to end on the embedded local cluster, each checked against the serial
pipeline `cat input | mapper | LC_ALL=C sort | reducer`."""

from __future__ import annotations

import bz2
import gzip
import os
import random
import re
import subprocess
from pathlib import Path

import pytest
from conftest import APPS, assert_same_output, read_output, reference, run_hstream

WC_MAP = str(APPS / "wc_map.py")
WC_REDUCE = str(APPS / "wc_reduce.py")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def text_corpus(seed: int, lines: int) -> bytes:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)] + ["a", "ab", "abc", "b"]
    return "".join(" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) + "\n"
                   for _ in range(lines)).encode()


def job(tmp_path: Path, inputs: list[Path], mapper: str, reducer: str | None, *extra: str,
        env: dict[str, str] | None = None) -> Path:
    """Run a job, assert success and equality with the serial pipeline; return the output dir."""
    out = tmp_path / "out"
    args = ["jar-free", "-output", str(out), "-mapper", mapper]
    for p in inputs:
        args += ["-input", str(p)]
    args += ["-reducer", reducer] if reducer else ["-numReduceTasks", "0"]
    proc = run_hstream(*args, *extra, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    files = [f for p in inputs for f in (sorted(p.iterdir()) if p.is_dir() else [p])]
    assert_same_output(out, reference(files, mapper, reducer, tmp_path, env))
    return out


def counters(stderr: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^\t\t(.+?)=(-?\d+)$", stderr, re.M)}


@pytest.mark.parametrize("reduces", [1, 3])
def test_python_wordcount(tmp_path: Path, reduces: int) -> None:
    data = write(tmp_path / "in" / "a.txt", text_corpus(1, 3000))
    write(tmp_path / "in" / "b.txt", text_corpus(2, 2000))
    out = job(tmp_path, [data.parent], WC_MAP, WC_REDUCE, "-numReduceTasks", str(reduces))
    assert len(list(out.glob("part-*"))) == reduces


def test_shell_wordcount_with_hadoop_spellings(tmp_path: Path) -> None:
    data = write(tmp_path / "in.txt", text_corpus(3, 2000))
    mapper = write(tmp_path / "tok.sh",
                   b"#!/bin/sh\ntr -s ' ' '\\n' | grep -v '^$' | sed 's/$/\t1/'\n")
    reducer = write(tmp_path / "sum.sh", b"#!/bin/sh\nawk -F'\\t' '{c[$1]+=$2} END {for (k in c) "
                                         b"print k \"\\t\" c[k]}'\n")
    os.chmod(mapper, 0o755)
    os.chmod(reducer, 0o755)
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-D", "mapreduce.job.reduces=3", "-files",
                       f"{mapper},{reducer}", "-input", str(data), "-output", str(out),
                       "-mapper", "tok.sh", "-reducer", "sum.sh", "-cmdenv", "LC_ALL=C",
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("part-*"))) == 3
    assert_same_output(out, reference([data], str(mapper), str(reducer), tmp_path))


def test_inverted_index_uses_map_input_file(tmp_path: Path) -> None:
    for i in range(4):
        write(tmp_path / "docs" / f"doc{i}.txt", text_corpus(10 + i, 200))
    mapper = write(tmp_path / "index_map.sh",
                   b"#!/bin/sh\nname=$(basename \"$mapreduce_map_input_file\")\n"
                   b"tr -s ' ' '\\n' | grep -v '^$' | sed \"s/\\$/\t$name/\" | sort -u\n")
    reducer = write(tmp_path / "index_reduce.sh",
                    b"#!/bin/sh\nawk -F'\\t' '$1 != k { if (NR > 1) print k \"\\t\" v; "
                    b"k = $1; v = $2; next } { v = v \",\" $2 } "
                    b"END { if (NR) print k \"\\t\" v }'\n")
    os.chmod(mapper, 0o755)
    os.chmod(reducer, 0o755)
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-input", str(tmp_path / "docs"), "-output", str(out),
                       "-mapper", str(mapper), "-reducer", str(reducer), "-numReduceTasks", "2",
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # The reference runs each document through the mapper with its own name, as the tasks do.
    expected = b"".join(
        reference([doc], f"env mapreduce_map_input_file={doc} {mapper}", None, tmp_path)
        for doc in sorted((tmp_path / "docs").iterdir()))
    sorted_input = write(tmp_path / "mapped.txt", b"".join(sorted(expected.splitlines(True))))
    assert_same_output(out, reference([sorted_input], "cat", str(reducer), tmp_path))


def test_map_only_job_writes_one_part_per_map(tmp_path: Path) -> None:
    data = write(tmp_path / "in" / "a.txt", text_corpus(4, 500))
    write(tmp_path / "in" / "b.txt", text_corpus(5, 500))
    out = job(tmp_path, [data.parent], WC_MAP, None)
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000", "part-00001"]


def test_reducer_none_is_map_only(tmp_path: Path) -> None:
    data = write(tmp_path / "a.txt", text_corpus(6, 300))
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(out), "-mapper", WC_MAP,
                       "-reducer", "NONE", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_output(out, reference([data], WC_MAP, None, tmp_path))


def test_combiner_reduces_shuffled_records(tmp_path: Path) -> None:
    data = write(tmp_path / "a.txt", text_corpus(7, 4000))
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-input", str(data), "-output", str(out), "-mapper", WC_MAP,
                       "-combiner", WC_REDUCE, "-reducer", WC_REDUCE, "-numReduceTasks", "2",
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_output(out, reference([data], WC_MAP, WC_REDUCE, tmp_path))
    c = counters(proc.stderr)
    assert c["Combine input records"] == c["Map output records"]
    assert 0 < c["Combine output records"] < c["Combine input records"]
    assert c["Reduce input records"] == c["Combine output records"]


@pytest.mark.parametrize("fields, extra", [
    (1, []),
    (2, ["-D", "stream.num.map.output.key.fields=2"]),
    (1, ["-D", "mapreduce.map.output.compress=true"]),  # a file per map, not packs
])
def test_many_small_maps_give_the_same_bytes_and_counters_through_the_packed_shuffle(
        tmp_path: Path, fields: int, extra: list[str]) -> None:
    """300 tiny files, a map each: the reducer sorts their small partitions together in packs.
    The output is byte for byte the key-ordered sort of all input (keys with bytes above 0x7f,
    some with a byte below the tab, so some maps sort by key field), and the counters count
    maps and records as a file per map did."""
    rng = random.Random(21)
    keys = [b"k", b"\xc3\xa9", b"\xff", b"a b", b"z\x01", b""]
    for i in range(300):
        write(tmp_path / "in" / f"f{i:03d}", b"".join(
            rng.choice(keys) + b"%d\t" % rng.randint(0, 9) + rng.choice([b"", b"v", b"\tw x"])
            + b"\n" for _ in range(rng.randint(1, 6))))
    out = tmp_path / "out"
    proc = run_hstream("jar-free", *extra, "-input", str(tmp_path / "in"), "-output", str(out),
                       "-mapper", "cat", "-reducer", "cat", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    everything = b"".join(f.read_bytes() for f in sorted((tmp_path / "in").iterdir()))
    want = subprocess.run(["sort", "-t", "\t", f"-k1,{fields}"], input=everything,
                          env={**os.environ, "LC_ALL": "C"}, capture_output=True, check=True)
    assert read_output(out) == want.stdout
    c = counters(proc.stderr)
    assert c["Shuffled Maps"] == c["Launched map tasks"] == 300
    if "mapreduce.map.output.compress=true" not in extra:  # else compressed bytes crossed
        assert c["Reduce shuffle bytes"] == len(everything)
    assert c["Reduce input records"] == c["Reduce output records"] == everything.count(b"\n")


def test_reduce_input_groups_count_each_key_once(tmp_path: Path) -> None:
    """"Reduce input groups" is the number of distinct keys a reducer saw. With two reducers
    on the maps' host it comes from the keys files the maps wrote beside their partitions: keys
    below the tab (sorted by key field), a key whose run spans reads and maps, and a line
    longer than a routing window (routed on its own) each count once."""
    rng = random.Random(5)
    keys = [b"w%d" % i for i in range(3000)] + [b"ab\x01", b"ab", b"", b"z" * 100]
    lines = [rng.choice(keys) + b"\t%d\n" % rng.randint(0, 99) for _ in range(200000)]
    lines += [b"hot\t1\n"] * 100000
    rng.shuffle(lines)
    half = len(lines) // 2
    write(tmp_path / "in" / "a", b"".join(lines[:half]))
    write(tmp_path / "in" / "b", b"".join(lines[half:]))
    write(tmp_path / "in" / "c", b"long\t" + b"v" * (5 << 20) + b"\n")
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-input", str(tmp_path / "in"), "-output", str(out),
                       "-mapper", "cat", "-reducer", "cat", "-numReduceTasks", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    c = counters(proc.stderr)
    distinct = {line.split(b"\t")[0] for line in lines} | {b"long"}
    assert c["Reduce input groups"] == len(distinct)
    assert c["Reduce input records"] == len(lines) + 1


def test_compressed_inputs_are_read_transparently(tmp_path: Path) -> None:
    raw = text_corpus(8, 1500)
    write(tmp_path / "in" / "a.txt.gz", gzip.compress(raw))
    write(tmp_path / "in" / "b.txt.bz2", bz2.compress(raw))
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-input", str(tmp_path / "in"), "-output", str(out),
                       "-mapper", WC_MAP, "-reducer", WC_REDUCE, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plain = write(tmp_path / "plain.txt", raw + raw)
    assert_same_output(out, reference([plain], WC_MAP, WC_REDUCE, tmp_path))


def test_hidden_and_underscore_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "in" / "data.txt", b"x y\n")
    write(tmp_path / "in" / "_SUCCESS", b"not input\n")
    write(tmp_path / "in" / ".crc", b"not input\n")
    out = job(tmp_path, [tmp_path / "in" / "data.txt"], WC_MAP, WC_REDUCE)
    assert read_output(out) == b"x\t1\ny\t1\n"


def test_empty_input(tmp_path: Path) -> None:
    data = write(tmp_path / "empty.txt", b"")
    out = job(tmp_path, [data], WC_MAP, WC_REDUCE)
    assert read_output(out) == b""


@pytest.mark.parametrize("name,data", [
    ("no_tabs", b"plain line\nanother plain line\nplain line\n"),
    ("prefix_keys", b"ab\t1\na\t2\nabc\t3\nab\x01\t4\nab\x00x\t5\na\t6\n\t7\nab\t8\n"),
    ("non_utf8", b"\xff\xfe\tbin\n\xc3\x28\tbad\ncaf\xc3\xa9\tok\n\xff\xfe\tagain\n"),
    ("crlf", b"k1\tv1\r\nk2\tv2\r\nk1\tv3\r\n"),
])
def test_identity_job_keeps_bytes_and_groups(tmp_path: Path, name: str, data: bytes) -> None:
    path = write(tmp_path / f"{name}.txt", data * 50)
    job(tmp_path, [path], "cat", "cat", "-numReduceTasks", "2")


def test_keys_below_tab_sort_by_key(tmp_path: Path) -> None:
    """A key holding a byte below TAB must still sort by key, not by whole line."""
    path = write(tmp_path / "keys.txt", b"ab\x01\tz\nab\ty\nab\x01\tx\nb\tw\n")
    out = job(tmp_path, [path], "cat", "cat")
    assert read_output(out) == b"ab\ty\nab\x01\tx\nab\x01\tz\nb\tw\n"


def test_one_megabyte_line(tmp_path: Path) -> None:
    big = b"k" * 10 + b"\t" + b"v" * (1 << 20) + b"\n"
    path = write(tmp_path / "big.txt", b"a\t1\n" + big + b"b\t2\n" + big)
    job(tmp_path, [path], "cat", "cat", "-numReduceTasks", "2")


def test_big_input_spills_and_merges(tmp_path: Path) -> None:
    data = write(tmp_path / "a.txt", text_corpus(9, 60000))  # ~2 MB, ~300k map output lines
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-D", "hstream.sort.buffer.bytes=65536", "-D",
                       "mapreduce.job.maps=1", "-input", str(data), "-output", str(out),
                       "-mapper", WC_MAP, "-reducer", WC_REDUCE, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_output(out, reference([data], WC_MAP, WC_REDUCE, tmp_path))
    c = counters(proc.stderr)
    assert c["Spilled Records"] > c["Map output records"], "the job should have spilled to disk"


def test_task_environment_has_hadoop_variables(tmp_path: Path) -> None:
    data = write(tmp_path / "a.txt", b"one\n")
    mapper = write(tmp_path / "env.sh", b"#!/bin/sh\ncat >/dev/null\n"
                   b"for v in mapreduce_job_id mapreduce_task_id mapreduce_task_attempt_id "
                   b"mapreduce_task_partition mapreduce_task_is_map mapreduce_map_input_file "
                   b"mapreduce_map_input_start mapreduce_map_input_length map_input_file MY_VAR "
                   b"mapreduce_job_reduces; do eval \"echo $v=\\$$v\"; done\n")
    os.chmod(mapper, 0o755)
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-D", "mapreduce.job.reduces=1", "-cmdenv", "MY_VAR=hello",
                       "-D", "mapreduce.job.maps=1",
                       "-input", str(data), "-output", str(out), "-mapper", str(mapper),
                       "-reducer", "NONE", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    env = dict(line.split("=", 1) for line in read_output(out).decode().split("\t\n") if line)
    assert re.fullmatch(r"job_\d+_\d{4}", env["mapreduce_job_id"])
    assert re.fullmatch(r"task_\d+_\d{4}_m_000000", env["mapreduce_task_id"])
    assert env["mapreduce_task_attempt_id"].startswith("attempt_")
    assert env["mapreduce_task_partition"] == "0"
    assert env["mapreduce_task_is_map"] == "true"
    assert env["mapreduce_map_input_file"] == env["map_input_file"] == str(data)
    assert env["mapreduce_map_input_start"] == "0"
    assert env["mapreduce_map_input_length"] == "4"
    assert env["MY_VAR"] == "hello"
    assert env["mapreduce_job_reduces"] == "1"


def test_one_big_file_uses_every_worker(tmp_path: Path) -> None:
    data = write(tmp_path / "big.txt", text_corpus(11, 120000))  # ~4 MB
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "--workers", "2", "-input", str(data), "-output", str(out),
                       "-mapper", "cat", "-numReduceTasks", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("part-*"))) >= 2
    assert read_output(out).replace(b"\t\n", b"\n") == data.read_bytes()
