#!/usr/bin/env python
"""Roster import speed: a realistic CP932 職員名簿 over the seeded departments.

Builds a throwaway data folder with `init`, writes a roster of N people (default 3,500:
kanji names with kana, one 課長 per 課, 係長/主任/主事, about 6 % on some leave with dates,
a few 退職, e-mail addresses, plus columns 人事 exports that the app ignores), then times
`flask import-staff FILE` three times through the real command: the first import, the same
file again (nothing changes), and a file with 100 people changed (transfers, leave, names).
Then signs in as an admin and times the staff list pages (/admin/staff/) through the Flask
test client — the first page, a late page, a 部, a status, a role, searches by kana, name and
職員番号 — each --repeat times, and prints p50/p95 (target: 200 ms a page).

    .venv/bin/python scripts/bench_staff.py [--people 3500] [--seed 12] [--repeat 30]
"""

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb import create_app, users  # noqa: E402
from kb.db import get_db  # noqa: E402

SURNAMES = [("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"),
            ("伊藤", "イトウ"), ("渡辺", "ワタナベ"), ("山本", "ヤマモト"), ("中村", "ナカムラ"),
            ("小林", "コバヤシ"), ("加藤", "カトウ"), ("吉田", "ヨシダ"), ("山田", "ヤマダ"),
            ("佐々木", "ササキ"), ("山口", "ヤマグチ"), ("松本", "マツモト"), ("井上", "イノウエ"),
            ("木村", "キムラ"), ("林", "ハヤシ"), ("斎藤", "サイトウ"), ("清水", "シミズ"),
            ("髙橋", "タカハシ"), ("齋藤", "サイトウ"), ("渡邉", "ワタナベ"), ("石川", "イシカワ")]
GIVEN = [("太郎", "タロウ"), ("花子", "ハナコ"), ("健一", "ケンイチ"), ("美咲", "ミサキ"),
         ("翔太", "ショウタ"), ("陽菜", "ヒナ"), ("大輔", "ダイスケ"), ("由美", "ユミ"),
         ("直樹", "ナオキ"), ("恵子", "ケイコ"), ("拓也", "タクヤ"), ("真由美", "マユミ"),
         ("誠", "マコト"), ("愛", "アイ"), ("浩二", "コウジ"), ("さくら", "サクラ")]
LEAVES = [("休職", 60, 180), ("病気休暇", 10, 90), ("産前産後休暇", 98, 98),
          ("育児休業", 180, 540), ("介護休暇", 14, 90)]
HEADER = ["職員番号", "氏名", "氏名カナ", "所属", "役職", "在籍区分", "区分開始日", "区分終了日",
          "メールアドレス", "生年月日", "採用年月日"]


def make_roster(departments: list[dict], people: int, rng: random.Random) -> list[list[str]]:
    rows = []
    for n in range(people):
        department = departments[n % len(departments)]
        (surname, surname_kana), (given, given_kana) = rng.choice(SURNAMES), rng.choice(GIVEN)
        if n < len(departments):
            position = "所長" if department["name"].endswith("所") else "課長"
        else:
            position = rng.choices(["係長", "主任", "主事", "主事", "会計年度任用職員"], [2, 3, 6, 6, 3])[0]
        status, start, until = "", "", ""
        draw = rng.random()
        if draw < 0.06:
            status, shortest, longest = rng.choice(LEAVES)
            first = 20240401 + rng.randrange(0, 600)
            start = f"{first // 10000}/{first // 100 % 100 % 12 + 1}/{first % 100 % 28 + 1}"
            year, month, day = (int(part) for part in start.split("/"))
            length = rng.randrange(shortest, longest + 1)
            end_year, end_month = year + (month + length // 30 - 1) // 12, (month + length // 30 - 1) % 12 + 1
            until = f"{end_year}/{end_month}/{min(day, 28)}"
        elif draw < 0.065:
            status, start = "退職", "2025/3/31"
        rows.append([f"{20000 + n * 7:06d}", f"{surname}　{given}", f"{surname_kana} {given_kana}",
                     department["name"] if n % 3 else department["code"], position, status, start,
                     until, f"staff{20000 + n * 7:06d}@city.example.lg.jp",
                     f"19{rng.randrange(60, 99)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                     f"20{rng.randrange(0, 25):02d}-04-01"])
    return rows


def write(path: Path, rows: list[list[str]]) -> Path:
    path.write_bytes(("\r\n".join(",".join(row) for row in [HEADER, *rows]) + "\r\n").encode("cp932"))
    return path


def roster_office(folder: Path, people: int, rng: random.Random):
    """An app on a fresh data folder under ``folder`` (``init``) with a generated roster of
    ``people`` imported; for the benchmarks that need an office of staff."""
    app = create_app({"TESTING": True, "DATA_DIR": str(folder / "data"), "SECRET_KEY": "bench",
                      "PUBLIC_URL": "https://kb.example.lg.jp"})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["init"]).exit_code == 0
    with app.app_context():
        departments = [d for d in users.list_departments(get_db()) if d["parent_id"]]
    result = runner.invoke(args=["import-staff", str(write(folder / "roster.csv", make_roster(
        departments, people, rng))), "--json"])
    assert result.exit_code == 0, result.output[:2000]
    return app


def timed_import(runner, path: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    result = runner.invoke(args=["import-staff", str(path), "--json"])
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        sys.exit(f"import failed: {result.output[:2000]} {result.exception!r}")
    return elapsed, json.loads(result.stdout)


def time_pages(app, repeat: int) -> None:
    """Sign in as a new local admin and time each kind of staff list page."""
    with app.app_context():
        db = get_db()
        department = users.get_department_by_code(db, "kikaku-johoseisaku")
        users.create_user(db, users.SYSTEM, login="bench-admin", display_name="計測 管理者",
                          department_id=department["department_id"], roles=["admin"],
                          password="bench-password-123")
        bu = users.get_department_by_code(db, "fukushi")["department_id"]
    client = app.test_client()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/login").get_data(as_text=True))
    client.post("/login", data={"csrf_token": token.group(1), "login": "bench-admin",
                                "password": "bench-password-123"})
    pages = {"first page": "", "page 40": "page=40", "a 部 (福祉部)": f"department_id={bu}",
             "status 退職": "status=retired", "role 所属長": "role=manager",
             "search kana さとう": "q=さとう", "search name 佐藤": "q=佐藤",
             "search 職員番号": "q=020049", "部 + status + search": f"department_id={bu}&status=active&q=タ"}
    every = []
    for name, query in pages.items():
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(f"/admin/staff/?{query}")
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                sys.exit(f"{name}: HTTP {response.status_code}")
        count = re.search(r'class="result-count"[^>]*>([^<]+)<', response.get_data(as_text=True)).group(1)
        every += times
        print(f"  {name:<24} p50 {statistics.median(times):6.1f} ms  p95 {_p95(times):6.1f} ms  ({count})")
    print(f"staff list pages, all kinds: p50 {statistics.median(every):.1f} ms, p95 {_p95(every):.1f} ms"
          f" (target <= 200 ms: {'met' if _p95(every) <= 200 else 'NOT met'})")


def _p95(times: list[float]) -> float:
    return sorted(times)[max(0, round(len(times) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=3500)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=30, help="requests per kind of list page")
    options = parser.parse_args()
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        app = create_app({"TESTING": True, "DATA_DIR": str(folder / "data"), "SECRET_KEY": "bench"})
        runner = app.test_cli_runner()
        assert runner.invoke(args=["init"]).exit_code == 0
        with app.app_context():
            departments = [d for d in users.list_departments(get_db()) if d["parent_id"]]
        rows = make_roster(departments, options.people, rng)
        roster = write(folder / "roster.csv", rows)
        first, counts = timed_import(runner, roster)
        print(f"first import of {options.people:,} rows ({roster.stat().st_size / 1024:.0f} KB CP932,"
              f" {len(departments)} 課): {first:.2f} s  {counts}")
        again, counts = timed_import(runner, roster)
        print(f"the same file again (no change): {again:.2f} s  {counts}")
        changed = [list(row) for row in rows]
        for row in rng.sample(changed, 100):
            kind = rng.randrange(3)
            if kind == 0:
                row[3] = rng.choice([d["code"] for d in departments if row[3] not in (d["code"], d["name"])])
            elif kind == 1:
                row[5:8] = ["病気休暇", "2026/1/6", "2026/2/27"]
            else:
                row[1] = row[1].replace("　", "　新")
        update, counts = timed_import(runner, write(folder / "changed.csv", changed))
        print(f"100 people changed: {update:.2f} s  {counts}")
        started = time.perf_counter()
        staff_list = runner.invoke(args=["staff", "--json"])
        listing = time.perf_counter() - started
        print(f"`staff --json` ({len(json.loads(staff_list.stdout)):,} accounts): {listing:.2f} s")
        print("targets: first import <= 10 s, re-import with no change <= 5 s:",
              "met" if first <= 10 and again <= 5 else "NOT met")
        print(f"staff list pages ({options.repeat} requests each):")
        time_pages(app, options.repeat)


if __name__ == "__main__":
    main()
