"""Shared test machinery: run the real CLI, compute the serial reference, catch orphans.

Every job test compares hstream's output with `cat input | mapper | LC_ALL=C sort |
reducer`, per key (Hadoop writes a key with no value as `key<TAB>`, so lines are
compared as (key, value) pairs), and every test ends with no hstream process left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Test this checkout, whatever hstream is installed: here and in every process a test starts.
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def require(condition: bool, reason: str) -> None:
    """Skip on a user's machine when a prerequisite is missing; under CI that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing prerequisite under CI: {reason}")
    pytest.skip(reason)


def run_hstream(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None,
                timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    """`hstream ARGS…` as a user runs it, with a deadline."""
    full_env = {k: v for k, v in os.environ.items() if k != "HSTREAM_CONFIG"}
    if os.environ.get("HSTREAM_TEST_CONFIG"):  # run the suite against a running cluster
        full_env["HSTREAM_CONFIG"] = os.environ["HSTREAM_TEST_CONFIG"]
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "hstream", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"hstream {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def reference(inputs: Iterable[Path], mapper: str, reducer: str | None, cwd: Path,
              env: dict[str, str] | None = None) -> bytes:
    """The serial pipeline's output: cat input | mapper | LC_ALL=C sort | reducer."""
    files = " ".join(f"'{p}'" for p in inputs)
    pipeline = f"cat {files} | {mapper} | LC_ALL=C sort"
    if reducer:
        pipeline += f" | {reducer}"
    return subprocess.run(["sh", "-c", pipeline], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, check=True, timeout=300).stdout


def pairs(data: bytes) -> Counter[tuple[bytes, bytes]]:
    """Lines as (key, value) pairs: a line without a tab is a key with an empty value."""
    out: Counter[tuple[bytes, bytes]] = Counter()
    for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
        key, _, value = line.partition(b"\t")
        out[(key, value)] += 1
    return out


def read_output(out: Path) -> bytes:
    """All part files of an output directory, concatenated in order."""
    return b"".join(p.read_bytes() for p in sorted(out.glob("part-*")))


def assert_same_output(out: Path, expected: bytes) -> None:
    assert (out / "_SUCCESS").exists(), f"{out}/_SUCCESS missing"
    got = pairs(read_output(out))
    want = pairs(expected)
    if got != want:
        missing = want - got
        extra = got - want
        raise AssertionError(f"output differs from the serial pipeline: "
                             f"{sum(missing.values())} pairs missing (e.g. {list(missing)[:3]}), "
                             f"{sum(extra.values())} extra (e.g. {list(extra)[:3]})")


def hstream_processes(tag: str | None = None) -> list[psutil.Process]:
    """Processes started under this test: every process hstream starts inherits the
    HSTREAM_TEST_TAG that the `no_orphans` fixture sets, so tests running side by side on one
    machine never see each other's processes."""
    tag = tag or os.environ.get("HSTREAM_TEST_TAG", "")
    me = os.getpid()
    found = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get("HSTREAM_TEST_TAG") == tag:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.05) -> object:
    """Poll until `predicate()` is truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def no_orphans(monkeypatch: pytest.MonkeyPatch) -> Iterable[None]:
    """Every test ends with no process it started left (killed afterwards so others start clean)."""
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("HSTREAM_TEST_TAG", tag)
    yield
    try:
        wait_for(lambda: not hstream_processes(tag), 10, "hstream processes to exit")
    except AssertionError:
        left = hstream_processes(tag)
        desc = [" ".join(p.cmdline())[:120] for p in left if p.is_running()]
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if desc:
            pytest.fail(f"processes left behind: {desc}")


@pytest.fixture
def apps() -> Path:
    return APPS
