"""Search quality on the development queries stays above the floor (scripts/eval_search.py),
and the development set itself stays well-formed."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "eval_search.py"
QUERIES = ROOT / "data" / "seed" / "queries_dev.jsonl"
CASES = ROOT / "data" / "seed" / "external_cases.jsonl"
SECOND_JUDGE = ROOT / "data" / "seed" / "queries_dev_judge2.jsonl"


def run_eval(*args):
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    return result, result.stdout.splitlines()


def ndcg_of(lines, prefix):
    line = next(line for line in lines if line.startswith(prefix))
    return float(line.split("nDCG@10")[1].split()[0])


def test_ndcg_on_all_60_development_queries_is_at_least_085():
    # Issue #14's floor on all 60; search reaches 0.851 with pseudo-relevance feedback
    # (docs/search.md, "Tuning for issue #14", step 17).
    result, lines = run_eval("--min-ndcg", "0.85")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[0].startswith("60 queries")
    ndcg, baseline = ndcg_of(lines, "search"), ndcg_of(lines, "baseline")
    assert ndcg >= 0.85 and ndcg > baseline


def test_ndcg_on_the_original_20_development_queries_does_not_drop_below_087():
    # Issue #14: no drop on the original 20 (0.870 when the set grew to 60).
    result, lines = run_eval("--set", "old", "--min-ndcg", "0.87")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[0].startswith("20 queries")


def test_eval_reports_all_60_then_the_old_20_and_the_new_40_separately():
    result, lines = run_eval("--min-ndcg", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[0].startswith("60 queries")
    whole, old, new = ndcg_of(lines, "search"), ndcg_of(lines, "old 20  search"), ndcg_of(lines, "new 40  search")
    # The unprefixed line is the mean over all 60, so it is the weighted mean of the parts.
    assert abs(whole - (20 * old + 40 * new) / 60) < 0.002
    assert any(line.startswith("old 20  baseline") for line in lines)
    assert any(line.startswith("new 40  baseline") for line in lines)


def test_min_ndcg_is_checked_on_all_60_queries_by_default():
    result, lines = run_eval("--min-ndcg", "1.01")
    assert result.returncode == 1
    assert "on all (60 queries)" in result.stderr


def test_development_set_has_20_old_and_40_new_queries_each_judged_against_real_cases():
    queries = [json.loads(line) for line in QUERIES.read_text(encoding="utf-8").splitlines() if line.strip()]
    case_ids = {json.loads(line)["id"] for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()}
    qids = [q["qid"] for q in queries]
    assert len(qids) == len(set(qids)) == 60
    assert sum(qid.startswith("q") for qid in qids) == 20
    assert sorted(qid for qid in qids if qid.startswith("n")) == [f"n{i:02d}" for i in range(1, 41)]
    old_texts = {q["query"] for q in queries if q["qid"].startswith("q")}
    for q in queries:
        assert set(q) == {"qid", "query", "intent", "relevant"}, q["qid"]
        assert q["intent"].strip() and q["query"].strip(), q["qid"]
        assert set(q["relevant"]) <= case_ids, q["qid"]
        assert set(q["relevant"].values()) <= {1, 2} and 2 in q["relevant"].values(), q["qid"]
        if q["qid"].startswith("n"):
            assert q["query"] not in old_texts, q["qid"]
            assert len(q["relevant"]) >= 3, q["qid"]


def test_the_second_judges_grades_cover_the_same_queries_with_real_cases():
    first = [json.loads(line)["qid"] for line in QUERIES.read_text(encoding="utf-8").splitlines()]
    second = [json.loads(line) for line in SECOND_JUDGE.read_text(encoding="utf-8").splitlines()]
    case_ids = {json.loads(line)["id"] for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()}
    assert [row["qid"] for row in second] == first
    for row in second:
        assert set(row) == {"qid", "relevant"} and set(row["relevant"]) <= case_ids, row["qid"]
        assert set(row["relevant"].values()) <= {1, 2} and 2 in row["relevant"].values(), row["qid"]


def test_eval_scores_against_the_second_judge_and_prints_the_judges_agreement():
    result, lines = run_eval("--judge", "2", "--set", "new")
    assert result.returncode == 0, result.stdout + result.stderr
    kappa = float(lines[-1].split("new ")[1])
    assert lines[-1].startswith("judges' agreement") and 0.5 < kappa < 1
    first = ndcg_of(run_eval("--set", "new")[1], "search")
    assert ndcg_of(lines, "search") != first  # other grades, another score


def test_weighted_kappa_is_one_for_agreement_and_below_zero_for_systematic_disagreement():
    sys.path.insert(0, str(SCRIPT.parent))
    from eval_search import weighted_kappa
    assert weighted_kappa([(0, 0), (1, 1), (2, 2), (0, 0)]) == 1.0
    assert weighted_kappa([(0, 2), (2, 0), (0, 2), (2, 0)]) < 0
    assert 0 < weighted_kappa([(0, 0), (1, 2), (2, 2), (0, 1)]) < 1


def test_judge_both_keeps_the_cases_both_judges_call_relevant_at_the_lower_grade():
    sys.path.insert(0, str(SCRIPT.parent))
    from eval_search import load_queries
    first, second, both = (load_queries("all", judge) for judge in (1, "2", "both"))
    for one, two, common in zip(first, second, both):
        assert set(common["relevant"]) == set(one["relevant"]) & set(two["relevant"])
        assert all(grade == min(one["relevant"][case], two["relevant"][case])
                   for case, grade in common["relevant"].items())
