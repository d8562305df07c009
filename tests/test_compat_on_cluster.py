"""The Hadoop conformance suite again, on a cluster brought up over SSH instead of the
embedded local one: Hadoop's documented examples must give Hadoop's output either way."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, require, run_hstream
from testbed import LoopbackHost, have_sshd, write_ini


@pytest.fixture(scope="module")
def cluster_ini(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    why = have_sshd()
    require(why is None, why or "")
    tmp = tmp_path_factory.mktemp("compat-cluster")
    with LoopbackHost(tmp / "sshd") as host:
        host.keys.known_hosts.write_text("")
        host.keys.trust("127.0.0.1", host.sshd.port)
        ini = write_ini(tmp / "cluster.ini", manager="127.0.0.1", keys=host.keys,
                        python=sys.executable, hosts=[f"root@127.0.0.1:{host.sshd.port}"],
                        workdir=tmp / "work", slots=2)
        up = run_hstream("cluster", "up", env={"HSTREAM_CONFIG": str(ini)}, cwd=tmp)
        try:
            assert up.returncode == 0, up.stdout + up.stderr
            yield ini
        finally:
            down = run_hstream("cluster", "down", env={"HSTREAM_CONFIG": str(ini)}, cwd=tmp)
            assert down.returncode == 0, down.stdout + down.stderr


def test_documented_examples_on_an_ssh_cluster(cluster_ini: Path) -> None:
    env = {**os.environ, "HSTREAM_TEST_CONFIG": str(cluster_ini)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_compat_examples.py")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    status = run_hstream("job", "list", env={"HSTREAM_CONFIG": str(cluster_ini)})
    assert status.returncode == 0, status.stderr
    assert "succeeded" in status.stdout  # the jobs really ran on the cluster
