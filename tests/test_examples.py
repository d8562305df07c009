"""The gallery (examples/): every example's Makefile runs on the embedded cluster and passes its
own check, which compares the job's output with the serial pipeline
`cat input | mapper | LC_ALL=C sort | reducer`.

Each test runs a copy of examples/ (the source tree stays clean) with
HSTREAM="python3 -m hstream", as a user's `make` would run `hstream`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, require

EXAMPLES = ROOT / "examples"
NAMES = sorted(p.parent.name for p in EXAMPLES.glob("*/Makefile"))
TOOLS = ("make", "perl", "awk", "gzip")


def copy_gallery(dest: Path) -> Path:
    for tool in TOOLS:
        require(shutil.which(tool) is not None, f"the examples need {tool}")
    return Path(shutil.copytree(EXAMPLES, dest / "examples",
                                ignore=shutil.ignore_patterns("build")))


def make(where: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`make ARGS` in `where`, finding hstream as `python3 -m hstream` (PYTHONPATH: this tree)."""
    full = {k: v for k, v in os.environ.items() if k not in ("HSTREAM_CONFIG", "MAKEFLAGS")}
    if os.environ.get("HSTREAM_TEST_CONFIG"):
        full["HSTREAM_CONFIG"] = os.environ["HSTREAM_TEST_CONFIG"]
    full.update(env or {})
    return subprocess.run(["make", "-C", str(where), f"HSTREAM={sys.executable} -m hstream",
                           *args], env=full, capture_output=True, text=True, timeout=timeout)


def jobs_run(proc: subprocess.CompletedProcess[str]) -> int:
    return proc.stderr.count("Running job:")


def test_the_gallery_has_every_example() -> None:
    assert {"wordcount", "invertedindex", "topwords", "join", "accesslog", "sweep", "builtins",
            "pipeline", "wikilinks"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example(tmp_path: Path, name: str) -> None:
    gallery = copy_gallery(tmp_path)
    proc = make(gallery / name)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "ok: " in proc.stdout and jobs_run(proc) >= 1, proc.stdout
    assert "Traceback" not in proc.stderr
    again = make(gallery / name)  # everything is up to date: only the checks run again
    assert again.returncode == 0 and jobs_run(again) == 0, again.stderr
    clean = make(gallery / name, "clean")
    assert clean.returncode == 0 and not (gallery / name / "build").exists()
    assert sorted(p.name for p in (gallery / name).iterdir()) == sorted(
        p.name for p in (EXAMPLES / name).iterdir() if p.name != "build")


def _touch(path: Path) -> None:
    later = time.time() + 5  # newer than any output, whatever the file system's time resolution
    os.utime(path, (later, later))


def test_pipeline_reruns_only_what_changed(tmp_path: Path) -> None:
    """Each step's target is its output's _SUCCESS: a changed step-3 program reruns step 3 only;
    a changed input reruns all three."""
    where = copy_gallery(tmp_path) / "pipeline"
    first = make(where)
    assert first.returncode == 0 and jobs_run(first) == 3, first.stderr
    _touch(where / "best.py")
    step3 = make(where)
    assert step3.returncode == 0, step3.stderr
    assert jobs_run(step3) == 1 and "-output build/next" in step3.stdout, step3.stdout
    assert "-output build/clean" not in step3.stdout
    _touch(where / "input" / "gettysburg.txt")
    everything = make(where)
    assert everything.returncode == 0 and jobs_run(everything) == 3, everything.stderr
