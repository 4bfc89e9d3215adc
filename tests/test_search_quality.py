"""Search quality on the development queries stays above the floor (scripts/eval_search.py)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "eval_search.py"


def test_ndcg_on_the_development_queries_is_at_least_080():
    result = subprocess.run([sys.executable, str(SCRIPT), "--min-ndcg", "0.80"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    search_line = next(line for line in result.stdout.splitlines() if line.startswith("search"))
    baseline_line = next(line for line in result.stdout.splitlines() if line.startswith("baseline"))
    ndcg = float(search_line.split("nDCG@10")[1].split()[0])
    baseline = float(baseline_line.split("nDCG@10")[1].split()[0])
    assert ndcg >= 0.80 and ndcg > baseline
