"""The spine end to end: word count on the embedded local cluster equals the serial pipeline."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, assert_same_output, reference, run_hstream

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
    assert "Map input records=18" in proc.stderr
