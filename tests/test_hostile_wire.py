"""A bad message, a flood or a hostile task never takes a daemon down (issue 9, items 2-5, 12, 14).

Real managers and workers on loopback: authenticated but malformed messages are refused one
by one while a real job runs (a bounded fuzz); accept loops outlast running out of file
descriptors and slow handshakes; a task's oversized report fails its attempt, not its
worker; a FIFO input is refused by name; concurrent jobs never share an id and the loser of
an output race exits 4; unauthenticated garbage is summarised in the log, not echoed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import APPS, assert_same_output, reference, run_hstream, wait_for

from hstream import errors, job, messages, protocol
from hstream.cluster.client import Client, Outcome
from hstream.cluster.localcluster import LocalCluster
from hstream.hadoop import streaming
from hstream.task import reporter

WC_MAP, WC_REDUCE = str(APPS / "wc_map.py"), str(APPS / "wc_reduce.py")
FUZZ_MANAGER, FUZZ_WORKER, FUZZ_SHUFFLE = 1500, 750, 750  # 3,000 messages in all
FLOOD = 70
NOFILE = 64


# -- helpers --------------------------------------------------------------------------


def ask(port: int, secret: bytes, msg: dict[str, Any],
        timeout: float = 15) -> dict[str, Any] | None:
    """Send one message on a fresh connection; its answer, or None if the peer hung up."""
    chan = protocol.connect("127.0.0.1", port, secret, timeout=timeout)
    try:
        chan.sock.settimeout(timeout)
        chan.send(msg)
        return chan.recv()
    except (EOFError, ConnectionError):
        return None
    finally:
        chan.close()


def status(port: int, secret: bytes, timeout: float = 5) -> dict[str, Any] | None:
    try:
        return ask(port, secret, {"op": "status"}, timeout)
    except (OSError, protocol.ProtocolError):
        return None


def corpus(path: Path, lines: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(" ".join(f"w{rng.randrange(300)}" for _ in range(8)) + "\n"
                            for _ in range(lines)))
    return path


def wordcount(inputs: Path, out: Path, *extra: str) -> Any:
    return streaming.parse(["-input", str(inputs), "-output", str(out), "-mapper", WC_MAP,
                            "-reducer", WC_REDUCE, *extra]).spec


def run_job(cluster: LocalCluster, spec: Any, timeout: float = 180) -> Outcome:
    """Submit and wait, on a thread: a job that never ends fails the test at the deadline."""
    outcome: list[Outcome] = []
    client = Client("127.0.0.1", cluster.port, cluster.secret)
    thread = threading.Thread(target=lambda: outcome.append(client.run(spec, io.StringIO())),
                              daemon=True)
    thread.start()
    thread.join(timeout)
    assert outcome, f"the job did not end within {timeout} s"
    return outcome[0]


def log_of(cluster: LocalCluster, name: str = "manager") -> str:
    path = Path(cluster.rundir) / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def listening_port(pid: int) -> int:
    """The TCP port a worker serves map output on (its only listening socket)."""
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return next(c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN)


def udp_port(pid: int) -> int:
    return next(c.laddr.port for c in psutil.Process(pid).net_connections(kind="udp"))


# -- item 2: every message is checked; none stops a daemon -------------------------------


@pytest.mark.parametrize("msg, needle", [
    ({"op": "kill"}, "job_id is missing"),
    ({"op": "submit", "job": {}}, "name is missing"),
    ({"op": "submit", "job": "x"}, "must be an object"),
    ({"op": "kill", "job_id": ["job_1_0001"]}, "must be a string"),
    ({"op": "logs", "job_id": "../../etc"}, "malformed"),
    ({"op": "register", "worker_id": "w", "host": "h", "shuffle_port": "1", "slots": 1},
     "shuffle_port must be an integer"),
    ({"op": "submit", "job": {"name": "n", "inputs": ["/x"], "output": "/y", "mapper": "cat",
                              "reducer": None, "num_reduces": 10 ** 30}}, "at most 100,000"),
    ({"op": "tick"}, "unknown op"),
    ({"op": "worker_conn_lost", "worker_id": "local0"}, "unknown op"),
])
def test_malformed_message_fails_only_its_request(msg: dict[str, Any], needle: str) -> None:
    with LocalCluster(workers=1) as cluster:
        reply = ask(cluster.port, cluster.secret, msg)
        assert reply is not None and reply["op"] == "error" and needle in reply["message"], reply
        assert cluster.procs[0].poll() is None, "the manager died"
        assert status(cluster.port, cluster.secret) is not None
        assert "Traceback" not in log_of(cluster)


def test_unwritable_output_parent_is_one_clear_line(tmp_path: Path) -> None:
    data = corpus(tmp_path / "in.txt", 10)
    proc = run_hstream("jar-free", "-input", str(data), "-output", "/proc/hstream-out",
                       "-mapper", "cat", "--workers", "1", cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("hstream:")]
    assert proc.returncode == errors.OTHER and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and "output directory's parent /proc" in lines[0], proc.stderr


def test_every_message_field_has_a_schema() -> None:
    """A field added to a message dataclass without a schema would be refused or dropped."""
    shapes = {job.JobSpec: messages.JOB_SPEC, job.TaskSpec: messages.TASK_SPEC,
              job.Split: messages.SPLIT, job.ShipFile: messages.SHIP_FILE,
              job.MapOutput: messages.MAP_OUTPUT, job.TaskResult: messages.TASK_RESULT}
    for cls, shape in shapes.items():
        names = {f.name for f in dataclasses.fields(cls)}
        assert names == set(shape), f"{cls.__name__}: {sorted(names ^ set(shape))}"


class Fuzzer:
    """Random messages: known and unknown ops, fields of every type, huge values."""

    def __init__(self, seed: int, tmp: Path) -> None:
        self.rng = random.Random(seed)
        self.tmp = tmp
        tables = (messages.MANAGER, messages.FROM_WORKER, messages.TO_WORKER, messages.SHUFFLE)
        self.fields = sorted({f for t in tables for op in t.values() for f in op.fields})
        self.ops = sorted({op for t in tables for op in t} - {"shutdown"}) + [
            "", "tick", "wake", "heartbeat", "worker_conn_lost", "published", "x" * 5000]

    def message(self, ops: list[str] | None = None) -> dict[str, Any]:
        rng = self.rng
        msg: dict[str, Any] = {"op": rng.choice(ops or self.ops)}
        for name in rng.sample(self.fields, rng.randrange(4)):
            msg[name] = self.value()
        if msg["op"] == "submit" and rng.random() < 0.5:
            msg["job"] = self.job()
        return msg

    def job(self) -> dict[str, Any]:
        """A job that nearly passes: some fields right, one or two broken."""
        rng = self.rng
        spec = {"name": "fuzz", "inputs": [str(self.tmp / f"no-such-{rng.randrange(99)}")],
                "output": str(self.tmp / f"out-{rng.randrange(99)}"), "mapper": "cat",
                "reducer": None, "conf": {}, "files": []}
        for name in rng.sample(sorted(messages.JOB_SPEC), rng.randrange(3)):
            spec[name] = self.value()
        return spec

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        pick = rng.randrange(16)
        if pick < 10:
            return [None, True, -1, 2 ** 63, 10 ** 30, float("nan"), float("inf"), 1.5, "",
                    "../../etc/passwd"][pick]
        if pick == 10:
            return "x" * rng.choice((300, 5000, 200_000))
        if pick == 11:
            return f"job_{rng.randrange(10 ** 13)}_{rng.randrange(10 ** 4):04d}"
        if pick == 12:
            return f"attempt_{rng.randrange(10 ** 13)}_0001_m_{rng.randrange(10 ** 6):06d}_0"
        if pick == 13 and depth < 2:
            if rng.random() < 0.1:
                return list(range(20_000))
            return [self.value(depth + 1) for _ in range(rng.choice((1, 3)))]
        if pick == 14 and depth < 2:
            return {rng.choice(self.fields): self.value(depth + 1) for _ in range(3)}
        return rng.randrange(-10 ** 6, 10 ** 6)


def fuzz_manager(cluster: LocalCluster, fuzz: Fuzzer, count: int) -> int:
    """`count` first messages, each on its own connection; how many were answered."""
    answered = 0
    for _ in range(count):
        reply = ask(cluster.port, cluster.secret, fuzz.message())
        answered += reply is not None
    return answered


def fuzz_worker_path(cluster: LocalCluster, fuzz: Fuzzer, count: int) -> None:
    """Reports from made-up workers: a valid registration, then 50 random reports each."""
    ops = [*messages.FROM_WORKER, "register", "submit", "tick", "heartbeat", "bogus"]
    for n in range(count // 50):
        chan = protocol.connect("127.0.0.1", cluster.port, cluster.secret)
        try:
            chan.sock.settimeout(15)
            reply = chan.request({"op": "register", "worker_id": f"fuzz{n}", "host": "127.0.0.1",
                                  "shuffle_port": 9, "slots": 1})
            assert reply["op"] == "registered", reply
            for _ in range(50):
                chan.send(fuzz.message(ops))
        finally:
            chan.close()


def fuzz_shuffle(port: int, secret: bytes, fuzz: Fuzzer, count: int) -> None:
    """Fetches and garbage on a worker's shuffle server, 50 per connection, each answered."""
    ops = ["fetch"] * 4 + ["run", "bogus", "end"]
    for _ in range(count // 50):
        chan = protocol.connect("127.0.0.1", port, secret)
        try:
            chan.sock.settimeout(15)
            for _ in range(50):
                msg = fuzz.message(ops)
                if msg["op"] == "fetch" and fuzz.rng.random() < 0.5:
                    msg.update(job_id="job_1_0001", attempt_id="attempt_1_0001_m_000000_0",
                               partition=0)
                reply = chan.request(msg)
                assert reply["op"] in ("error", "missing"), reply
        finally:
            chan.close()


def test_fuzz_while_a_job_runs(tmp_path: Path) -> None:
    """3,000 random authenticated messages against a live manager and a live worker's shuffle
    server, while real jobs run: every job's output is right and both daemons still answer."""
    data = corpus(tmp_path / "in.txt", 40_000)
    want = reference([data], WC_MAP, WC_REDUCE, tmp_path)
    fuzz = Fuzzer(9, tmp_path)
    done = threading.Event()
    outcomes: list[tuple[Path, Outcome]] = []

    with LocalCluster(workers=2) as cluster:
        client = Client("127.0.0.1", cluster.port, cluster.secret)

        def jobs() -> None:
            n = 0
            while not done.is_set() or not outcomes:
                out = tmp_path / f"out{n}"
                spec = wordcount(data, out, "-numReduceTasks", "2", "-D", "mapreduce.job.maps=4")
                outcomes.append((out, client.run(spec, out=io.StringIO())))
                n += 1

        runner = threading.Thread(target=jobs, daemon=True)
        runner.start()
        started = time.monotonic()
        shuffle_port = listening_port(cluster.procs[1].pid)
        answered = fuzz_manager(cluster, fuzz, FUZZ_MANAGER)
        fuzz_worker_path(cluster, fuzz, FUZZ_WORKER)
        fuzz_shuffle(shuffle_port, cluster.secret, fuzz, FUZZ_SHUFFLE)
        seconds = time.monotonic() - started
        done.set()
        runner.join(180)
        assert not runner.is_alive(), "the jobs did not finish"
        assert all(p.poll() is None for p in cluster.procs), "a daemon died"
        assert status(cluster.port, cluster.secret) is not None
        assert ask(shuffle_port, cluster.secret, {"op": "fetch"})["op"] == "error"  # type: ignore[index]
        logs = log_of(cluster) + log_of(cluster, "worker0")
    print(f"fuzz: {FUZZ_MANAGER + FUZZ_WORKER + FUZZ_SHUFFLE} messages in {seconds:.1f} s, "
          f"{answered} of {FUZZ_MANAGER} first messages answered, {len(outcomes)} jobs")
    assert answered > FUZZ_MANAGER * 0.8  # the rest are relay requests, refused by hanging up
    assert "Traceback" not in logs
    for out, outcome in outcomes:
        assert outcome.state == "succeeded", outcome.message
        assert_same_output(out, want)


class FakeManager:
    """A manager that says whatever a test tells it to, to one real worker."""

    def __init__(self, tmp: Path) -> None:
        self.secret = protocol.new_secret()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.secret_file = tmp / "secret"
        protocol.write_secret(str(self.secret_file), self.secret)
        self.tmp = tmp

    def start_worker(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "hstream.cluster.worker", "--manager",
             f"127.0.0.1:{self.sock.getsockname()[1]}", "--secret-file", str(self.secret_file),
             "--workdir", str(self.tmp / "work"), "--worker-id", "w0", "--reconnect", "0",
             "--log-file", str(self.tmp / "worker.log")], stdin=subprocess.DEVNULL)

    def accept(self) -> protocol.Channel:
        self.sock.settimeout(30)
        conn, addr = self.sock.accept()
        chan = protocol.server_handshake(conn, self.secret, f"{addr[0]}:{addr[1]}")
        chan.sock.settimeout(30)
        assert chan.recv()["op"] == "register"
        chan.send({"op": "registered", "heartbeat_interval": 1.0, "heartbeat_port": 9,
                   "session": "s", "manager_timeout": None})
        return chan


def test_worker_outlives_malformed_manager_messages(tmp_path: Path) -> None:
    fake = FakeManager(tmp_path)
    worker = fake.start_worker()
    try:
        chan = fake.accept()
        fuzz = Fuzzer(3, tmp_path)
        bad = [{"op": "run", "spec": {}}, {"op": "run", "spec": "x"}, {"op": "kill"},
               {"op": "job_done", "job_id": "../.."}, {"op": "bogus"}]
        bad += [fuzz.message([*messages.TO_WORKER, "bogus"]) for _ in range(200)]
        for msg in bad:
            if msg["op"] != "shutdown":
                chan.send(msg)
        time.sleep(0.5)  # let it read them all before asking it to leave
        assert worker.poll() is None, "the worker died"
        chan.send({"op": "shutdown"})
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    log = (tmp_path / "worker.log").read_text()
    assert "refused a message from the manager" in log and "Traceback" not in log


# -- item 3: accept loops outlast fd exhaustion and slow handshakes -------------------------

LIMITED = ("import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({n}, {n})); "
           "from hstream.cli.main import main; sys.argv[0] = 'hstream'; main()")


@pytest.fixture
def limited_manager(tmp_path: Path) -> Iterator[tuple[int, bytes, Path]]:
    """A manager whose RLIMIT_NOFILE is 64; (port, secret, log)."""
    secret = protocol.new_secret()
    protocol.write_secret(str(tmp_path / "secret"), secret)
    log = tmp_path / "manager.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", LIMITED.format(n=NOFILE), "manager", "--host", "127.0.0.1",
         "--port", "0", "--heartbeat-port", "0", "--secret-file", str(tmp_path / "secret"),
         "--log-file", str(log)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = int(json.loads(proc.stdout.readline())["port"])
        yield port, secret, log
        ask(port, secret, {"op": "shutdown"})
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def hold_authenticated(port: int, secret: bytes, n: int) -> list[protocol.Channel]:
    """Up to `n` authenticated connections that never say anything (in parallel: those past
    the server's last file descriptor wait in its backlog until they time out)."""
    held: list[protocol.Channel] = []

    def one() -> None:
        try:
            held.append(protocol.connect("127.0.0.1", port, secret, timeout=5))
        except (OSError, protocol.ProtocolError):
            pass

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return held


def test_manager_accept_loop_outlives_running_out_of_descriptors(
        limited_manager: tuple[int, bytes, Path]) -> None:
    port, secret, log = limited_manager
    held = hold_authenticated(port, secret, FLOOD)
    try:
        wait_for(lambda: "out of file descriptors" in log.read_text(), 20,
                 "the manager to log that it ran out of file descriptors")
    finally:
        for chan in held:
            chan.close()
    wait_for(lambda: status(port, secret), 30, "status to answer after the flood")
    text = log.read_text()
    assert 1 <= text.count("out of file descriptors") <= 3, text[-3000:]
    assert "accepting connections again" in text


def test_idle_unauthenticated_flood_is_cut_off(limited_manager: tuple[int, bytes, Path]) -> None:
    """70 connections that never start their handshake, held open by their sender: the
    excess is closed at once and the rest at the handshake deadline, so status answers again
    within seconds, descriptors to spare, while the flood still holds its sockets."""
    port, secret, log = limited_manager
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(FLOOD)]
    try:
        wait_for(lambda: status(port, secret), protocol.HANDSHAKE_DEADLINE + 15,
                 "status to answer while the idle connections are held")
    finally:
        for s in idle:
            s.close()
    text = log.read_text()
    assert "too many connections still in their handshake" in text
    assert "out of file descriptors" not in text


def test_a_trickling_handshake_is_cut_off(limited_manager: tuple[int, bytes, Path]) -> None:
    """A peer that sends its handshake a byte at a time still has only the deadline."""
    port, _, _ = limited_manager
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    try:
        sock.settimeout(1)
        closed = False
        while time.monotonic() - started < 15 and not closed:
            try:
                sock.sendall(b"H")
                closed = sock.recv(4096) == b"" if _readable(sock) else False
            except OSError:
                closed = True
            time.sleep(0.3)
    finally:
        sock.close()
    assert closed, "a trickling handshake was still open after 15 s"
    assert time.monotonic() - started < protocol.HANDSHAKE_DEADLINE + 5


def _readable(sock: socket.socket) -> bool:
    import select
    return bool(select.select([sock], [], [], 0)[0])


def test_shuffle_server_outlives_running_out_of_descriptors(tmp_path: Path) -> None:
    with LocalCluster(workers=0) as cluster:
        protocol.write_secret(str(tmp_path / "secret"), cluster.secret)
        worker = subprocess.Popen(
            [sys.executable, "-c", LIMITED.format(n=NOFILE).replace(
                "from hstream.cli.main import main; sys.argv[0] = 'hstream'; main()",
                "from hstream.cluster.worker import main; sys.exit(main(sys.argv[1:]))"),
             "--manager", f"127.0.0.1:{cluster.port}", "--secret-file",
             str(tmp_path / "secret"), "--workdir", str(tmp_path / "work"),
             "--worker-id", "limited", "--reconnect", "0", "--log-file",
             str(tmp_path / "worker.log")], stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: cluster.status()["workers"], 30, "the worker to register")
            port = listening_port(worker.pid)
            held = hold_authenticated(port, cluster.secret, FLOOD)
            try:
                wait_for(lambda: "out of file descriptors" in (tmp_path / "worker.log").read_text(),
                         20, "the worker to log that it ran out of file descriptors")
            finally:
                for chan in held:
                    chan.close()

            def fetch_answered() -> bool:
                try:
                    return ask(port, cluster.secret, {"op": "fetch"}, timeout=5) is not None
                except (OSError, protocol.ProtocolError):
                    return False

            wait_for(fetch_answered, 30, "the shuffle server to answer after the flood")
            assert worker.poll() is None
        finally:
            cluster.stop()
            worker.wait(30)


# -- item 4: a task's reports are bounded; an oversized one fails its attempt ----------------


def test_huge_stderr_line_fails_the_attempt_not_the_worker(tmp_path: Path) -> None:
    """A mapper writing one 70 MB stderr line and exiting 1: the job fails after maxattempts
    with a clear message; no worker is ever dropped."""
    mapper = tmp_path / "shout.py"
    mapper.write_text("#!/usr/bin/env python3\nimport sys\nsys.stdin.read()\n"
                      "for _ in range(70):\n    sys.stderr.buffer.write(b'x' * (1 << 20))\n"
                      "sys.exit(1)\n")
    mapper.chmod(0o755)
    data = corpus(tmp_path / "in.txt", 100)
    spec = streaming.parse(["-input", str(data), "-output", str(tmp_path / "out"), "-mapper",
                            str(mapper), "-reducer", "NONE"]).spec
    with LocalCluster(workers=2) as cluster:
        started = time.monotonic()
        outcome = run_job(cluster, spec, timeout=120)
        seconds = time.monotonic() - started
        workers = cluster.status()["workers"]
        log = log_of(cluster)
    assert outcome.state == "failed"
    assert "failed 4 times" in outcome.message and "failed with code 1" in outcome.message
    assert "[cut: the line is longer than" in outcome.message
    assert len(outcome.message) < 64 << 10, len(outcome.message)
    assert all(w["alive"] for w in workers) and len(workers) == 2
    assert "connection lost" not in log and "re-registered" not in log
    assert seconds < 120


def test_oversized_report_is_refused_by_the_manager(tmp_path: Path) -> None:
    """The receiver's check: a worker whose `done` breaks the limits gets that attempt failed,
    keeps its connection and gets the next attempt; the job ends within maxattempts."""
    data = corpus(tmp_path / "in.txt", 10)
    spec = streaming.parse(["-input", str(data), "-output", str(tmp_path / "out"), "-mapper",
                            "cat", "-reducer", "NONE", "-D", "mapreduce.map.maxattempts=3"]).spec
    with LocalCluster(workers=0) as cluster:
        chan = protocol.connect("127.0.0.1", cluster.port, cluster.secret)
        chan.sock.settimeout(30)
        assert chan.request({"op": "register", "worker_id": "liar", "host": "127.0.0.1",
                             "shuffle_port": 9, "slots": 1})["op"] == "registered"
        result: list[Outcome] = []
        submitter = threading.Thread(target=lambda: result.append(run_job(cluster, spec, 60)))
        submitter.start()
        runs = 0
        while runs < 3:
            msg = chan.recv()
            if msg["op"] == "run":
                runs += 1
                task = msg["spec"]
                attempt = job.attempt_id(task["job_id"], "map", task["index"], task["attempt"])
                chan.send({"op": "done", "attempt_id": attempt, "result": {
                    "ok": False, "error": "boom", "stderr_tail": ["y" * (1 << 20)] * 10}})
        submitter.join(60)
        assert [w["alive"] for w in cluster.status()["workers"]] == [True]
        chan.close()
    assert result and result[0].state == "failed"
    assert "its report was refused" in result[0].message and "failed 3 times" in result[0].message
    assert len(result[0].message) < 64 << 10


def test_more_counters_than_hadoop_allows_fail_the_attempt(tmp_path: Path) -> None:
    mapper = tmp_path / "count.sh"
    mapper.write_text("#!/bin/sh\ncat >/dev/null\nfor i in $(seq 121); do "
                      "echo \"reporter:counter:g,c$i,1\" >&2; done\n")
    mapper.chmod(0o755)
    data = corpus(tmp_path / "in.txt", 10)
    spec = streaming.parse(["-input", str(data), "-output", str(tmp_path / "out"), "-mapper",
                            str(mapper), "-reducer", "NONE", "-D",
                            "mapreduce.map.maxattempts=1"]).spec
    with LocalCluster(workers=1) as cluster:
        outcome = run_job(cluster, spec)
    assert outcome.state == "failed" and "Too many counters: 121 max=120" in outcome.message


def test_worker_passes_on_only_bounded_checked_reports() -> None:
    """What a task runner writes to its worker: an oversized line, garbage and a malformed
    result each become something the manager accepts."""
    huge = json.dumps({"result": {"ok": True, "error": "x" * (2 << 20)}}).encode() + b"\n"
    lines = [b'{"progress": 0.5, "status": "half", "bytes": [1, 2, 3], "extra": 1}\n',
             b"not json\n", b'{"progress": "lots"}\n', huge,
             b'{"result": {"ok": "yes"}}\n']
    reports = list(reporter.read_reports(io.BytesIO(b"".join(lines))))
    assert reports[0] == {"progress": 0.5, "status": "half", "bytes": [1, 2, 3]}
    assert "report was too large" in reports[1]["result"]["error"]
    assert "result was refused: result.ok must be true or false" in reports[2]["result"]["error"]
    assert len(reports) == 3
    for r in reports[1:]:
        messages.check({"op": "done", "attempt_id": "attempt_1_0001_m_000000_0", **r},
                       messages.FROM_WORKER)


# -- item 5: no blocking I/O on the loop; non-regular inputs are refused -------------------


def test_fifo_input_is_refused_by_name(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    proc = run_hstream("jar-free", "-input", str(fifo), "-output", str(tmp_path / "out"),
                       "-mapper", "cat", cwd=tmp_path, timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("hstream:")]
    assert proc.returncode == errors.INPUT_NOT_FOUND and "Traceback" not in proc.stderr
    assert lines == [f"hstream: input is not a regular file (a FIFO): {fifo}"], proc.stderr


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "dir-with-fifo"])
def test_manager_refuses_special_inputs_and_keeps_answering(tmp_path: Path, special: str) -> None:
    """A submit that skips the client's checks: the manager refuses the FIFO or device without
    opening it, and status answers all the while."""
    path = tmp_path / "in"
    if special == "/dev/zero":
        path = Path(special)
    elif special == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
        (path / "a.txt").write_text("a\n")
        os.mkfifo(path / "pipe")
    spec = job.to_dict(wordcount(path, tmp_path / "out"))
    with LocalCluster(workers=1) as cluster:
        reply = ask(cluster.port, cluster.secret, {"op": "submit", "job": spec}, timeout=10)
        assert reply is not None and reply["op"] == "error", reply
        assert "is not a regular file" in reply["message"], reply
        assert status(cluster.port, cluster.secret) is not None
    assert not (tmp_path / "out").exists()


# -- item 12: job ids are unique; the loser of an output race exits 4 -----------------------


def test_managers_started_in_the_same_millisecond_issue_different_ids() -> None:
    code = ("import time; time.time = lambda: 1700000000.123; from hstream import job; "
            "print(job.new_job_id(job.cluster_stamp(), 1), job.new_job_id(job.cluster_stamp(), 1))")
    ids = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() for _ in range(2)]
    flat = [i for pair in ids for i in pair]
    assert len(set(flat)) == 4, flat
    assert all(re.fullmatch(r"job_\d+_\d{4}", i) and job.JOB_ID.fullmatch(i) for i in flat)
    assert all(i.startswith("job_1700000000") for i in flat)  # still Hadoop's timestamp first


def test_output_race_loser_exits_4_and_the_winner_is_untouched(tmp_path: Path) -> None:
    """Two jar-free runs to one -output, both past the checks before either commits: one
    succeeds, the other exits 4 with Hadoop's message, and the output is the winner's."""
    mapper = tmp_path / "slow_map.sh"
    mapper.write_text(f"#!/bin/sh\nsleep 2\nexec {WC_MAP}\n")
    mapper.chmod(0o755)
    inputs = [corpus(tmp_path / f"in{i}.txt", 2000, seed=i) for i in range(2)]
    out = tmp_path / "out"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "hstream", "jar-free", "-input", str(data), "-output", str(out),
         "-mapper", str(mapper), "-reducer", WC_REDUCE, "--workers", "1"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True) for data in inputs]
    results = [(p.wait(180), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0, errors.OUTPUT_EXISTS], results
    winner = next(i for i, (code, _) in enumerate(results) if code == 0)
    loser_err = results[1 - winner][1]
    lines = [line for line in loser_err.splitlines() if line.startswith("hstream:")]
    assert len(lines) == 1 and "Traceback" not in loser_err, loser_err
    assert re.search(r"[Oo]utput directory.*already exists", lines[0]), lines
    assert_same_output(out, reference([inputs[winner]], WC_MAP, WC_REDUCE, tmp_path))
    assert not [p.name for p in tmp_path.iterdir() if ".hstream-" in p.name]


# -- item 14: unauthenticated garbage is summarised, not echoed ----------------------------


def test_udp_garbage_adds_only_a_few_log_lines() -> None:
    with LocalCluster(workers=1) as cluster:
        port = udp_port(cluster.procs[0].pid)
        before = log_of(cluster).count("\n")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(20_000):
            sock.sendto(b"garbage %d" % i, ("127.0.0.1", port))
            if i % 500 == 0:
                time.sleep(0.005)  # leave the manager a chance to read: few kernel drops
        sock.close()
        summary = re.compile(r"dropped ([\d,]+) unauthenticated datagrams from 127\.0\.0\.1 "
                             r"in the last \d+ s")
        match = wait_for(lambda: summary.search(log_of(cluster)), 30, "the summary line")
        assert status(cluster.port, cluster.secret) is not None
        new = log_of(cluster).splitlines()[before:]
    dropped = [line for line in new if "datagram" in line]
    assert len(dropped) <= 4, dropped
    assert 1_000 <= int(match.group(1).replace(",", "")) < 20_000  # type: ignore[union-attr]


def test_garbage_connections_add_only_a_few_log_lines() -> None:
    with LocalCluster(workers=1) as cluster:
        before = log_of(cluster).count("\n")
        for _ in range(300):
            with socket.create_connection(("127.0.0.1", cluster.port)) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"x" * 60)
                s.settimeout(10)
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
        assert status(cluster.port, cluster.secret) is not None
        new = log_of(cluster).splitlines()[before:]
    warnings = [line for line in new if " WARNING " in line]
    assert len(warnings) <= 3, warnings[:10]
    assert any("dropped unauthenticated connection from 127.0.0.1" in w for w in warnings)
