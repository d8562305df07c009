"""The spine end to end: word count on the embedded local cluster equals the serial pipeline."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, assert_same_output, read_output, reference, run_hstream

EXAMPLE = ROOT / "examples" / "wordcount"


def test_example_wordcount_matches_serial_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "--mapper", str(EXAMPLE / "map.py"),
                       "--reducer", str(EXAMPLE / "reduce.sh"),
                       "--input", str(EXAMPLE / "input"), "--output", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    inputs = sorted((EXAMPLE / "input").iterdir())
    assert_same_output(out, reference(inputs, str(EXAMPLE / "map.py"), str(EXAMPLE / "reduce.sh"),
                                      tmp_path))
    assert "completed successfully" in proc.stderr
    lines = sum(p.read_bytes().count(b"\n") for p in inputs)
    assert f"Map input records={lines}" in proc.stderr


def test_example_reducer_compares_words_as_strings(tmp_path: Path) -> None:
    """awk compares number-like fields as numbers: the reducer must not count 10, 10., +10,
    10.0 and 1e1 (in input/numbers.txt) as one word, nor 0 and -0."""
    out = tmp_path / "out"
    proc = run_hstream("jar-free", "-mapper", str(EXAMPLE / "map.py"),
                       "-reducer", str(EXAMPLE / "reduce.sh"),
                       "-input", str(EXAMPLE / "input" / "numbers.txt"), "-output", str(out),
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    counts = dict(line.split("\t") for line in read_output(out).decode().splitlines())
    assert {w: counts[w] for w in ("10", "10.", "+10", "10.0", "1e1", "0", "-0")} == {
        "10": "2", "10.": "1", "+10": "1", "10.0": "1", "1e1": "1", "0": "1", "-0": "1"}
