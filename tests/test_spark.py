"""`hstream jar-free --runner spark`: the same jobs on a real Spark standalone cluster.

One Master and two Workers on 127.0.0.1, started from pyspark's own jars for the whole
session (`hstream.runners.standalone`) and killed at its end. Every job's output equals the
serial pipeline's; where partitioning allows, its part files are byte-identical to the
embedded runner's. Executors carry the test's HSTREAM_TEST_TAG (`spark.executorEnv`), so the
orphan check covers them, their Python workers and the commands they run.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import (
    APPS,
    assert_same_output,
    pairs,
    reference,
    require,
    run_hstream,
    wait_for,
)

from hstream.errors import ConfigError
from hstream.job import JobSpec
from hstream.runners.options import extract
from hstream.runners.spark import _zip_hstream, spark_conf
from hstream.runners.standalone import StandaloneCluster

WC_MAP, WC_REDUCE = f"{APPS}/wc_map.py", f"{APPS}/wc_reduce.py"
CRASH = f"{APPS}/crash_wc.py"
TIMEOUT = 300  # a Spark job on a loaded 2-core machine: JVMs to start, generous
KEYS = b"11.12.1.2\n11.14.2.3\n11.11.4.1\n11.12.1.1\n11.14.2.2\n"


def _have_spark() -> bool:
    return bool(shutil.which("java")) and importlib.util.find_spec("pyspark") is not None


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    require(_have_spark(), "needs Java 17 and pyspark (pip install -e '.[spark]')")
    env = {k: v for k, v in os.environ.items() if k != "HSTREAM_TEST_TAG"}
    cluster = StandaloneCluster(str(tmp_path_factory.mktemp("spark")), workers=2, env=env)
    with cluster:
        yield cluster


def on_spark(cluster: StandaloneCluster | str, *args: str, cwd: Path,
             env: dict[str, str] | None = None) -> tuple[int, str]:
    """`hstream jar-free --runner spark …`; executors inherit this test's tag."""
    master = cluster if isinstance(cluster, str) else cluster.url
    tag = os.environ["HSTREAM_TEST_TAG"]
    proc = run_hstream("jar-free", "--runner", "spark", "--master", master,
                       "--spark-conf", f"spark.executorEnv.HSTREAM_TEST_TAG={tag}",
                       "--spark-conf", "spark.ui.enabled=false", *args, cwd=cwd,
                       env={"PYSPARK_PYTHON": sys.executable, **(env or {})}, timeout=TIMEOUT)
    return proc.returncode, proc.stderr


def embedded(*args: str, cwd: Path) -> None:
    proc = run_hstream("jar-free", "--workers", "2", *args, cwd=cwd, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr


def words(d: Path, files: int = 3, lines: int = 400) -> Path:
    d.mkdir()
    for f in range(files):
        (d / f"part{f}.txt").write_text("".join(
            f"w{(i * 7 + f) % 97} w{i % 13} x{f}\n" for i in range(lines)))
    return d


def parts(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("part-*"))}


def test_word_count_equals_the_pipeline_and_the_embedded_runners_part_files(
        spark: StandaloneCluster, tmp_path: Path) -> None:
    inp = words(tmp_path / "in")
    job = ["-input", "in", "-mapper", WC_MAP, "-reducer", WC_REDUCE, "-combiner", WC_REDUCE,
           "-numReduceTasks", "3"]
    status, err = on_spark(spark, *job, "-output", "spark", cwd=tmp_path)
    assert status == 0, err
    assert_same_output(tmp_path / "spark", reference(sorted(inp.iterdir()), WC_MAP, WC_REDUCE,
                                                     tmp_path))
    embedded(*job, "-output", "local", cwd=tmp_path)
    assert parts(tmp_path / "spark") == parts(tmp_path / "local")
    assert len(parts(tmp_path / "spark")) == 3
    assert re.search(r"Map input records=1200\b", err) and "Combine input records" in err, err
    assert "completed successfully" in err and " map 100% reduce 100%" in err
    assert not list(tmp_path.glob(".spark.hstream-*")), "staging left behind"


HADOOP_EXAMPLES = {
    "aggregate": (["-mapper", f"{APPS}/hadoop/stream_aggregate.py", "-reducer", "aggregate"],
                  b"roses are red\nviolets are blue\nbunnies are pink\nroses are red\n"),
    "keyfield-partitioner": (
        ["-D", "stream.map.output.field.separator=.", "-D", "stream.num.map.output.key.fields=4",
         "-D", "map.output.key.field.separator=.",
         "-D", "mapreduce.partition.keypartitioner.options=-k1,2", "-D", "mapreduce.job.reduces=3",
         "-mapper", "/bin/cat", "-reducer", "/bin/cat",
         "-partitioner", "org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner"], KEYS),
    "map-only": (["-D", "mapreduce.job.maps=2", "-mapper", "/bin/cat", "-reducer", "NONE"],
                 b"caf\xc3\xa9\r\n\xff\xfe not utf-8\n" * 40_000 + b"no newline at the end"),
}


@pytest.mark.parametrize("name", sorted(HADOOP_EXAMPLES))
def test_hadoop_docs_examples_write_the_embedded_runners_part_files(
        spark: StandaloneCluster, tmp_path: Path, name: str) -> None:
    args, data = HADOOP_EXAMPLES[name]
    (tmp_path / "in.txt").write_bytes(data)
    status, err = on_spark(spark, "-input", "in.txt", "-output", "spark", *args, cwd=tmp_path)
    assert status == 0, err
    embedded("-input", "in.txt", "-output", "local", *args, cwd=tmp_path)
    got = parts(tmp_path / "spark")
    assert got == parts(tmp_path / "local")
    assert (tmp_path / "spark" / "_SUCCESS").exists()
    if name == "map-only":  # every byte through, each line a key with an empty value
        assert len(got) == 2
        assert b"".join(got.values()) == b"".join(line + b"\t\n" for line in data.split(b"\n"))


def test_a_failing_mapper_gives_hstreams_message_with_the_tasks_stderr(
        spark: StandaloneCluster, tmp_path: Path) -> None:
    words(tmp_path / "in", files=1, lines=20)
    status, err = on_spark(spark, "-input", "in", "-output", "out", "-mapper", f"{CRASH} map",
                           "-reducer", f"{CRASH} reduce", "-D", "mapreduce.map.maxattempts=2",
                           "-cmdenv", "FAIL_ALWAYS=bad record at offset 42", cwd=tmp_path)
    assert status == 1, err
    assert re.search(r"hstream: Job job_\d+_\d+ failed: task task_\d+_\d+_m_\d{6} \(map \d\) "
                     r"failed 2 times: mapper subprocess failed with code 3", err), err
    assert "command: crash_wc.py map" in err and "exit status: 3" in err
    assert "fatal: bad record at offset 42" in err and "reading record 1" in err
    assert "Traceback" not in err and "Py4J" not in err, err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.hstream-*"))


def test_a_worker_killed_mid_job_costs_nothing_but_time(spark: StandaloneCluster,
                                                         tmp_path: Path) -> None:
    """kill -9 of a Worker and its executor while maps run: Spark runs the lost tasks (and
    any lost map output) again on the other Worker, and the output is still right."""
    inp = words(tmp_path / "in", files=4, lines=300)
    marks = tmp_path / "marks"
    marks.mkdir()
    victim = spark.worker_daemons[1]
    assert victim is not None
    result: list[tuple[int, str]] = []
    job = threading.Thread(target=lambda: result.append(on_spark(
        spark, "-input", "in", "-output", "out", "-mapper", f"{CRASH} map",
        "-reducer", f"{CRASH} reduce", "-numReduceTasks", "2", "-D", "mapreduce.job.maps=4",
        cwd=tmp_path, env={"MARKERS": str(marks), "DELAY_MAX": "3"})))
    job.start()
    try:
        wait_for(lambda: _runs_a_task(victim.proc.pid), TIMEOUT, "a task on the second worker")
        spark.kill_worker(1)
    finally:
        job.join(TIMEOUT + 30)
        spark.add_worker()
    status, err = result[0]
    assert status == 0, err
    assert_same_output(tmp_path / "out", reference(sorted(inp.iterdir()), f"{CRASH} map",
                                                   f"{CRASH} reduce", tmp_path))


def _runs_a_task(pid: int) -> bool:
    """Whether a user's command (crash_wc.py) runs under the Worker `pid`."""
    try:
        tree = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for p in tree:
        try:
            if any("crash_wc.py" in a for a in p.cmdline()):
                return True
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return False


def test_hadoop_filesystem_uris_and_a_local_master(tmp_path: Path) -> None:
    """file:// paths go through Spark's Hadoop filesystem layer (as hdfs:// and s3a:// would):
    every byte survives, part files get Hadoop's names, and local[N] masters work."""
    require(_have_spark(), "needs Java 17 and pyspark (pip install -e '.[spark]')")
    data = b"a b\r\n\xff\xfe a\nb c\n" * 500
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.txt").write_bytes(data)
    (tmp_path / "in" / "_hidden").write_bytes(b"never read\n")
    out = tmp_path / "out"
    status, err = on_spark("local[2]", "-input", f"file://{tmp_path}/in", "-output",
                           f"file://{out}", "-mapper", "/bin/cat", "-reducer", "/bin/cat",
                           "-numReduceTasks", "2", "-D", "mapreduce.output.fileoutputformat."
                           "compress=true", cwd=tmp_path)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000.gz",
                                                     "part-00001.gz"]
    got = b"".join(gzip.decompress(p.read_bytes()) for p in sorted(out.glob("part-*")))
    assert pairs(got) == pairs(reference([tmp_path / "in" / "x.txt"], "cat", "cat", tmp_path))
    status, err = on_spark("local[2]", "-input", f"file://{tmp_path}/in", "-output",
                           f"file://{out}", cwd=tmp_path)
    assert status == 4 and "output directory already exists" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"], "nothing made locally"


def test_without_pyspark_the_runner_says_how_to_install_it(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "pyspark"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no pyspark here')\n")
    (tmp_path / "in.txt").write_text("a\n")
    path = f"{fake.parent}:{os.environ['PYTHONPATH']}"
    proc = run_hstream("jar-free", "--runner", "spark", "-input", "in.txt", "-output", "out",
                       cwd=tmp_path, env={"PYTHONPATH": path})
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "hstream: --runner spark needs pyspark: pip install 'hstream[spark]'"]
    proc = run_hstream("jar-free", "--master", "local[2]", "-input", "in.txt", "-output", "out",
                       cwd=tmp_path)
    assert proc.returncode == 3 and "--master and --spark-conf need --runner spark" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_runner_words_and_the_spark_settings_they_make() -> None:
    opts, rest = extract(["-input", "in", "--runner=spark", "--master", "local[4]",
                          "--spark-conf", "spark.executor.memory=2g", "-output", "out"])
    assert rest == ["-input", "in", "-output", "out"]
    spec = JobSpec(name="wc", inputs=["in"], output="out", mapper="cat", reducer="cat",
                   conf={"mapreduce.map.maxattempts": "2", "mapreduce.map.speculative": "true"})
    conf = spark_conf(spec, opts)
    assert conf["spark.master"] == "local[4,2]", "local masters retry like Hadoop's attempts"
    assert conf["spark.task.maxFailures"] == "2" and conf["spark.speculation"] == "true"
    assert conf["spark.executor.memory"] == "2g" and conf["spark.app.name"] == "wc"
    opts, _ = extract(["--runner", "spark", "--master", "spark://h:7077"])
    assert spark_conf(JobSpec("j", [], "o", "cat", None), opts)["spark.master"] == "spark://h:7077"
    for bad in (["--runner", "flink"], ["--runner"], ["--spark-conf", "novalue"]):
        with pytest.raises(ConfigError):
            extract(bad)


def test_executors_import_hstream_from_the_zips_bytecode(tmp_path: Path) -> None:
    """The zip executors import hstream from carries each module's bytecode beside its source,
    and an interpreter that finds only the zip (no site, no checkout) loads the task code
    from it instead of compiling every module again."""
    path = _zip_hstream(str(tmp_path))
    probe = ("import hstream.runners.sparktask as t, hstream.task.maptask as m; "
             "print(m.__file__); print(t.__file__)")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": path}
    out = subprocess.run([sys.executable, "-S", "-c", probe], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert out == [f"{path}/hstream/task/maptask.pyc", f"{path}/hstream/runners/sparktask.pyc"]
