"""Data through the manager (`shared_fs = no`): tasks read splits, fetch shipped files and
upload part files over authenticated connections, and may touch nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import APPS, assert_same_output, reference

from hstream import protocol
from hstream.cluster.client import Client
from hstream.cluster.localcluster import LocalCluster
from hstream.hadoop.streaming import parse
from hstream.job import Split, to_dict


def corpus(path: Path, lines: int) -> Path:
    path.write_text("".join(f"w{i % 97} x{i % 13} common\n" for i in range(lines)))
    return path


def test_job_runs_with_all_data_through_the_manager(tmp_path: Path) -> None:
    data = corpus(tmp_path / "in.txt", 30000)
    out = tmp_path / "out"
    mapper, reducer = APPS / "wc_map.py", APPS / "wc_reduce.py"
    opts = parse(["-input", str(data), "-output", str(out), "-mapper", str(mapper),
                  "-reducer", str(reducer), "-numReduceTasks", "2", "-D", "mapreduce.job.maps=3"],
                 cwd=str(tmp_path))
    with LocalCluster(workers=2, shared_fs=False) as cluster:
        outcome = Client("127.0.0.1", cluster.port, cluster.secret).run(
            opts.spec, open(os.devnull, "w"))
        log = Path(cluster.rundir, "manager.log").read_text()
    assert outcome.state == "succeeded", outcome.message
    assert_same_output(out, reference([data], str(mapper), str(reducer), tmp_path))
    launched = outcome.counters["Job Counters"]
    assert log.count("relay read_split") == launched["Launched map tasks"]
    assert log.count("relay put_output") == launched["Launched reduce tasks"] == 2
    assert "relay get_file" in log  # the mapper and reducer scripts were shipped through it


def test_relay_serves_only_what_an_active_job_declared(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("private\n")
    with LocalCluster(workers=1, shared_fs=False) as cluster:
        for request in (
            {"op": "read_split", "job_id": "job_1_0001",
             "split": to_dict(Split(str(secret_file), 0, 8))},
            {"op": "get_file", "job_id": "job_1_0001", "name": "x"},
            {"op": "put_output", "job_id": "job_1_0001", "attempt_id": "../../etc", "name": "x"},
        ):
            chan = protocol.connect("127.0.0.1", cluster.port, cluster.secret)
            try:
                chan.send(request)
                with pytest.raises((EOFError, OSError, protocol.ProtocolError)):
                    chan.recv()
            finally:
                chan.close()
        assert "no active job" in Path(cluster.rundir, "manager.log").read_text()
