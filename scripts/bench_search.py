#!/usr/bin/env python
"""Search speed and size on synthetic corpora of realistic Japanese cases.

For each size (default 20,000 and 100,000 cases) it builds a throwaway data folder whose
cases are recombined from the seed corpus (titles, summary sentences, causes and
countermeasures of the 180 real cases, shuffled across municipalities, types and years),
then prints:

- full rebuild time and rate (``search.rebuild``, Whoosh's multi-process writer), index size;
- the warm-up that `serve` runs at start (every segment's columns loaded once);
- query latency p50/p95/max inside ``kb.search.search_cases`` (dev queries, their variants,
  single words, two-word queries, and filter-only browsing), and how many hit the time limit;
- what the office's vocabulary adds: the same queries with it and with an empty one,
  interleaved in one process, p95 and p50 of each (issue #14 allows +20 % at p95);
- the same through HTTP (waitress on 127.0.0.1, a signed-in session), p50/p95/max;
- the time to index one new case after its commit;
- peak memory of the searching process: all of it (max RSS), and its private part (anonymous
  memory, sampled every 10 ms) — RSS also counts the index files each server thread maps,
  which are the operating system's shared page cache, once in physical memory.

    .venv/bin/python scripts/bench_search.py [--sizes 20000,100000] [--queries 200] [--keep DIR]

``--keep DIR`` builds each size's data folder in DIR/<size> and keeps it; a later run with
the same DIR skips the fill and the rebuild and runs only the search half, on a copy (the
benchmark indexes one new case, which must not pile up in the kept folder). A kept index of
an older schema (``search.SCHEMA_VERSION``) is rebuilt in DIR/<size> first, once.
"""

import argparse
import json
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb import create_app, ranking, search, users, vocabulary  # noqa: E402
from kb.db import database_path, get_db, mark_changed, open_db, transaction, utcnow  # noqa: E402
from kb.migrations import migrate  # noqa: E402

SEED = ROOT / "data" / "seed" / "external_cases.jsonl"
PASSWORD = "bench-password-123"
WORDS = ["FAX", "メール", "USB", "紛失", "誤送付", "窓口", "委託", "廃棄", "封入", "BCC",
         "個人情報", "通知書", "名簿", "住所", "ホームページ", "不正アクセス", "電話", "研修"]


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def synthetic_rows(count, rng):
    seed = [json.loads(line) for line in SEED.read_text(encoding="utf-8").splitlines() if line]
    sentences = [s + "。" for case in seed for s in case["summary"].split("。") if s.strip()]
    municipalities = sorted({case["municipality"] for case in seed})
    now = utcnow()
    for number in range(count):
        base = rng.choice(seed)
        year = rng.randint(2005, 2026)
        day = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        yield {
            "kind": "incident", "origin": "external", "status": "published",
            "external_id": f"bench-{number:06d}", "title": base["title"],
            "occurred_on": day, "published_on": day,
            "municipality": rng.choice(municipalities), "prefecture": base["prefecture"],
            "department_name": base["department"], "task": None,
            "incident_type": base["incident_type"], "channel": base["channel"],
            "summary": "".join(rng.sample(sentences, rng.randint(2, 4))),
            "affected_count": base["affected_count"],
            "data_items": json.dumps(base["data_items"], ensure_ascii=False),
            "causes": json.dumps(rng.choice(seed)["causes"], ensure_ascii=False),
            "created_at": now, "updated_at": now, "published_at": now,
        }, rng.choice(seed)["countermeasures"]


def fill(db, count, rng):
    from kb.cases import infer_task

    started = time.perf_counter()
    with transaction(db):
        for row, measures in synthetic_rows(count, rng):
            row["task"] = infer_task(row["incident_type"], row["channel"])
            case_id = db["cases"].insert(row).last_pk
            db["countermeasures"].insert_all(
                {"case_id": case_id, "position": i, "text": text, "created_at": row["created_at"],
                 "updated_at": row["created_at"]} for i, text in enumerate(measures))
    return time.perf_counter() - started


def queries(rng, n):
    dev = [json.loads(line)["query"] for line in
           (ROOT / "data" / "seed" / "queries_dev.jsonl").read_text(encoding="utf-8").splitlines() if line]
    variants = ["ＦＡＸ 誤送信", "ファクス 誤送信", "ＵＳＢ 紛失", "ろうえい 研修", "個人情報"]
    pool = dev + variants + WORDS + [f"{a} {b}" for a in WORDS for b in WORDS if a != b][:60]
    return [rng.choice(pool) for _ in range(n)]


def bench_core(app, user, texts):
    """(milliseconds per query, how many were partial, the three slowest queries)."""
    timings, partial = [], 0
    ix = search.get_index(app.config["DATA_DIR"])
    with app.app_context():
        db = get_db()
        for i, text in enumerate(texts):
            filters = {"incident_type": "postal_misdelivery"} if i % 10 == 9 else None
            started = time.perf_counter()
            result = search.search_cases(ix, db, user, text if i % 10 != 9 else "", filters=filters,
                                         page=1 + i % 3)
            timings.append((time.perf_counter() - started) * 1000)
            partial += result.partial
            search._cache.clear()  # measure the search, not the caches
            ranking._snippet.cache_clear()
    slowest = sorted(zip(timings, texts), reverse=True)[:3]
    return timings, partial, slowest


def bench_vocabulary_cost(app, user, texts):
    """Milliseconds per query with the office's vocabulary and with an empty one, the same
    queries interleaved one by one (the machine's load falls on both alike), feedback on in
    both: {"on": [...], "off": [...]}. Issue #14: the vocabulary adds at most 20 % to p95."""
    ix = search.get_index(app.config["DATA_DIR"])
    current, empty = vocabulary.current, vocabulary.Vocabulary(0, [])
    timings = {"on": [], "off": []}
    try:
        with app.app_context():
            db = get_db()
            for i, text in enumerate(texts):
                for variant in (("on", "off") if i % 2 == 0 else ("off", "on")):
                    # What search_cases reads for the vocabulary: the real one, or none.
                    vocabulary.current = current if variant == "on" else (lambda db: empty)
                    search._cache.clear()
                    ranking._snippet.cache_clear()
                    started = time.perf_counter()
                    search.search_cases(ix, db, user, text, page=1 + i % 3)
                    timings[variant].append((time.perf_counter() - started) * 1000)
    finally:
        vocabulary.current = current
    return timings


def bench_http(app, texts):
    from waitress import wasyncore
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.effective_port}"
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(base + "/login").read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    opener.open(base + "/login", urllib.parse.urlencode(
        {"csrf_token": token, "login": "bench", "password": PASSWORD}).encode())
    timings = []
    for text in texts:
        search._cache.clear()
        started = time.perf_counter()
        opener.open(base + "/cases?" + urllib.parse.urlencode({"q": text})).read()
        timings.append((time.perf_counter() - started) * 1000)
    server.task_dispatcher.shutdown()
    # Closed from the server's own loop thread: closing its sockets from here while that
    # thread waits in select() made it die with "Bad file descriptor".
    server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
    thread.join(5)
    return timings


def bench_update(app, user):
    with app.app_context():
        db = get_db()
        now = utcnow()
        started = None
        with transaction(db):
            case_id = db["cases"].insert({
                "kind": "near_miss", "origin": "internal", "status": "draft", "title": "計測用",
                "summary": "FAXの短縮ダイヤルを押し間違えそうになった。", "reporter_id": user.user_id,
                "department_id": user.department_id, "created_at": now, "updated_at": now}).last_pk
            mark_changed(db, case_id)
            started = time.perf_counter()  # the after-commit hook indexes the case
        return (time.perf_counter() - started) * 1000


def run(size, n_queries, rng, keep=None):
    if keep is not None:
        kept = Path(keep) / str(size)
        if not (kept / "bench-complete").exists():
            shutil.rmtree(kept, ignore_errors=True)
            kept.mkdir(parents=True)
            build(str(kept), size, n_queries, rng, serve=False)
            (kept / "bench-complete").touch()
        else:
            print(f"\n== {size:,} cases (reusing {kept})", flush=True)
            if not search.is_current(kept):
                # Kept under an older index schema: rebuild it here, as the full benchmark
                # does, or the search half would rebuild it in its own process (one
                # process, counted in its memory) on every run.
                db = open_db(database_path(kept))
                migrate(db)
                started = time.perf_counter()
                count = search.rebuild(db, kept, procs=2)
                db.close()
                print(f"index of an older schema rebuilt: {count:,} cases in "
                      f"{time.perf_counter() - started:.1f} s (procs=2)", flush=True)
        with tempfile.TemporaryDirectory() as data_dir:
            shutil.copytree(kept, data_dir, dirs_exist_ok=True)
            subprocess.run([sys.executable, __file__, "--serve", data_dir,
                            "--queries", str(n_queries)], check=True)
        return
    with tempfile.TemporaryDirectory() as data_dir:
        build(data_dir, size, n_queries, rng)


def build(data_dir, size, n_queries, rng, serve=True):
    """Fill a data folder with ``size`` cases, rebuild its index; then, if ``serve``,
    run the search half on it in a fresh process."""
    app = create_app({"TESTING": True, "DATA_DIR": data_dir, "SECRET_KEY": "bench"})
    app.test_cli_runner().invoke(args=["init"])
    with app.app_context():
        db = get_db()
        insert_seconds = fill(db, size - 180, rng)
        department_id = users.get_department_by_code(db, "kumin-koseki")["department_id"]
        users.create_user(db, users.SYSTEM, login="bench", display_name="計測",
                          department_id=department_id, roles=["staff"], password=PASSWORD)
        started = time.perf_counter()
        count = search.rebuild(db, data_dir, procs=2)
        seconds = time.perf_counter() - started
    size_mb = sum(f.stat().st_size for f in search.index_path(data_dir).rglob("*")) / 2**20
    print(f"\n== {count:,} cases")
    print(f"database fill         {insert_seconds:6.1f} s")
    print(f"full rebuild          {seconds:6.1f} s  ({count / seconds:,.0f} cases/s, procs=2)")
    print(f"index size            {size_mb:6.1f} MB", flush=True)
    # Queries run in a fresh process, as the app would: its memory is the app's.
    if serve:
        subprocess.run([sys.executable, __file__, "--serve", data_dir, "--queries", str(n_queries)],
                       check=True)


def serve(data_dir, n_queries):
    """The query half of the benchmark, in a process that only opens the index."""
    rng = random.Random(7)
    private = PrivateMemory()
    app = create_app({"TESTING": True, "DATA_DIR": data_dir, "SECRET_KEY": "bench",
                      "LOGIN_RATE_LIMIT": "1000 per minute"})
    with app.app_context():
        user = users.get_user(get_db(), get_db().execute(
            "SELECT user_id FROM users WHERE login = 'bench'").fetchone()[0])
        started = time.perf_counter()
        search.warm(data_dir)  # as `serve` does in the background at start
        first = (time.perf_counter() - started) * 1000
    texts = queries(rng, n_queries)
    core, partial, slowest = bench_core(app, user, texts)
    cost = bench_vocabulary_cost(app, user, texts)
    http = bench_http(app, texts[: max(20, n_queries // 2)])
    update_ms = bench_update(app, user)
    print(f"warm-up               {first:6.1f} ms (loads every segment's columns; `serve` does"
          " this in the background at start)")
    print(f"search_cases          p50 {percentile(core, .5):6.1f} ms  p95 {percentile(core, .95):6.1f} ms"
          f"  max {max(core):6.1f} ms  ({len(core)} queries, {partial} hit the time limit)")
    print("  slowest: " + ", ".join(f"{text} {ms:.0f} ms" for ms, text in slowest))
    off, on = (percentile(cost[v], .95) for v in ("off", "on"))
    print(f"vocabulary cost       p95 {off:6.1f} → {on:6.1f} ms ({(on / off - 1) * 100:+.0f} %),"
          f" p50 {percentile(cost['off'], .5):.1f} → {percentile(cost['on'], .5):.1f} ms"
          " (the same queries without and with the vocabulary, interleaved; issue #14: ≤ +20 %)")
    print(f"GET /cases?q=…        p50 {percentile(http, .5):6.1f} ms  p95 {percentile(http, .95):6.1f} ms"
          f"  max {max(http):6.1f} ms  ({len(http)} requests)")
    print(f"index one new case    {update_ms:6.1f} ms (after commit)")
    print(f"peak memory (RSS)     {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:6.0f} MB"
          f" (the searching process; private {private.stop():.0f} MB)")


class PrivateMemory:
    """The peak of this process's anonymous memory (RssAnon), sampled in a thread."""

    def __init__(self):
        self.peak, self.done = 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.done.wait(0.01):
            status = Path("/proc/self/status").read_text()
            self.peak = max(self.peak, int(re.search(r"RssAnon:\s+(\d+)", status).group(1)))

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return self.peak / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", metavar="DIR",
                        help="keep each size's data folder in DIR/<size>; reuse it next time")
    parser.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.queries)
        return
    rng = random.Random(20261126)
    for size in (int(s) for s in args.sizes.split(",")):
        run(size, args.queries, rng, args.keep)


if __name__ == "__main__":
    main()
