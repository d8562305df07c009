"""The conformance corpus as a test: real Hadoop Streaming command lines run unchanged.

tests/conformance/corpus.json holds published `hadoop jar hadoop-streaming.jar …` commands
(Hadoop's docs, EMR, Dataproc, CDH/HDP, books, public repositories), each with its source,
its original text, only mechanical substitutions (paths made local), its scripts and input,
and the serial pipeline that gives its reference output. Each entry is one test: the command
runs through `hstream jar-free` (tests/conformance/run_corpus.py does the work, the same as
`python3 tests/conformance/run_corpus.py` from the command line) and its output equals the
reference's, as (key, value) lines, where the entry has one.

A few entries are refused on purpose: each carries a property name that no Hadoop table
knows, a typo Hadoop silently ignores (README, "Properties"); the test checks the one-line
error. Entries that fail on Hadoop too (DIFFERS) or need what hstream does not implement
(UNSUPPORTED) are strict expected failures, and entries whose command names an interpreter
that is not installed (their "requires") skip with the reason, or fail under CI.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from conftest import ROOT, require

CORPUS = ROOT / "tests" / "conformance"
sys.path.insert(0, str(CORPUS))
import run_corpus  # noqa: E402  (tests/conformance is not a package)

ENTRIES: list[dict[str, Any]] = json.loads((CORPUS / "corpus.json").read_text(encoding="utf-8"))

#: Entries hstream refuses, and the line that says why (exit status 3).
REFUSED = {
    "h1doc-field-selection-old-names":
        "unknown property: map.output.key.field.separa (did you mean "
        "map.output.key.field.separator?)",
    "sanjith-jobconf-numreduce-late-D-capital-K":
        "mapreduce.partition.keypartitioner.options: unsupported key comparator option: -K1,2",
    "baidu-style-priority-typo-cachearchive":
        "unknown property: mared.job.map.capacity (did you mean mapred.job.map.capacity?)",
    "wellbook-run-custom-job-reduces-typo":
        "unknown property: mapred.job.reduces (did you mean mapreduce.job.reduces?)",
    "river-hadoop-streaming-compress-map-out-typo":
        "unknown property: mapred.compress.map.out (did you mean mapred.compress.map.output?)",
    "exc-kuddai-job-name-typo-side-file":
        "unknown property: mapreduce.job.name.job.name (did you mean mapreduce.job.name?)",
}

#: Entries whose published command does not run as its source assumed, on Hadoop either.
DIFFERS = {
    "hdp-wgzhao-map-only-queue-memory": (
        "test.py imports column.py, shipped from ../ with -files: a shipped file is a symlink "
        "(into a per-file cache directory on YARN), and Python puts the directory of the "
        "symlink's target on sys.path, not the task's, so `import column` fails (on YARN the "
        "usual fix is sys.path.append('.') or -cmdenv PYTHONPATH=.)"),
    "miholeus-files-space-and-reduce-option": (
        "'-reduce' is not a streaming option: StreamJob prints 'Unrecognized option: -reduce' "
        "and exits 1 (hstream exits 1 too, on the stray 'countReduce.py' the space after "
        "'-files countMap.py,' leaves)"),
    "baidu-hadoop-streaming-combine-inputformat-capacity": (
        "written for Baidu's Hadoop: Apache Hadoop has no org.apache.hadoop.mapred."
        "CombineTextInputFormat (only mapred.lib.CombineTextInputFormat), so the job fails "
        "at submission; hstream refuses first, on the fork's property "
        "mapred.combine.input.format.local.only"),
    "fsharp-hadoop-windows-jobcache-jars-relative": (
        "names its programs ..\\..\\jars\\X.exe, where Hadoop 1's TaskTracker unpacked the "
        "job jar two levels above each attempt's work directory; YARN (Hadoop 2+) has no such "
        "directory, and hstream exits 3: 'mapper not found: ../../jars/FSharp.Hadoop.Mapper.exe'"),
}

#: Entries that need what hstream does not implement yet (they count as not running).
UNSUPPORTED = {
    "wellbook-seqfile-binary-cachearchive-pyenv": (
        "-inputformat SequenceFileAsBinaryInputFormat: hstream reads text input only "
        "(exit 3, 'unsupported input format')"),
    "iponweb-avro-as-json-custom-inputformat": (
        "-inputformat net.iponweb...AvroAsJsonInputFormat is a Java class from a third-party jar: "
        "hstream runs no Java classes (exit 3, 'unsupported input format')"),
}


def _marks(entry: dict[str, Any]) -> list[pytest.MarkDecorator]:
    reason = DIFFERS.get(entry["id"]) or UNSUPPORTED.get(entry["id"])
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


@pytest.mark.parametrize("entry", [pytest.param(e, id=e["id"], marks=_marks(e)) for e in ENTRIES])
def test_corpus_command_runs_unchanged(entry: dict[str, Any]) -> None:
    missing = run_corpus.missing_programs(entry)
    require(not missing, f"{entry['id']} runs {', '.join(missing)}, which is not installed")
    result = run_corpus.run_entry(entry, timeout=300, keep=False)
    refusal = REFUSED.get(entry["id"])
    if refusal is not None:
        assert result["exit"] == 3 and result["error"] == f"hstream: {refusal}", result
        return
    assert result["ran"], f"exit {result['exit']}: {result['error']}"
    if entry.get("reference"):
        assert result["equal"], result["detail"]


def test_corpus_is_real_and_large_enough() -> None:
    """At least 40 entries, each with its source URL and original text, no id twice."""
    assert len(ENTRIES) >= 40
    assert len({e["id"] for e in ENTRIES}) == len(ENTRIES)
    for e in ENTRIES:
        assert e["source"].startswith("http") and e["original"].strip(), e["id"]
