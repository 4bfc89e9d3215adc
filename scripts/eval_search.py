#!/usr/bin/env python
"""Search quality on the development queries: nDCG@10 and recall@20.

Builds a throwaway data folder with the seed data (the real `init`), runs every query of
data/seed/queries_dev.jsonl through the real search (kb.search.search_cases) and through a
plain baseline (the substring filter of kb.cases.list_cases, newest first), and prints
both. With --min-ndcg, exits 1 when the search scores below it (scripts/test uses this
through tests/test_search_quality.py).

    .venv/bin/python scripts/eval_search.py [--min-ndcg 0.80] [--verbose]
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
READER = users.User(0, "eval", "評価", None, "", frozenset({"staff"}))


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


def evaluate(app, verbose=False) -> dict[str, dict[str, float]]:
    queries = [json.loads(line) for line in QUERIES.read_text(encoding="utf-8").splitlines() if line.strip()]
    scores = {name: {"ndcg@10": 0.0, "recall@20": 0.0, "capped recall@20": 0.0}
              for name in ("search", "baseline")}
    with app.app_context():
        db = get_db()
        ix = search.get_index(app.config["DATA_DIR"])
        for q in queries:
            hits = search.search_cases(ix, db, READER, q["query"], page_size=20).hits
            ranked = [hit["external_id"] for hit in hits]
            base = [c["external_id"] for c in list_cases(db, READER, q=q["query"], page_size=20)["cases"]]
            for name, run in (("search", ranked), ("baseline", base)):
                scores[name]["ndcg@10"] += ndcg_at(run, q["relevant"]) / len(queries)
                scores[name]["recall@20"] += recall_at(run, q["relevant"]) / len(queries)
                scores[name]["capped recall@20"] += recall_at(run, q["relevant"], capped=True) / len(queries)
            if verbose:
                print(f"{q['qid']:>4} {q['query']:<24} nDCG@10 {ndcg_at(ranked, q['relevant']):.3f}"
                      f"  recall@20 {recall_at(ranked, q['relevant']):.3f}"
                      f"  (baseline {ndcg_at(base, q['relevant']):.3f})")
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-ndcg", type=float, default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app({"TESTING": True, "DATA_DIR": data_dir, "SECRET_KEY": "eval"})
        result = app.test_cli_runner().invoke(args=["init"])
        if result.exit_code != 0:
            print(result.output, file=sys.stderr)
            return 2
        scores = evaluate(app, verbose=args.verbose)
    for name, values in scores.items():
        print(f"{name:<9} nDCG@10 {values['ndcg@10']:.3f}  recall@20 {values['recall@20']:.3f}"
              f"  (capped at 20 relevant: {values['capped recall@20']:.3f})")
    if args.min_ndcg is not None and scores["search"]["ndcg@10"] < args.min_ndcg:
        print(f"FAIL: nDCG@10 {scores['search']['ndcg@10']:.3f} < {args.min_ndcg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
