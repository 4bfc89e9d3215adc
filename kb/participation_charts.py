"""自己点検 participation as the council asked to see it: the figures per 部 and 課 beside
the previous campaign (and their CSV), the 部局 × checklist-item table of error rates (the
weak points of each 部局), and participation beside the reports of the last 12 months
(the correlation view).

Everything here is an aggregate over people; nobody's answers are shown. A 部局 is a
top-level department (部, or an office without 課); a person counts in the 部局 above the
department the campaign's eligibility gives them. Open campaigns give live figures, closed
ones the frozen figures (``participation.people_of``).

Who sees what: reviewers see everything; a 所属長 (manager) sees the figures per 部 and 課
office-wide — they act on participation, and these are counts — but the mean score only
where at least ``MIN_GROUP`` people completed, so that it never stands for one person's
score. The weak points and the correlation view are for reviewers.
"""

import math
from datetime import date, timedelta

from kb import campaigns, dates, participation
from kb.cases import CASE_DATE, readable_clause
from kb.exceptions import NotFound
from kb.quiz import code_order
from kb.rendering import excel_csv
from kb.roles import require_role

# Below this many completed people a mean score is one or two people's score: hidden
# from managers (reviewers see every result anyway). The same bound as item rates.
MIN_GROUP = participation.MIN_GROUP
REPORT_WINDOW_DAYS = 365


def _departments(db) -> dict[int, dict]:
    """Every department with ``bureau_id``: its top-level ancestor (itself for a 部)."""
    departments = {row["department_id"]: dict(row) for row in db.query(
        "SELECT department_id, code, name, parent_id, position FROM departments")}
    for department in departments.values():
        top, seen = department, set()
        while top["parent_id"] in departments and top["department_id"] not in seen:
            seen.add(top["department_id"])
            top = departments[top["parent_id"]]
        department["bureau_id"] = top["department_id"]
    return departments


def _visible_campaign(db, actor, campaign_id: int) -> dict:
    """The campaign for a reader of its figures: reviewers and managers; NotFound for a
    draft (it has no participation yet) or an unknown id."""
    require_role(actor, "reviewer", "manager")
    campaign = participation.campaign_row(db, campaign_id)
    if campaign["status"] == "draft":
        raise NotFound(f"campaign {campaign_id} has not opened")
    return campaign


def list_campaigns(db, actor) -> list[dict]:
    """Campaigns that have opened, newest first, with their total figures: what the
    participation pages list. Reviewers and managers."""
    require_role(actor, "reviewer", "manager")
    rows = db.execute_returning_dicts(
        "SELECT campaign_id, title, opens_at, closes_at, status FROM campaigns"
        " WHERE status != 'draft' ORDER BY opens_at DESC, campaign_id DESC")
    for row in rows:
        row["total"] = participation.campaign_report(db, row["campaign_id"])["total"]
    return rows


def previous_campaign(db, campaign: dict) -> dict | None:
    """The campaign that opened last before this one (open or closed), or None. One closed
    before its opening time (``campaigns.never_ran``) is skipped: its 0 % is no baseline."""
    rows = db.execute_returning_dicts(
        "SELECT * FROM campaigns WHERE status != 'draft' AND campaign_id != ?"
        " AND (opens_at < ? OR (opens_at = ? AND campaign_id < ?))"
        " ORDER BY opens_at DESC, campaign_id DESC",
        [campaign["campaign_id"], campaign["opens_at"], campaign["opens_at"],
         campaign["campaign_id"]])
    return next((row for row in rows if not campaigns.never_ran(row)), None)


def _tally(db, campaign: dict) -> dict[int, dict]:
    """{department_id: {"eligible", "completed", "excluded": {reason: n}, "points",
    "questions"}} for the people of the target; a person's result is their first
    finished attempt (as in ``participation.campaign_report``)."""
    first: dict[int, tuple] = {}
    for user_id, score, questions in db.execute(
            "SELECT user_id, score, json_array_length(question_ids) FROM campaign_attempts"
            " WHERE campaign_id = ? AND finished_at IS NOT NULL ORDER BY attempt_id",
            [campaign["campaign_id"]]):
        first.setdefault(user_id, (score or 0, questions or 0))
    counts: dict[int, dict] = {}
    for user_id, person in participation.people_of(db, campaign).items():
        if person["reason"] == "outside_target":
            continue
        entry = counts.setdefault(person["department_id"], {
            "eligible": 0, "completed": 0, "excluded": {}, "points": 0, "questions": 0})
        if not person["eligible"]:
            entry["excluded"][person["reason"]] = entry["excluded"].get(person["reason"], 0) + 1
        else:
            entry["eligible"] += 1
            if user_id in first:
                entry["completed"] += 1
                entry["points"] += first[user_id][0]
                entry["questions"] += first[user_id][1]
    return counts


def _add(total: dict, entry: dict) -> None:
    for key in ("eligible", "completed", "points", "questions"):
        total[key] += entry[key]
    for reason, n in entry["excluded"].items():
        total["excluded"][reason] = total["excluded"].get(reason, 0) + n


def _empty() -> dict:
    return {"eligible": 0, "completed": 0, "excluded": {}, "points": 0, "questions": 0}


def _figures(entry: dict, *, show_score: bool) -> dict:
    """rate (0–1), mean_score (points per completed person) and mean_percent (correct
    answers of all answers, 0–100) from a tally entry; None where undefined or hidden."""
    scored = show_score and entry["completed"] > 0
    return {"eligible": entry["eligible"], "completed": entry["completed"],
            "excluded": dict(sorted(entry["excluded"].items())),
            "excluded_total": sum(entry["excluded"].values()),
            "rate": participation._rate(entry["completed"], entry["eligible"]),
            "mean_score": round(entry["points"] / entry["completed"], 1) if scored else None,
            "mean_percent": round(100 * entry["points"] / entry["questions"], 1)
            if scored and entry["questions"] else None}


def _by_bureau(departments: dict, counts: dict) -> tuple[dict, dict]:
    """Tallies summed per 部局, and the 課 tallies by their 部局."""
    bureaus: dict[int, dict] = {}
    sections: dict[int, list] = {}
    for department_id, entry in counts.items():
        bureau_id = departments[department_id]["bureau_id"]
        _add(bureaus.setdefault(bureau_id, _empty()), entry)
        if bureau_id != department_id:
            sections.setdefault(bureau_id, []).append(department_id)
    return bureaus, sections


def figures(db, actor, campaign_id: int) -> dict:
    """The figures per 部 and 課 of one campaign, with the previous campaign's rates beside.

    Returns {"campaign", "previous" (campaign row or None), "closed", "bureaus": [{
    "department_id", "code", "name", "level": "部", "eligible", "completed", "excluded":
    {reason: n}, "excluded_total", "rate", "mean_score", "mean_percent", "previous_rate",
    "sections": [the same for each 課, "level": "課"]}], "sections" (every 課 row),
    "total", "scores_hidden" (True when some mean scores were withheld)}. Rows in the
    office's order; the charts sort them. NotFound for drafts; Forbidden for anyone but
    reviewers and managers.
    """
    campaign = _visible_campaign(db, actor, campaign_id)
    reviewer = actor.has_role("reviewer")
    departments = _departments(db)
    counts = _tally(db, campaign)
    bureau_counts, bureau_sections = _by_bureau(departments, counts)
    previous = previous_campaign(db, campaign)
    before: dict[int, float | None] = {}
    if previous:
        old = _tally(db, previous)
        old_bureaus, _ = _by_bureau(departments, old)
        for department_id, entry in list(old.items()) + list(old_bureaus.items()):
            before[department_id] = participation._rate(entry["completed"], entry["eligible"])
    hidden = False

    def few(completed: int) -> bool:
        return 0 < completed < MIN_GROUP

    def row(department_id: int, entry: dict, level: str, withheld: int = 0) -> dict:
        """``withheld``: completed people of the parts whose scores are hidden. A whole is
        hidden too when they are a few: the whole minus its shown parts would be their
        score (区民部 minus its 課 with scores = the one person of the remaining 課)."""
        nonlocal hidden
        show = reviewer or (entry["completed"] >= MIN_GROUP and not few(withheld))
        hidden = hidden or (not show and entry["completed"] > 0)
        department = departments[department_id]
        return {"department_id": department_id, "code": department["code"],
                "name": department["name"], "level": level,
                **_figures(entry, show_score=show), "previous_rate": before.get(department_id)}

    order = lambda d: (departments[d]["position"], d)  # noqa: E731
    bureaus, all_sections = [], []
    withheld_total = 0
    for bureau_id in sorted(bureau_counts, key=order):
        sections = [row(d, counts[d], "課")
                    for d in sorted(bureau_sections.get(bureau_id, []), key=order)]
        # the 部's own people (no 課) have no row of their own: the 部 minus its 課
        own = counts[bureau_id]["completed"] if sections and bureau_id in counts else 0
        withheld = own + sum(s["completed"] for s in sections if s["mean_score"] is None)
        entry = row(bureau_id, bureau_counts[bureau_id], "部", withheld=withheld)
        if entry["mean_score"] is None:
            # the office minus every shown row leaves the hidden groups of hidden 部
            withheld_total += withheld if sections else entry["completed"]
        entry["sections"] = sections
        for section in entry["sections"]:
            section["parent_name"] = entry["name"]
        all_sections += entry["sections"]
        bureaus.append(entry)
    total = _empty()
    for entry in bureau_counts.values():
        _add(total, entry)
    return {"campaign": campaign, "previous": previous, "closed": campaign["status"] == "closed",
            "bureaus": bureaus, "sections": all_sections,
            # the whole's mean is a person's score too when fewer than MIN_GROUP answered
            "total": _figures(total, show_score=reviewer or (
                total["completed"] >= MIN_GROUP and not few(withheld_total))),
            "scores_hidden": hidden}


def sorted_for_chart(rows: list[dict]) -> list[dict]:
    """Rows with eligible people, lowest rate first (where to act comes first)."""
    return sorted((r for r in rows if r["rate"] is not None),
                  key=lambda r: (r["rate"], -r["eligible"], r["code"]))


def figures_csv(db, actor, campaign_id: int) -> bytes:
    """The figures per 部 and 課 as CSV for Excel (UTF-8 with BOM, formula-safe): one row
    per 部 followed by its 課. Same access as ``figures``."""
    data = figures(db, actor, campaign_id)
    rows = []
    for bureau in data["bureaus"]:
        for entry in [bureau] + bureau["sections"]:
            rows.append([
                entry["level"], entry["code"], entry["name"],
                bureau["name"] if entry["level"] == "課" else "",
                entry["eligible"], entry["completed"], _percent(entry["rate"]),
                "" if entry["mean_score"] is None else entry["mean_score"],
                "" if entry["mean_percent"] is None else entry["mean_percent"],
                entry["excluded_total"],
                "、".join(f"{participation.reason_label(r)} {n}人"
                         for r, n in entry["excluded"].items()),
                _percent(entry["previous_rate"])])
    return excel_csv(["区分", "コード", "所属", "部", "対象", "回答", "回答率(%)", "平均点",
                      "平均正答率(%)", "対象外", "対象外の内訳", "前回の回答率(%)"], rows)


def _percent(rate) -> str | float:
    return "" if rate is None else round(rate * 100, 1)


def weak_points(db, actor, campaign_id: int) -> dict:
    """The 部局 × checklist-item table of error rates, over the finished attempts of the
    campaign's eligible people (reviewers only; NotFound for drafts).

    Returns {"campaign", "items": [{"code", "text"}] in checklist order, "bureaus":
    [{"department_id", "code", "name", "cells": {item_code: {"answers", "wrong",
    "rate"}}}], "overall": {item_code: cell}}; ``rate`` is wrong / answers (0–1).
    """
    campaign = _visible_campaign(db, actor, campaign_id)
    require_role(actor, "reviewer")
    departments = _departments(db)
    people = {uid: p for uid, p in participation.people_of(db, campaign).items() if p["eligible"]}
    bureaus: dict[int, dict] = {}
    overall: dict[str, dict] = {}
    for user_id, item_code, answers, wrong in db.execute(
            "SELECT t.user_id, q.item_code, count(*), sum(1 - a.correct)"
            " FROM campaign_answers a JOIN campaign_attempts t USING (attempt_id)"
            " JOIN campaign_questions q USING (question_id)"
            " WHERE t.campaign_id = ? AND t.finished_at IS NOT NULL AND q.item_code != ''"
            " GROUP BY t.user_id, q.item_code", [campaign_id]):
        if user_id not in people:
            continue
        bureau_id = departments[people[user_id]["department_id"]]["bureau_id"]
        for cells in (bureaus.setdefault(bureau_id, {}), overall):
            cell = cells.setdefault(item_code, {"answers": 0, "wrong": 0})
            cell["answers"] += answers
            cell["wrong"] += wrong
    for cells in [overall, *bureaus.values()]:
        for cell in cells.values():
            cell["rate"] = participation._rate(cell["wrong"], cell["answers"])
    texts = {row[0]: row[1] for row in db.execute(
        "SELECT i.code, i.text FROM checklist_items i JOIN checklist_versions v USING (version_id)"
        " ORDER BY v.is_current, v.version_id")}
    asked = {row[0] for row in db.execute(
        "SELECT DISTINCT item_code FROM campaign_questions WHERE campaign_id = ? AND item_code != ''",
        [campaign_id])}
    items = [{"code": code, "text": texts.get(code, "")}
             for code in sorted(asked, key=code_order)]
    return {"campaign": campaign, "items": items, "overall": overall,
            "bureaus": [{"department_id": b, "code": departments[b]["code"],
                         "name": departments[b]["name"], "cells": bureaus[b]}
                        for b in sorted(bureaus, key=lambda d: (departments[d]["position"], d))]}


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """The correlation coefficient of two series, 3 decimals; None for fewer than three
    pairs or a series that does not vary."""
    if len(xs) < 3:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return round(sxy / math.sqrt(sxx * syy), 3)


def correlation(db, actor, campaign_id: int, today: date | None = None) -> dict:
    """Per 部局: the campaign's participation and mean score beside the incidents and
    near-misses reported in the 12 months up to ``today``, per 100 eligible staff
    (reviewers only; NotFound for drafts).

    Reports count as on the dashboard: internal ones once submitted, and only those the
    reader may read (``cases.readable_clause`` without drafts), by their date
    (``cases.CASE_DATE``: when they occurred, else were discovered, else were filed).
    Returns {"campaign", "since", "until", "bureaus": [{"code",
    "name", "eligible", "completed", "rate", "mean_percent", "incidents", "near_misses",
    "incidents_per_100", "near_misses_per_100"}], "r": {"rate_incidents",
    "rate_near_misses", "score_incidents", "score_near_misses"}}: Pearson coefficients
    over the 部局 with eligible people (None when undefined).
    """
    campaign = _visible_campaign(db, actor, campaign_id)
    require_role(actor, "reviewer")
    today = today or dates.office_today()
    since = today - timedelta(days=REPORT_WINDOW_DAYS)
    departments = _departments(db)
    bureau_counts, _ = _by_bureau(departments, _tally(db, campaign))
    readable, params = readable_clause(actor, drafts=False)
    reports: dict[int, list[int]] = {}
    for department_id, incidents, near_misses in db.execute(
            "SELECT c.department_id, sum(c.kind = 'incident'), sum(c.kind = 'near_miss')"
            " FROM cases c WHERE c.origin = 'internal'"
            " AND c.status IN ('submitted', 'approved', 'published')"
            f" AND {readable} AND {CASE_DATE} >= ? AND substr({CASE_DATE}, 1, 10) <= ?"
            " AND c.department_id IS NOT NULL GROUP BY c.department_id",
            [*params, since.isoformat(), today.isoformat()]):
        if department_id not in departments:
            continue
        bucket = reports.setdefault(departments[department_id]["bureau_id"], [0, 0])
        bucket[0] += incidents or 0
        bucket[1] += near_misses or 0
    rows = []
    for bureau_id in sorted(set(bureau_counts) | set(reports),
                            key=lambda d: (departments[d]["position"], d)):
        entry = _figures(bureau_counts.get(bureau_id, _empty()), show_score=True)
        incidents, near_misses = reports.get(bureau_id, [0, 0])
        per = (lambda n: round(100 * n / entry["eligible"], 2)) if entry["eligible"] else (lambda n: None)
        rows.append({"department_id": bureau_id, "code": departments[bureau_id]["code"],
                     "name": departments[bureau_id]["name"], "eligible": entry["eligible"],
                     "completed": entry["completed"], "rate": entry["rate"],
                     "mean_percent": entry["mean_percent"], "incidents": incidents,
                     "near_misses": near_misses, "incidents_per_100": per(incidents),
                     "near_misses_per_100": per(near_misses)})
    usable = [r for r in rows if r["eligible"]]
    scored = [r for r in usable if r["mean_percent"] is not None]
    return {"campaign": campaign, "since": since.isoformat(), "until": today.isoformat(),
            "bureaus": rows, "r": {
                "rate_incidents": pearson([r["rate"] for r in usable],
                                          [r["incidents_per_100"] for r in usable]),
                "rate_near_misses": pearson([r["rate"] for r in usable],
                                            [r["near_misses_per_100"] for r in usable]),
                "score_incidents": pearson([r["mean_percent"] for r in scored],
                                           [r["incidents_per_100"] for r in scored]),
                "score_near_misses": pearson([r["mean_percent"] for r in scored],
                                             [r["near_misses_per_100"] for r in scored])}}


def scatter_scale(rows: list[dict]) -> float:
    """The top of the scatter chart's y axis (reports per 100 eligible): a round number
    at or above the largest value, at least 5."""
    top = max([5.0] + [max(r["incidents_per_100"] or 0, r["near_misses_per_100"] or 0)
                       for r in rows])
    return float(math.ceil(top / 5) * 5)
