"""What a running job shows: each attempt's progress and its command's `reporter:status:`."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from conftest import wait_for

from hstream.cluster.client import Client, Outcome
from hstream.cluster.localcluster import LocalCluster
from hstream.hadoop.streaming import parse


def test_reporter_status_appears_in_job_status(tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_text("a\nb\n")
    release = tmp_path / "release"
    mapper = tmp_path / "mapper.sh"
    mapper.write_text("#!/bin/sh\necho 'reporter:status:halfway there' >&2\n"
                      f"while [ ! -e {release} ]; do sleep 0.05; done\ncat\n")
    mapper.chmod(0o755)
    opts = parse(["-input", str(data), "-output", str(tmp_path / "out"), "-mapper", str(mapper),
                  "-reducer", "cat"], cwd=str(tmp_path))
    with LocalCluster(workers=1) as cluster:
        client = Client("127.0.0.1", cluster.port, cluster.secret)
        outcome: list[Outcome] = []
        runner = threading.Thread(
            target=lambda: outcome.append(client.run(opts.spec, io.StringIO())))
        runner.start()
        try:
            def running() -> list[dict[str, object]]:
                jobs = client.status()["jobs"]
                return [a for j in jobs for a in j.get("running", [])
                        if a["status"] == "halfway there"]
            shown = wait_for(running, 30, "the status message in the manager's job status")
            assert str(shown[0]["attempt"]).startswith("attempt_")  # type: ignore[index]
        finally:
            release.touch()
            runner.join(60)
    assert outcome and outcome[0].state == "succeeded"
