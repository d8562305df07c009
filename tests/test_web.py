"""The status pages: served by the manager while a job runs, by `hstream ui` for the history,
behind a token, with every task's stderr escaped, and drawn (timeline and rates) in a real
headless Chromium, whose screenshot is kept in tests/artifacts/ (or $HSTREAM_ARTIFACTS).
"""

from __future__ import annotations

import http.client
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from conftest import ROOT, assert_same_output, reference, require, run_hstream, wait_for
from test_history import MAPPER, REDUCER, SLOW_MAP, job_id_of, script, write_words

from hstream.cluster import history
from hstream.cluster.client import Client, Outcome
from hstream.cluster.history import AttemptRecord, JobRecord
from hstream.cluster.localcluster import LocalCluster
from hstream.hadoop import streaming
from hstream.web import auth
from hstream.web.server import WebServer
from hstream.web.sources import DiskSource

ARTIFACTS = Path(os.environ.get("HSTREAM_ARTIFACTS") or ROOT / "tests" / "artifacts")

FLAKY = """#!/bin/sh
case "$mapreduce_task_attempt_id" in
  *_m_000000_0) echo '<script>alert(1)</script><img src=x onerror=alert(2)> first try fails' >&2
                exit 7;;
esac
exec {slow}
"""


class Page:
    """A site behind a token: GET with the cookie (after the token) or without."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.token = parts.query.removeprefix("token=")
        self.cookie = f"{auth.cookie_name(self.port)}={self.token}"

    def get(self, path: str, cookie: str | None = None, method: str = "GET"
            ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, headers={"Cookie": cookie} if cookie else {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read().decode()
        finally:
            conn.close()

    def html(self, path: str) -> str:
        status, _, body = self.get(path, self.cookie)
        assert status == 200, (path, status, body[:300])
        return body


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A job with a failed attempt (its stderr has markup in it) and a few seconds of maps."""
    tmp = tmp_path_factory.mktemp("web")
    inputs = write_words(tmp / "in", files=3, lines=6000)
    slow = script(tmp / "slow_map.py", SLOW_MAP)
    mapper = script(tmp / "flaky.sh", FLAKY.format(slow=slow))
    proc = run_hstream("jar-free", "--workers", "2", "-numReduceTasks", "2", "-input",
                       str(inputs), "-output", str(tmp / "out"), "-mapper", mapper,
                       "-reducer", REDUCER, env={"HSTREAM_HOME": str(tmp / "home")}, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    assert_same_output(tmp / "out", reference(sorted(inputs.iterdir()), slow, REDUCER, tmp))
    return tmp, job_id_of(proc)


@pytest.fixture(scope="module")
def ui(job: tuple[Path, str]) -> Iterator[Page]:
    """`hstream ui` serving the history of the job above."""
    tmp = job[0]
    env = {**os.environ, "HSTREAM_HOME": str(tmp / "home"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "hstream", "ui"], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = ""
        while not line.startswith("Open: "):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
        yield Page(line.split()[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def _paths(tmp: Path, job_id: str) -> list[str]:
    record = history.load_job(str(tmp / "home" / "history"), job_id)
    assert record is not None
    attempt = next(a for a in record.attempts.values() if a.outcome == "failed")
    return ["/", "/workers", f"/job/{job_id}", f"/job/{job_id}/attempt/{attempt.id}",
            f"/job/{job_id}/attempt/{attempt.id}/stderr"]


def test_every_page_needs_the_token(job: tuple[Path, str], ui: Page) -> None:
    tmp, job_id = job
    for path in _paths(tmp, job_id):
        assert ui.get(path)[0] == 401, path
        assert ui.get(f"{path}?token=0123456789abcdef0123456789abcdef")[0] == 403, path
        assert ui.get(path, f"{auth.cookie_name(ui.port)}=nope")[0] == 403, path
        status, headers, _ = ui.get(f"{path}?token={ui.token}")
        assert status == 303 and headers["Location"] == path, (path, status)
        cookie = headers["Set-Cookie"]
        assert cookie.startswith(ui.cookie + ";") and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert ui.get(path, ui.cookie)[0] == 200, path
    assert ui.get("/", ui.cookie, method="POST")[0] in (405, 501)  # read-only
    secret = (tmp / "home" / "ui.secret").read_text().strip()
    assert (tmp / "home" / "ui.secret").stat().st_mode & 0o777 == 0o600
    assert ui.token != secret and ui.token not in secret and secret not in ui.token
    assert ui.token == auth.token(bytes.fromhex(secret))


def test_job_page_escapes_stderr_and_shows_failures_inline(job: tuple[Path, str],
                                                           ui: Page) -> None:
    tmp, job_id = job
    status, headers, page = ui.get(f"/job/{job_id}", ui.cookie)
    assert status == 200 and "script-src" not in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "<script" not in page.lower() and "<img" not in page.lower()
    inline = re.search(r'<pre class="stderr">(.*?)</pre>', page, re.S)
    assert inline and "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x" in inline.group(1)
    assert 'id="timeline"' in page and 'id="rates"' in page and "Map tasks" in page
    assert 'http-equiv="refresh"' not in page  # the job has ended
    path = _paths(tmp, job_id)[4]
    status, headers, raw = ui.get(path, ui.cookie)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert raw == "<script>alert(1)</script><img src=x onerror=alert(2)> first try fails\n"
    jobs = ui.html("/")
    assert job_id in jobs and "succeeded" in jobs
    assert "No cluster here" in ui.html("/workers")


def test_chromium_draws_the_timeline_and_the_rates(job: tuple[Path, str], ui: Page,
                                                   tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require(chromium is not None, "needs chromium (apt-get install chromium chromium-driver)")
    assert chromium is not None
    url = f"http://{ui.host}:{ui.port}/job/{job[1]}?token={ui.token}"
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                         timeout=180).stdout
    timeline = re.search(r'<svg id="timeline".*?</svg>', dom, re.S)
    rates = re.search(r'<svg id="rates".*?</svg>', dom, re.S)
    assert timeline and rates, dom[:2000]
    bars = re.findall(r'<path class="bar (\w+)[^"]*" d="(M[^"]+)"', timeline.group(0))
    assert {"map", "reduce", "failed"} <= {kind for kind, _ in bars}, bars[:5]
    lines = dict(re.findall(r'<path class="series (\w+)"[^>]* d="(M[^"]+)"', rates.group(0)))
    assert set(lines) == {"input", "shuffle", "output"}
    assert all(len(re.findall(r"[VH]", d)) > 4 for d in lines.values()), lines
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "job-page.png"
    shot.unlink(missing_ok=True)
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,2000", url],
                   capture_output=True, timeout=180)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000


# -- the manager's own pages, live ---------------------------------------------------------


BLOCKING = """#!/bin/sh
while [ ! -e {release} ]; do sleep 0.05; done
exec {mapper}
"""


def test_the_manager_serves_live_pages_while_the_job_runs(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HSTREAM_HOME", str(tmp_path / "home"))
    inputs = write_words(tmp_path / "in", files=2, lines=30)
    release = tmp_path / "release"
    mapper = script(tmp_path / "block.sh", BLOCKING.format(release=release, mapper=MAPPER))
    spec = streaming.parse(["-input", str(inputs), "-output", str(tmp_path / "out"),
                            "-mapper", mapper, "-reducer", REDUCER], cwd=str(tmp_path)).spec
    outcome: list[Outcome] = []
    with LocalCluster(workers=2) as cluster:
        manager = psutil.Process(cluster.procs[0].pid)
        listening = {c.laddr for c in manager.net_connections("tcp") if c.status == "LISTEN"}
        assert ("127.0.0.1", cluster.web_port) in listening
        site = Page(f"http://127.0.0.1:{cluster.web_port}/?token={auth.token(cluster.secret)}")
        client = Client("127.0.0.1", cluster.port, cluster.secret)
        runner = threading.Thread(target=lambda: outcome.append(client.run(spec, io.StringIO())))
        runner.start()
        try:
            wait_for(lambda: client.job_id and 'class="bar map running"' in site.html(
                f"/job/{client.job_id}"), 60, "running attempts on the job page")
            page = site.html(f"/job/{client.job_id}")
            assert 'http-equiv="refresh"' in page and "running</span>" in page
            workers = site.html("/workers")
            assert workers.count("alive</span>") == 2 and "/attempt/attempt_" in workers
            assert client.job_id in site.html("/")
        finally:
            release.touch()
            runner.join(120)
        assert outcome and outcome[0].state == "succeeded"
        page = wait_for(lambda: (p := site.html(f"/job/{client.job_id}")) and
                        "succeeded</span></h1>" in p and p, 30, "the finished job's page")
        assert 'http-equiv="refresh"' not in str(page)


# -- a cluster over SSH prints its pages' URL ----------------------------------------------


def test_cluster_up_prints_the_pages_url_and_history_outlives_the_cluster(
        tmp_path: Path) -> None:
    from testbed import LoopbackHost, have_sshd, write_ini
    why = have_sshd()
    require(why is None, why or "")
    with LoopbackHost(tmp_path / "sshd") as host:
        host.keys.known_hosts.write_text("")
        host.keys.trust("127.0.0.1", host.sshd.port)
        ini = write_ini(tmp_path / "cluster.ini", manager="127.0.0.1", keys=host.keys,
                        python=sys.executable, hosts=[f"root@127.0.0.1:{host.sshd.port}"],
                        workdir=tmp_path / "work")
        env = {"HSTREAM_CONFIG": str(ini), "HSTREAM_HOME": str(tmp_path / "home")}

        def hs(*args: str) -> subprocess.CompletedProcess[str]:
            return run_hstream(*args, env=env, cwd=tmp_path, timeout=90)
        try:
            up = hs("cluster", "up")
            assert up.returncode == 0, up.stdout + up.stderr
            url = re.search(r"^pages: (http://127\.0\.0\.1:\d+/\?token=[0-9a-f]{32})$",
                            up.stdout, re.M)
            assert url, up.stdout
            site = Page(url.group(1))
            inputs = write_words(tmp_path / "in", files=2, lines=50)
            ran = hs("jar-free", "-input", str(inputs), "-output", str(tmp_path / "out"),
                     "-mapper", MAPPER, "-reducer", REDUCER)
            assert ran.returncode == 0, ran.stderr
            job_id = job_id_of(ran)
            assert f"The url to track the job: {url.group(1).split('?')[0]}job/{job_id}?token=" \
                in ran.stderr
            assert job_id in site.html("/") and "alive</span>" in site.html("/workers")
        finally:
            down = hs("cluster", "down")
        assert down.returncode == 0, down.stdout + down.stderr
        status = hs("job", "status", job_id)  # no cluster now: from its history
        assert status.returncode == 0 and "state: succeeded" in status.stdout, status.stderr
        assert str(tmp_path / "work" / "manager" / "history") in status.stdout
        assert job_id in hs("job", "history").stdout


# -- a big job's page ------------------------------------------------------------------------


def synthetic(job_id: str, attempts: int, workers: int = 20, slots: int = 4) -> JobRecord:
    """A finished job of `attempts` attempts (every 20th failed and retried), 4 s each."""
    t0 = 1_700_000_000.0
    maps = attempts * 4 // 5
    record = JobRecord(job_id, "synthetic", t0, maps, attempts - maps, "/out", "succeeded",
                       spec={"mapper": "map.py", "reducer": "reduce.py", "inputs": ["/in"],
                             "conf": {"mapreduce.job.reduces": "1000"}})
    lanes = workers * slots
    for n in range(attempts):
        kind = "map" if n < maps else "reduce"
        index = n if kind == "map" else n - maps
        start = t0 + (n // lanes) * 4.0
        worker = f"w{n % workers:02d}"
        aid = f"attempt_1_0001_{kind[0]}_{index:06d}_0"
        a = AttemptRecord(aid, aid.rsplit("_", 1)[0].replace("attempt", "task"), kind, index, 0,
                          worker, f"10.0.0.{n % workers}", start, start + 3.9,
                          "failed" if n % 20 == 19 else "succeeded", read=64 << 20,
                          counters={"Map-Reduce Framework": {"Map input records": 1000}})
        if a.outcome == "failed":
            a.error, a.exit_status, a.stderr = "mapper subprocess failed with code 1", 1, 100
        record.attempts[aid] = a
        record.rates.add("input", start - t0, start + 3.9 - t0, 64 << 20)
    record.finished = t0 + (attempts // lanes + 1) * 4.0
    return record


def test_a_job_page_of_5000_attempts(tmp_path: Path) -> None:
    """Renders whole; the time it takes is printed (-s), not asserted."""
    root = tmp_path / "history"
    record = synthetic("job_1_0001", 5000)
    d = root / record.id
    (d / "stderr").mkdir(parents=True)
    history._write_json(str(d / "record.json"), history.record_to_json(record))
    history._write_json(str(d / "summary.json"), vars(record.summary()))
    size = (d / "record.json").stat().st_size
    server = WebServer("127.0.0.1", 0, "t" * 32, DiskSource([str(root)])).start()
    try:
        site = Page(f"http://127.0.0.1:{server.port}/?token={'t' * 32}")
        times = []
        for _ in range(3):
            started = time.perf_counter()
            page = site.html(f"/job/{record.id}")
            times.append(time.perf_counter() - started)
    finally:
        server.stop()
    timeline = re.search(r'<svg id="timeline".*?</svg>', page, re.S)
    assert timeline and timeline.group(0).count('<path class="bar ') == 5000
    assert page.count("<tr>") > 5000
    print(f"\n5000 attempts: record.json {size / 1e6:.2f} MB ({size / 5000:.0f} B/attempt), "
          f"page {len(page) / 1e6:.2f} MB, load {min(times) * 1000:.0f}-"
          f"{max(times) * 1000:.0f} ms")
