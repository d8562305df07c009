"""What TLS costs the shuffle: one reducer's fetch of one map's partition, with and without TLS.

A real shuffle server (`hstream.task.shuffle.serve`, as a worker runs it) in a process of
its own serves a SIZE MB partition on loopback; this process fetches it (`shuffle.fetch_one`,
as a reduce attempt does, with the job's token) RUNS times each way, alternating, and prints
the best and median MB/s of each and the ratio. Loopback has no wire limit, so the figure
is the CPU cost of encryption (AES-GCM in OpenSSL) and of the TLS record layer in Python.

Usage: python3 bench/shuffle_tls.py [--size MB] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hstream import protocol  # noqa: E402
from hstream.cluster import tls  # noqa: E402
from hstream.job import MapOutput  # noqa: E402
from hstream.task import shuffle  # noqa: E402

JOB, ATTEMPT = "job_1_0001", "attempt_1_0001_m_000000_0"
SERVER = """
import socket, sys, threading
from hstream import protocol
from hstream.task import shuffle
auth = protocol.read_auth(sys.stdin.buffer)
sock = socket.create_server(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
shuffle.serve(sock, auth, sys.argv[1], threading.Event(), lambda job: True)
"""


def partition(workdir: str, size: int) -> None:
    """A map output of `size` bytes of word-count-like lines."""
    out = shuffle.map_output_dir(os.path.join(workdir, JOB), ATTEMPT)
    os.makedirs(out)
    rng = random.Random(1)
    block = "".join(f"w{rng.randrange(100000)}\t1\n" for _ in range(100000)).encode()
    with open(os.path.join(out, shuffle.partition_name(0)), "wb") as f:
        for _ in range(size // len(block) + 1):
            f.write(block)
    shuffle.write_meta(out, False)


def server(workdir: str, auth: protocol.Auth) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, workdir], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(auth.dumps())
    proc.stdin.close()
    return proc, int(proc.stdout.readline())


def fetch(port: int, auth: protocol.Auth, dest: str) -> float:
    """MB/s of one fetch."""
    t0 = time.perf_counter()
    got, _, _ = shuffle.fetch_one(MapOutput(0, ATTEMPT, "127.0.0.1", port), JOB, 0, dest, auth)
    seconds = time.perf_counter() - t0
    os.remove(dest)
    return got / seconds / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=200, help="partition size, MB")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    d = tempfile.mkdtemp(prefix="hstream-tls-bench-")
    try:
        partition(os.path.join(d, "work"), args.size << 20)
        ca = tls.load_or_create_ca(os.path.join(d, "ca.pem"), os.path.join(d, "ca.key"))
        secret = protocol.new_secret()
        ways = {"plain": (protocol.Auth(secret), None),
                "tls": (protocol.Auth(secret, tls=tls.issue(ca, "worker")), protocol.TLS(ca.pem))}
        servers = {name: server(os.path.join(d, "work"), auth) for name, (auth, _) in ways.items()}
        rates: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.runs):
            for name, (_, task_tls) in ways.items():
                token = protocol.Auth(protocol.job_token(secret, JOB), JOB, task_tls)
                rates[name].append(fetch(servers[name][1], token, os.path.join(d, "fetched")))
        for name, r in rates.items():
            print(f"{name:>5}: best {max(r):7.1f} MB/s, median {statistics.median(r):7.1f} MB/s "
                  f"({args.size} MB partition, {args.runs} fetches)")
        ratio = statistics.median(rates["tls"]) / statistics.median(rates["plain"])
        print(f"TLS/plain (medians): {ratio:.2f}")
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    with socket.socket():  # fail early without networking
        pass
    main()
