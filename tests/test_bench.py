"""The benchmark scripts that no test would otherwise run stay runnable (their --dry-run modes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_every_path_on_the_cpu_in_dry_run(tmp_path):
    out = tmp_path / "gpu_check.md"
    res = subprocess.run(
        [sys.executable, str(REPO / "bench/gpu_check.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    text = out.read_text()
    assert "## GPU check" in text and "CPU (dry run)" in text
    rows = [line for line in text.splitlines() if line.startswith(("| bert |", "| modern |"))]
    # every family x layout x compiled combination, each with a positive throughput
    assert len(rows) == 8
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[4].replace(",", "")) > 0
    packed = [r for r in rows if "| packed |" in r]
    padded = [r for r in rows if "| padded |" in r]
    assert all(int(p.split("|")[4]) < int(q.split("|")[4]) for p, q in zip(packed, padded))
