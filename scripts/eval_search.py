#!/usr/bin/env python
"""Search quality on the development queries: nDCG@10 and recall@20.

Builds a throwaway data folder with the seed data (the real `init`), runs every query of
data/seed/queries_dev.jsonl through the real search (kb.search.search_cases) and through a
plain baseline (the substring filter of kb.cases.list_cases, newest first), and prints
both: first the chosen set as a whole (the `search` and `baseline` lines), then each part of
it separately — the original 20 queries (`old`, qids q…) and the 40 written for issue #14
(`new`, qids n…). With --min-ndcg, exits 1 when the search scores below it on the chosen set
(all 60 unless --set says otherwise; scripts/test uses this through
tests/test_search_quality.py).

With --judge 2 the same runs are scored against a second, independent judge's grades
(data/seed/queries_dev_judge2.jsonl, made blind to the first judge and to the search;
docs/search.md), with --judge both against the cases both judges call relevant (at the
lower grade), and the agreement of the two judges is printed.

    .venv/bin/python scripts/eval_search.py [--min-ndcg 0.80] [--set old|new|all] [--verbose]
                                            [--judge 1|2|both]
"""

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb import create_app, search, users  # noqa: E402
from kb.cases import list_cases  # noqa: E402
from kb.db import get_db  # noqa: E402

QUERIES = ROOT / "data" / "seed" / "queries_dev.jsonl"
SECOND_JUDGE = ROOT / "data" / "seed" / "queries_dev_judge2.jsonl"
CASES = ROOT / "data" / "seed" / "external_cases.jsonl"
READER = users.User(0, "eval", "評価", None, "", frozenset({"staff"}))
# A query's set is told by the first letter of its qid: the q-numbers are the original 20
# (their gaps belong to a held-out set), the n-numbers the 40 added before issue #14's tuning.
SETS = {"old": "q", "new": "n"}
METRICS = ("ndcg@10", "recall@20", "capped recall@20")


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum((2 ** relevant.get(doc, 0) - 1) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2 ** grade - 1) / math.log2(i + 2) for i, grade in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], relevant: dict[str, int], k: int = 20, capped=False) -> float:
    """Share of the relevant cases in the top k. ``capped`` divides by min(k, |relevant|):
    a query with 27 relevant cases can at best put 20 of them in a top 20."""
    if not relevant:
        return 0.0
    found = len(set(ranked[:k]) & set(relevant))
    return found / (min(k, len(relevant)) if capped else len(relevant))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_queries(which: str = "all", judge: int | str = 1) -> list[dict]:
    """The development queries of set ``which`` ("old", "new" or "all"), in file order,
    with the grades of ``judge`` 1 (the set's own), 2 (the second judge's) or "both" (the
    cases both judges call relevant, at the lower of their grades)."""
    queries = _lines(QUERIES)
    if str(judge) in ("2", "both"):
        second = {row["qid"]: row["relevant"] for row in _lines(SECOND_JUDGE)}
        queries = [dict(q, relevant=second[q["qid"]] if str(judge) == "2" else {
            case: min(grade, second[q["qid"]][case]) for case, grade in q["relevant"].items()
            if case in second[q["qid"]]}) for q in queries]
    if which == "all":
        return queries
    return [q for q in queries if q["qid"].startswith(SETS[which])]


def score(run: list[str], relevant: dict[str, int]) -> dict[str, float]:
    return {"ndcg@10": ndcg_at(run, relevant), "recall@20": recall_at(run, relevant),
            "capped recall@20": recall_at(run, relevant, capped=True)}


def mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {metric: sum(row[metric] for row in rows) / len(rows) if rows else 0.0 for metric in METRICS}


def weighted_kappa(pairs: list[tuple[int, int]]) -> float:
    """Cohen's kappa with linear weights for two judges' grades (0, 1, 2) of the same items:
    1 when they agree everywhere, 0 when they agree only as much as chance would."""
    def weight(a, b):
        return 1 - abs(a - b) / 2
    n = len(pairs)
    observed = sum(weight(a, b) for a, b in pairs) / n
    first = [sum(1 for a, _ in pairs if a == g) / n for g in (0, 1, 2)]
    second = [sum(1 for _, b in pairs if b == g) / n for g in (0, 1, 2)]
    expected = sum(first[a] * second[b] * weight(a, b) for a in (0, 1, 2) for b in (0, 1, 2))
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


def agreement(which: str = "all") -> dict[str, float]:
    """Weighted kappa of the two judges over every (query, case) pair of each part."""
    case_ids = [row["id"] for row in _lines(CASES)]
    first, second = load_queries(which), {q["qid"]: q["relevant"] for q in load_queries(which, "2")}
    result = {}
    for part, prefix in SETS.items():
        pairs = [(q["relevant"].get(case, 0), second[q["qid"]].get(case, 0))
                 for q in first if q["qid"].startswith(prefix) for case in case_ids]
        if pairs:
            result[part] = weighted_kappa(pairs)
    return result


def evaluate(app, verbose=False, which="all", judge=1) -> dict[str, dict[str, float]]:
    """Mean scores of the search and the baseline over the queries of set ``which``:
    ``{"search": {...}, "baseline": {...}}``, and the same for each part of the set under
    ``"search old"``, ``"baseline new"`` … (only parts that have queries)."""
    queries = load_queries(which, judge)
    per_query = {"search": {}, "baseline": {}}
    with app.app_context():
        db = get_db()
        ix = search.get_index(app.config["DATA_DIR"])
        for q in queries:
            hits = search.search_cases(ix, db, READER, q["query"], page_size=20).hits
            ranked = [hit["external_id"] for hit in hits]
            base = [c["external_id"] for c in list_cases(db, READER, q=q["query"], page_size=20)["cases"]]
            per_query["search"][q["qid"]] = score(ranked, q["relevant"])
            per_query["baseline"][q["qid"]] = score(base, q["relevant"])
            if verbose:
                mine = per_query["search"][q["qid"]]
                print(f"{q['qid']:>4} {q['query']:<24} nDCG@10 {mine['ndcg@10']:.3f}"
                      f"  recall@20 {mine['recall@20']:.3f}  (capped {mine['capped recall@20']:.3f};"
                      f" {len(q['relevant'])} relevant)"
                      f"  (baseline {per_query['baseline'][q['qid']]['ndcg@10']:.3f})")
    scores = {name: mean(list(rows.values())) for name, rows in per_query.items()}
    for part, prefix in SETS.items():
        for name, rows in per_query.items():
            in_part = [row for qid, row in rows.items() if qid.startswith(prefix)]
            if in_part:
                scores[f"{name} {part}"] = mean(in_part)
    return scores


def line(values: dict[str, float]) -> str:
    return (f"nDCG@10 {values['ndcg@10']:.3f}  recall@20 {values['recall@20']:.3f}"
            f"  (capped at 20 relevant: {values['capped recall@20']:.3f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-ndcg", type=float, default=None,
                        help="exit 1 when the search's nDCG@10 on the chosen set is below this")
    parser.add_argument("--set", dest="which", choices=("old", "new", "all"), default="all",
                        help="old: the original 20 (q…); new: the 40 added for issue #14 (n…); all (default)")
    parser.add_argument("--verbose", action="store_true", help="one line per query")
    parser.add_argument("--judge", choices=("1", "2", "both"), default="1",
                        help="whose grades: 1, the set's own (default); 2, the second judge's;"
                             " both, the cases both call relevant, at the lower grade")
    args = parser.parse_args()
    queries = load_queries(args.which, args.judge)
    if not queries:
        print(f"no queries in set {args.which!r}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app({"TESTING": True, "DATA_DIR": data_dir, "SECRET_KEY": "eval"})
        result = app.test_cli_runner().invoke(args=["init"])
        if result.exit_code != 0:
            print(result.output, file=sys.stderr)
            return 2
        scores = evaluate(app, verbose=args.verbose, which=args.which, judge=args.judge)
    counts = {part: sum(q["qid"].startswith(prefix) for q in queries) for part, prefix in SETS.items()}
    print(f"{len(queries)} queries ({args.which}: "
          + ", ".join(f"{counts[part]} {part} {prefix}…" for part, prefix in SETS.items()) + ")")
    # The two unprefixed lines are the chosen set as a whole; tests/test_search_quality.py
    # reads them, so they come first and keep their shape.
    for name in ("search", "baseline"):
        print(f"{name:<9} {line(scores[name])}")
    for part in SETS:
        for name in ("search", "baseline"):
            if f"{name} {part}" in scores:
                print(f"{part} {counts[part]:>2}  {name:<9} {line(scores[f'{name} {part}'])}")
    if args.judge != "1":
        print("judges' agreement (weighted kappa over every query and case): "
              + ", ".join(f"{part} {kappa:.3f}" for part, kappa in agreement(args.which).items()))
    if args.min_ndcg is not None and scores["search"]["ndcg@10"] < args.min_ndcg:
        print(f"FAIL: nDCG@10 {scores['search']['ndcg@10']:.3f} < {args.min_ndcg} on {args.which}"
              f" ({len(queries)} queries)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
