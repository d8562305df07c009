#!/usr/bin/env python3
"""Run the conformance corpus: real Hadoop Streaming command lines through `hstream jar-free`.

corpus.json (next to this file) holds published `hadoop jar hadoop-streaming.jar ARGS`
commands with only mechanical changes to ARGS (HDFS/S3 paths made local and relative). For
every entry this script makes a temporary directory, writes the entry's scripts and inputs
into it, runs

    python3 -m hstream jar-free ARGS        (cwd = that directory, PYTHONPATH = the repo root)

and reports whether the command ran unchanged (exit 0) and whether its output equals the
output of the entry's serial reference pipeline (e.g. `cat input/* | mapper | LC_ALL=C sort |
reducer`), compared as multisets of (key, value) lines: a line without a TAB counts as the
same line followed by a TAB, which is how Hadoop's TextOutputFormat writes a key with an
empty value. Part files ending in .gz, .bz2 or .deflate are decompressed first.

Entry fields (besides id, source, original, args, reference, check, notes):
  scripts     {relative path: text}: mapper/reducer/combiner programs. Mode 0644, except
              the paths listed in "executable" (0755).
  input       {relative path: text}: input data and auxiliary files; a name ending in .gz
              or .bz2 is written compressed.
  archives    [{"path", "link", "members": {name: text}}]: archives built before the run
              (.zip/.jar as zip, .tar.gz/.tgz/.tar.bz2/.tar as tar). For the reference
              pipeline they are unpacked into a directory named "link".
  requires    [program]: interpreters the command names that are not always installed
              (e.g. "ruby"); without one the entry is reported as skipped, not run.
Paths may start with "../": the command runs in <tmp>/work, so they land in <tmp>.

The reference pipeline runs with bash in a second copy of the entry (<tmp>/ref) where files
named by -file/-files/-cacheFile are also linked under their base name (or #alias), archives
are unpacked under their link name, and -cmdenv variables are set, as in a task's directory.

Usage: run_corpus.py [--only ID[,ID...]] [--json] [--keep] [--timeout S] [--corpus FILE]
Standard library only.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROGRESS_PREFIXES = (" map ", "map ", "Running job:", "Counters:", "\t")


# --------------------------------------------------------------------------- materialising

def _encode(name: str, text: str) -> bytes:
    data = text.encode("utf-8")
    if name.endswith(".gz"):
        return gzip.compress(data, mtime=0)
    if name.endswith(".bz2"):
        return bz2.compress(data)
    return data


def _write(root: Path, rel: str, data: bytes, mode: int = 0o644) -> Path:
    path = (root / rel).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _build_archive(path: Path, members: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    if name.endswith((".zip", ".jar")):
        with zipfile.ZipFile(path, "w") as z:
            for member, text in sorted(members.items()):
                z.writestr(member, text)
        return
    mode = "w"
    if name.endswith((".tar.gz", ".tgz")):
        mode = "w:gz"
    elif name.endswith((".tar.bz2", ".tbz2")):
        mode = "w:bz2"
    elif not name.endswith(".tar"):
        raise ValueError(f"unknown archive type: {name}")
    with tarfile.open(path, mode) as t:
        for member, text in sorted(members.items()):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))


def materialise(entry: dict, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    executable = set(entry.get("executable", []))
    for rel, text in entry.get("scripts", {}).items():
        _write(root, rel, text.encode("utf-8"), 0o755 if rel in executable else 0o644)
    for rel, text in entry.get("input", {}).items():
        _write(root, rel, _encode(rel, text))
    for archive in entry.get("archives", []):
        _build_archive((root / archive["path"]).resolve(), archive["members"])


def _option_values(args: list[str], names: tuple[str, ...]) -> list[str]:
    """Values of options (-x v, --x v, --x=v); -file takes every following non-option word."""
    values: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        bare = word.lstrip("-")
        if word.startswith("--") and "=" in bare and bare.split("=", 1)[0] in names:
            values.append(bare.split("=", 1)[1])
        elif word.startswith("-") and bare in names and i + 1 < len(args):
            values.append(args[i + 1])
            i += 1
            if bare == "file":
                while i + 1 < len(args) and not args[i + 1].startswith("-"):
                    values.append(args[i + 1])
                    i += 1
        i += 1
    return values


def prepare_reference_dir(entry: dict, root: Path) -> dict[str, str]:
    """A task-like directory for the reference pipeline; returns the -cmdenv variables."""
    materialise(entry, root)
    args = entry["args"]
    shipped: list[str] = []
    for value in _option_values(args, ("file",)):
        shipped.append(value)
    for value in _option_values(args, ("files",)):
        shipped.extend(v for v in value.split(",") if v)
    shipped.extend(_option_values(args, ("cacheFile",)))
    for spec in shipped:
        target, _, alias = spec.partition("#")
        link = root / (alias or os.path.basename(target.rstrip("/")))
        source = (root / target).resolve()
        if source.exists() and not link.exists() and not link.is_symlink():
            link.symlink_to(source)
    for archive in entry.get("archives", []):
        dest = root / archive["link"]
        if dest.exists() and not dest.is_dir():
            dest.unlink()
        dest.mkdir(parents=True, exist_ok=True)
        for member, text in archive["members"].items():
            _write(dest, member, text.encode("utf-8"))
    env = {}
    for value in _option_values(args, ("cmdenv",)):
        name, _, val = value.partition("=")
        env[name] = val
    return env


# --------------------------------------------------------------------------- running

def _run(cmd: list[str], cwd: Path, env: dict[str, str],
         timeout: float) -> tuple[int | None, bytes, bytes]:
    """Run in its own session; on timeout kill the whole group. (None, ...) means timed out."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return None, out, err


def _output_dir(args: list[str]) -> str | None:
    values = _option_values(args, ("output",))
    return values[-1] if values else None


def read_parts(out: Path) -> bytes:
    chunks = []
    for part in sorted(out.glob("part-*")):
        data = part.read_bytes()
        if part.name.endswith(".gz"):
            data = gzip.decompress(data)
        elif part.name.endswith(".bz2"):
            data = bz2.decompress(data)
        elif part.name.endswith(".deflate"):
            data = zlib.decompress(data)
        chunks.append(data)
    return b"".join(chunks)


def pairs(data: bytes) -> Counter:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return Counter(tuple(line.partition(b"\t")[::2]) for line in lines)


def first_error_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines:
        if line.startswith("hstream:") or "rror" in line or "Traceback" in line:
            return line.strip()
    for line in lines:
        if not line.startswith(PROGRESS_PREFIXES):
            return line.strip()
    return lines[0].strip() if lines else ""


def _show(pair: tuple[bytes, bytes]) -> str:
    key, value = pair
    return (key + (b"\t" + value if value else b"")).decode("utf-8", "replace")


def missing_programs(entry: dict) -> list[str]:
    """The entry's required programs that are not on PATH."""
    return [p for p in entry.get("requires", []) if shutil.which(p) is None]


def run_entry(entry: dict, timeout: float, keep: bool) -> dict:
    result: dict = {"id": entry["id"], "ran": False, "exit": None, "equal": None, "error": "",
                    "detail": "", "seconds": 0.0, "skipped": ""}
    missing = missing_programs(entry)
    if missing:
        result["skipped"] = f"needs {', '.join(missing)}"
        return result
    tmp = Path(tempfile.mkdtemp(prefix=f"hsconf-{entry['id'][:40]}-"))
    try:
        work = tmp / "work"
        materialise(entry, work)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        start = time.monotonic()
        cmd = [sys.executable, "-m", "hstream", "jar-free", *entry["args"]]
        code, _, err = _run(cmd, work, env, timeout)
        result["seconds"] = round(time.monotonic() - start, 1)
        result["exit"] = code
        if code is None:
            result["error"] = f"timed out after {timeout:g} s"
            return result
        if code != 0:
            result["error"] = first_error_line(err)
            return result
        result["ran"] = True
        reference = entry.get("reference")
        if not reference:
            result["detail"] = "no reference; check: " + entry.get("check", "")
            return result
        out_rel = _output_dir(entry["args"])
        out = work / out_rel if out_rel else None
        if out is None or not out.is_dir():
            result["equal"] = False
            result["detail"] = f"output directory {out_rel!r} missing"
            return result
        ref_dir = tmp / "ref"
        cmdenv = prepare_reference_dir(entry, ref_dir)
        rcode, want, rerr = _run(["bash", "-c", reference], ref_dir, {**os.environ, **cmdenv},
                                 timeout)
        if rcode is None or (rcode != 0 and not want):
            result["detail"] = f"reference pipeline failed ({rcode}): {first_error_line(rerr)}"
            return result
        got, expected = pairs(read_parts(out)), pairs(want)
        result["equal"] = got == expected
        if got != expected:
            missing, extra = expected - got, got - expected
            some_missing = [_show(p) for p in list(missing)[:2]]
            some_extra = [_show(p) for p in list(extra)[:2]]
            result["detail"] = (f"{sum(missing.values())} lines missing (e.g. {some_missing}), "
                                f"{sum(extra.values())} extra (e.g. {some_extra})")
        return result
    finally:
        if keep:
            result["dir"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="ID",
                        help="run only this entry (repeatable, or comma-separated)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds per command (default 120)")
    parser.add_argument("--corpus", type=Path, default=HERE / "corpus.json")
    opts = parser.parse_args(argv)

    corpus = json.loads(opts.corpus.read_text(encoding="utf-8"))
    wanted = {i for item in opts.only for i in item.split(",") if i}
    if wanted:
        unknown = wanted - {e["id"] for e in corpus}
        if unknown:
            parser.error(f"no such entry: {', '.join(sorted(unknown))}")
        corpus = [e for e in corpus if e["id"] in wanted]

    results = []
    for entry in corpus:
        r = run_entry(entry, opts.timeout, opts.keep)
        results.append(r)
        if not opts.json:
            if r["skipped"]:
                status = f"SKIPPED ({r['skipped']})"
            elif not r["ran"]:
                status = f"FAIL (exit {r['exit']}): {r['error']}"
            elif r["equal"] is None:
                status = "ran" + (f"; {r['detail']}" if r["detail"] else "")
            elif r["equal"]:
                status = "ran, output equal"
            else:
                status = f"ran, OUTPUT DIFFERS: {r['detail']}"
            print(f"{r['id']:<55} {r['seconds']:>6.1f}s  {status}", flush=True)

    total = len(results)
    ran = sum(r["ran"] for r in results)
    equal = sum(r["equal"] is True for r in results)
    comparable = sum(1 for e in corpus if e.get("reference"))
    skipped = sum(bool(r["skipped"]) for r in results)
    summary = (f"{ran}/{total} ran unchanged, {equal}/{total} output equal "
               f"({comparable} have a reference)")
    if skipped:
        summary += f"; {skipped} not run: a program they need is missing"
    if opts.json:
        print(json.dumps({"summary": summary, "ran": ran, "equal": equal, "total": total,
                          "with_reference": comparable, "skipped": skipped, "results": results},
                         indent=1))
    else:
        print(summary)
    return 0 if ran == total and equal == comparable else 1


if __name__ == "__main__":
    sys.exit(main())
