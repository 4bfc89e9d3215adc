#!/usr/bin/env python
"""Import benchmark: preview and import N external cases while a member of staff saves.

It seeds a throwaway data folder with the real `init` command, writes N records (5,000 by
default) recombined from data/seed/external_cases.jsonl with new ids (title, municipality,
dates, summary and countermeasures drawn from different seed records, dates shifted, so
the duplicate check has real candidates), then times:

  preview   import_external_cases(..., dry_run=True), what the upload page runs
  import    the real import: the plan (read snapshot) and the short write transaction
  index     writing the new cases to the Whoosh index after the commit; in a request this
            runs synchronously unless the app runs under `serve` (INDEX_IN_BACKGROUND)

Meanwhile a thread with its own connection saves new near-miss drafts through the real
core call (reports.save_report) every --pause seconds and records how long each save
took: the longest save during each phase is the wait a member of staff would see.
No HTTP: the lock contention is the database's, which is what this measures.

    .venv/bin/python scripts/bench_import.py [--records 5000] [--pause 0.05] [--seed 1]
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb import create_app, imports, reports, search, users  # noqa: E402
from kb.db import database_path, get_db, open_db  # noqa: E402

SEED = ROOT / "data" / "seed" / "external_cases.jsonl"


def generate(count: int, rng: random.Random) -> list[dict]:
    """``count`` records recombined from the seed cases, with ids of their own."""
    seeds = [json.loads(line) for line in SEED.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for n in range(count):
        base, place, story = rng.choice(seeds), rng.choice(seeds), rng.choice(seeds)
        day = date(2020, 1, 1) + timedelta(days=rng.randrange(5 * 365))
        records.append(dict(
            base, id=f"bench-{n:05d}", source_url=f"https://example.jp/bench/{n}",
            municipality=place["municipality"], prefecture=place["prefecture"],
            occurred_on=day.isoformat(), published_on=(day + timedelta(days=rng.randrange(30))).isoformat(),
            summary=story["summary"], countermeasures=story["countermeasures"],
            title=base["title"] if rng.random() < 0.7 else f"{base['title']}（{place['municipality']}）"))
    return records


class Saver(threading.Thread):
    """A member of staff saving drafts on their own connection, each save timed."""

    def __init__(self, app, staff, pause: float):
        super().__init__(daemon=True)
        self.app, self.staff, self.pause = app, staff, pause
        self.timings: list[tuple[float, float]] = []  # (start, seconds)
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self):
        db = open_db(database_path(self.app.config["DATA_DIR"]))  # no index hook: DB wait only
        n = 0
        while not self.stop.is_set():
            report = dict(reports.empty_report("near_miss"), title=f"取り込み中の保存 {n}",
                          summary="FAXの宛先を確認せずに送りかけた。", task="fax")
            start = time.perf_counter()
            try:
                reports.save_report(db, self.staff, report)
            except Exception as error:  # noqa: BLE001 — what a save would have answered
                self.errors.append(f"{type(error).__name__}: {error}")
            self.timings.append((start, time.perf_counter() - start))
            n += 1
            time.sleep(self.pause)

    def during(self, start: float, end: float) -> list[float]:
        return [seconds for began, seconds in self.timings if start <= began + seconds and began <= end]


def summary(waits: list[float]) -> str:
    if not waits:
        return "no saves"
    return (f"{len(waits)} saves, longest {max(waits) * 1000:.0f} ms, "
            f"median {statistics.median(waits) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between saves")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
        app = create_app({"DATA_DIR": folder, "SECRET_KEY": "bench", "TESTING": True})
        started = time.perf_counter()
        result = app.test_cli_runner().invoke(args=["init"])
        assert result.exit_code == 0, result.output
        print(f"seeded data folder in {time.perf_counter() - started:.1f} s")
        path = Path(folder) / "bench.jsonl"
        records = generate(args.records, random.Random(args.seed))
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        print(f"{len(records):,} records, {path.stat().st_size / 2**20:.1f} MB")

        with app.app_context():
            department = users.get_department_by_code(get_db(), "kumin-koseki")["department_id"]
            staff = users.create_user(get_db(), users.SYSTEM, login="bench-staff", display_name="保存する職員",
                                      department_id=department, roles=("staff",), password="bench-password")
        saver = Saver(app, staff, args.pause)
        saver.start()
        time.sleep(0.5)

        # The import runs on a connection without the after-commit hook, so that the
        # index writes are timed on their own below.
        db = open_db(database_path(folder))
        phases = {}
        start = time.perf_counter()
        preview = imports.import_external_cases(db, path, dry_run=True)
        phases["preview"] = (start, time.perf_counter())
        print(f"preview: {phases['preview'][1] - start:.2f} s — new {preview.new}, "
              f"duplicates {len(preview.duplicates)}")

        last_progress = []
        start = time.perf_counter()
        done = imports.import_external_cases(db, path, progress=lambda n: last_progress.append(time.perf_counter()))
        phases["import"] = (start, time.perf_counter())
        write = phases["import"][1] - last_progress[-1]
        print(f"import: {phases['import'][1] - start:.2f} s (plan {last_progress[-1] - start:.2f} s, "
              f"write transaction and commit {write:.2f} s) — new {done.new}")

        start = time.perf_counter()
        search.index_cases(search.get_index(folder), db, set(done.changed_case_ids), timeout=60)
        phases["index"] = (start, time.perf_counter())
        print(f"index {len(done.changed_case_ids):,} new cases after the commit: "
              f"{phases['index'][1] - start:.2f} s")

        time.sleep(0.3)
        saver.stop.set()
        saver.join()
        for name, (begin, end) in phases.items():
            print(f"staff saves during {name}: {summary(saver.during(begin, end))}")
        print(f"staff saves overall: {summary([s for _, s in saver.timings])}; failed: {len(saver.errors)}")
        for error in sorted(set(saver.errors))[:5]:
            print(f"  {error}")


if __name__ == "__main__":
    main()
