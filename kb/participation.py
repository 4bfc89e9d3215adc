"""Who a 自己点検 campaign addresses, exclusions, and the participation figures.

Eligible people: accounts in the campaign's target (the whole office, or chosen 部/課
with the 課 under them) on its dates, minus those whose roster status (休職, 病気休暇,
産休, 育休, 介護休暇, 退職) covers the whole period, minus the exclusions a 所属長 records
with a reason. A person's department is the one the roster history gives for the period
(``staff_assignments``), else their account's. Local accounts (no roster history) count
like roster people who never had a leave.

While a campaign is open the figures are worked out live from the roster; when it closes
the per-person result is written to ``campaign_eligibility`` (``campaigns.frozen_at``) and
every figure is read from there, so a later change of status, transfer or exclusion never
moves them.
"""

import json
from datetime import date

from kb import audit, dates, staff
from kb.db import transaction, utcnow
from kb.exceptions import Forbidden, Invalid, NotFound
from kb.quiz import code_order
from kb.rendering import excel_csv
from kb.roles import require_role

REASON_LABELS = {
    "excluded": "除外（所属長の判断）",
    "outside_target": "対象外の所属",
    "inactive": "無効・退職",
}
LEAVE = "on_leave:"
REASON_LIMIT = 200
# Fewest people behind a per-item rate a 所属長 is shown (see ``item_rates``).
MIN_GROUP = 3


def reason_label(reason: str) -> str:
    """「休暇等（病気休暇）」 for on_leave:sick_leave, the labels above otherwise."""
    if reason.startswith(LEAVE):
        return f"休暇等（{staff.STATUS_LABELS.get(reason[len(LEAVE):], reason)}）"
    return REASON_LABELS.get(reason, reason)


def campaign_row(db, campaign_id) -> dict:
    """The campaigns row, or NotFound."""
    rows = db.execute_returning_dicts("SELECT * FROM campaigns WHERE campaign_id = ?",
                                      [campaign_id])
    if not rows:
        raise NotFound(f"campaign {campaign_id}")
    return rows[0]


def target_departments(db, campaign: dict) -> set[int] | None:
    """The department ids the campaign addresses (chosen ones and those under them), or
    None for the whole office."""
    if campaign["whole_office"]:
        return None
    return {row[0] for row in db.execute(
        "WITH RECURSIVE scope(department_id) AS (SELECT department_id FROM campaign_departments"
        " WHERE campaign_id = ? UNION SELECT d.department_id FROM departments d"
        " JOIN scope s ON d.parent_id = s.department_id) SELECT department_id FROM scope",
        [campaign["campaign_id"]])}


def compute_eligibility(db, campaign: dict, *, user_ids=None, today: date | None = None) -> dict:
    """{user_id: {"department_id", "eligible", "reason"}} as the roster says now, for
    every account that is active, finished the campaign, or had an assignment in its
    period (``user_ids`` narrows it). Bulk queries only: the whole office (3,500 people)
    takes a few tens of milliseconds.

    A person who finished an attempt counts as eligible unless excluded: they evidently
    could take part, and completed people outside the denominator would push a rate
    over 100 %.
    """
    opens_on, closes_on = campaign["opens_at"][:10], campaign["closes_at"][:10]
    today_text = (today or dates.office_today()).isoformat()
    reference = max(opens_on, min(closes_on, today_text))
    scope = target_departments(db, campaign)
    narrow, params = "", []
    if user_ids is not None:
        narrow, params = " AND user_id IN (SELECT value FROM json_each(?))", [json.dumps(list(user_ids))]
    accounts = db.execute(f"SELECT user_id, department_id, active FROM users WHERE 1 {narrow}",
                          params).fetchall()
    stints: dict[int, list] = {}
    for user_id, department_id, starts_on, ends_on in db.execute(
            "SELECT user_id, department_id, starts_on, ends_on FROM staff_assignments"
            f" WHERE starts_on <= ? AND (ends_on IS NULL OR ends_on >= ?) {narrow}"
            " ORDER BY starts_on, assignment_id", [closes_on, opens_on, *params]):
        stints.setdefault(user_id, []).append((department_id, starts_on, ends_on))
    periods = staff._statuses_by_user(db, f"WHERE 1 {narrow}", params)
    cid = campaign["campaign_id"]
    finished = {row[0] for row in db.execute(
        "SELECT DISTINCT user_id FROM campaign_attempts WHERE campaign_id = ?"
        f" AND finished_at IS NOT NULL {narrow}", [cid, *params])}
    excluded = {row[0] for row in db.execute(
        f"SELECT user_id FROM campaign_exclusions WHERE campaign_id = ? {narrow}", [cid, *params])}
    start, end = date.fromisoformat(opens_on), date.fromisoformat(closes_on)
    people = {}
    for user_id, department_id, active in accounts:
        own = stints.get(user_id)
        if not active and not own and user_id not in finished:
            continue  # gone before the campaign: not part of its story
        if own:
            covering = [s for s in own if s[1] <= reference and (s[2] is None or s[2] >= reference)]
            department_id = (covering or own)[-1][0]
        history = periods.get(user_id, [])
        if user_id in excluded:
            reason = "excluded"
        elif scope is not None and department_id not in scope:
            reason = "outside_target"
        elif user_id in finished:
            reason = ""
        elif not active:
            reason = "inactive"
        elif history and not staff._able_days(history, start, end):
            status = staff.status_on(history, opens_on)
            status = status if status != "active" else staff.status_on(history, closes_on)
            reason = "inactive" if status == "retired" else LEAVE + status
        else:
            reason = ""
        people[user_id] = {"department_id": department_id, "eligible": not reason,
                           "reason": reason}
    return people


def write_eligibility(db, campaign_id: int, people: dict) -> None:
    """Replace the stored eligibility of a campaign (inside the caller's transaction)."""
    db.execute("DELETE FROM campaign_eligibility WHERE campaign_id = ?", [campaign_id])
    db.conn.executemany(
        "INSERT INTO campaign_eligibility (campaign_id, user_id, department_id, eligible, reason)"
        " VALUES (?, ?, ?, ?, ?)",
        [(campaign_id, user_id, p["department_id"], int(p["eligible"]), p["reason"])
         for user_id, p in people.items()])


def people_of(db, campaign: dict, *, user_ids=None) -> dict:
    """Eligibility as it stands: frozen once closed, live before."""
    if campaign["frozen_at"]:
        narrow, params = "", []
        if user_ids is not None:
            narrow, params = " AND user_id IN (SELECT value FROM json_each(?))", [json.dumps(list(user_ids))]
        return {row["user_id"]: {"department_id": row["department_id"],
                                 "eligible": bool(row["eligible"]), "reason": row["reason"]}
                for row in db.query("SELECT * FROM campaign_eligibility WHERE campaign_id = ?"
                                    f"{narrow}", [campaign["campaign_id"], *params])}
    return compute_eligibility(db, campaign, user_ids=user_ids)


def _completed(db, campaign_id: int) -> dict[int, dict]:
    """{user_id: their first finished attempt}."""
    done = {}
    for row in db.query("SELECT user_id, finished_at, score, passed, on_paper FROM campaign_attempts"
                        " WHERE campaign_id = ? AND finished_at IS NOT NULL ORDER BY attempt_id",
                        [campaign_id]):
        done.setdefault(row["user_id"], row)
    return done


def _rate(completed: int, eligible: int):
    return round(completed / eligible, 4) if eligible else None


def _departments(db) -> dict[int, dict]:
    return {row["department_id"]: row for row in db.query(
        "SELECT d.department_id, d.code, d.name, d.position, p.code AS parent_code,"
        " p.name AS parent_name FROM departments d"
        " LEFT JOIN departments p ON p.department_id = d.parent_id")}


def campaign_report(db, campaign_id: int) -> dict:
    """The figures in the shape of ``campaign-report --json``: {"campaign", "closed",
    "departments": [{"code", "name", "parent_code", "eligible", "completed",
    "excluded": {reason: n}, "rate"}], "total": {"eligible", "completed", "rate"}}.

    A department is listed when anyone of the target is in it; people outside the target
    are left out. ``rate`` is completed / eligible (4 decimals), null without eligible
    people. For the command line and the core's own callers; pages call the functions
    below, which check the reader.
    """
    campaign = campaign_row(db, campaign_id)
    people = people_of(db, campaign)
    done = _completed(db, campaign_id)
    departments = _departments(db)
    counts: dict[int, dict] = {}
    for user_id, person in people.items():
        if person["reason"] == "outside_target":
            continue
        entry = counts.setdefault(person["department_id"],
                                  {"eligible": 0, "completed": 0, "excluded": {}})
        if person["eligible"]:
            entry["eligible"] += 1
            entry["completed"] += user_id in done
        else:
            entry["excluded"][person["reason"]] = entry["excluded"].get(person["reason"], 0) + 1
    listed = []
    for department_id in sorted(counts, key=lambda d: (departments[d]["position"], d)):
        entry, department = counts[department_id], departments[department_id]
        listed.append({"code": department["code"], "name": department["name"],
                       "parent_code": department["parent_code"], "eligible": entry["eligible"],
                       "completed": entry["completed"], "excluded": entry["excluded"],
                       "rate": _rate(entry["completed"], entry["eligible"])})
    eligible = sum(d["eligible"] for d in listed)
    completed = sum(d["completed"] for d in listed)
    return {"campaign": campaign_id, "closed": campaign["status"] == "closed",
            "departments": listed,
            "total": {"eligible": eligible, "completed": completed,
                      "rate": _rate(completed, eligible)}}


def participation(db, actor, campaign_id: int) -> dict:
    """The report for reviewers (the campaign page)."""
    require_role(actor, "reviewer")
    return campaign_report(db, campaign_id)


def _may_see_department(db, actor, department_id: int) -> None:
    """Reviewers see every 所属; a 所属長 their own (and those under it); others Forbidden."""
    if actor.has_role("reviewer"):
        return
    require_role(actor, "manager")
    own = {row[0] for row in db.execute(
        "WITH RECURSIVE scope(department_id) AS (SELECT ? UNION SELECT d.department_id"
        " FROM departments d JOIN scope s ON d.parent_id = s.department_id)"
        " SELECT department_id FROM scope", [actor.department_id])}
    if department_id not in own:
        raise Forbidden(f"department {department_id} is not the manager's")


def require_department(db, actor, department_id: int) -> None:
    """Forbidden unless ``actor`` may act for the 所属: a reviewer, or its 所属長 (or the
    所属長 of the 部 above it). For the core modules that act on one 所属's people."""
    _may_see_department(db, actor, department_id)


def managed_departments(db, actor) -> list[dict]:
    """The 所属 a 所属長 answers for, in list order: their own and those under it (a 部長
    sees its 課); every 所属 for a reviewer (who may act for any, ``_may_see_department``).
    Forbidden for anyone else."""
    departments = _departments(db)
    if actor.has_role("reviewer"):
        active = {row[0] for row in db.execute("SELECT department_id FROM departments WHERE active = 1")}
        return sorted((d for d in departments.values() if d["department_id"] in active),
                      key=lambda d: (d["position"], d["department_id"]))
    require_role(actor, "manager")
    scope = {row[0] for row in db.execute(
        "WITH RECURSIVE scope(department_id) AS (SELECT ? UNION SELECT d.department_id"
        " FROM departments d JOIN scope s ON d.parent_id = s.department_id)"
        " SELECT department_id FROM scope", [actor.department_id])}
    return [departments[d] for d in sorted(scope, key=lambda d: (departments[d]["position"], d))]


def managed_campaigns(db, actor) -> list[dict]:
    """The campaigns addressing any of the actor's 所属 (``managed_departments``), newest
    first, each with ``department_ids``: those of the actor's 所属 it addresses. Drafts
    too, so exclusions can be recorded before the invitations go out."""
    mine = {d["department_id"] for d in managed_departments(db, actor)}
    result = []
    for campaign in db.execute_returning_dicts(
            "SELECT * FROM campaigns ORDER BY opens_at DESC, campaign_id DESC"):
        scope = target_departments(db, campaign)
        addressed = mine if scope is None else mine & scope
        if addressed:
            result.append(dict(campaign, department_ids=sorted(addressed)))
    return result


def department_status(db, actor, campaign_id: int, department_id: int) -> dict:
    """Who in one 所属 has completed, who has not yet and who is excluded (with the reason):
    completion only, never answers or scores. For its 所属長 and reviewers (Forbidden for
    anyone else; NotFound for an unknown campaign). Drafts too: exclusions can be
    recorded before a campaign opens.

    Returns {"campaign", "department", "started" (its opening time has come: before it
    nobody can answer, online or on paper), "completed": [...], "not_yet": [...],
    "excluded": [...]}; each person has user_id, login, employee_number, name, has_email,
    and for completed ones finished_at and on_paper, for excluded ones reason,
    reason_label, (for a 所属長's exclusion) note, and finished_at (None unless they
    finished all the same).
    """
    campaign = campaign_row(db, campaign_id)
    _may_see_department(db, actor, department_id)
    people = {uid: p for uid, p in people_of(db, campaign).items()
              if p["department_id"] == department_id and p["reason"] != "outside_target"}
    done = _completed(db, campaign_id)
    notes = {row[0]: row[1] for row in db.execute(
        "SELECT user_id, reason FROM campaign_exclusions WHERE campaign_id = ?", [campaign_id])}
    accounts = {row["user_id"]: row for row in db.query(
        "SELECT user_id, login, employee_number, display_name, email FROM users"
        " WHERE user_id IN (SELECT value FROM json_each(?))", [json.dumps(list(people))])}
    from kb import campaigns  # here, not at the top: campaigns imports this module

    result = {"campaign": campaign, "department": _departments(db).get(department_id),
              "started": campaigns.has_started(campaign),
              "completed": [], "not_yet": [], "excluded": []}
    for user_id, person in people.items():
        account = accounts[user_id]
        entry = {"user_id": user_id, "login": account["login"],
                 "employee_number": account["employee_number"], "name": account["display_name"],
                 "has_email": bool(account["email"])}
        if not person["eligible"]:
            # A 所属長's exclusion outweighs a finished attempt (the person may still answer
            # online): finished_at says so, and taking the exclusion back counts it.
            result["excluded"].append(dict(entry, reason=person["reason"],
                                           reason_label=reason_label(person["reason"]),
                                           note=notes.get(user_id, ""),
                                           finished_at=done.get(user_id, {}).get("finished_at")))
        elif user_id in done:
            result["completed"].append(dict(entry, finished_at=done[user_id]["finished_at"],
                                            on_paper=bool(done[user_id]["on_paper"])))
        else:
            result["not_yet"].append(entry)
    for key in ("completed", "not_yet", "excluded"):
        result[key].sort(key=lambda p: (p["employee_number"] or "", p["login"]))
    return result


def item_rates(db, actor, campaign_id: int, department_id: int | None = None) -> list[dict]:
    """Per checklist item: answers, correct answers and the rate of correct answers, over
    the finished attempts of the people of one 所属 (or of everyone: reviewers only).
    Aggregates only, never who answered what. Same access rule as ``department_status``.
    Items in checklist order: [{"item_code", "item_text", "answers", "correct", "rate"}].
    For a 所属長 an item answered by fewer than ``MIN_GROUP`` people is left out: in a
    small 所属 its rate would be one person's wrong answer. And a 所属長 gets no rates
    (an empty list) until the campaign is closed: live rates move as each person
    finishes, and the 所属長 sees who just did, so the change would be that person's
    answers. Frozen figures never move.
    """
    campaign = campaign_row(db, campaign_id)
    if department_id is None:
        require_role(actor, "reviewer")
    else:
        _may_see_department(db, actor, department_id)
    if not actor.has_role("reviewer") and not campaign["frozen_at"]:
        return []
    people = [uid for uid, p in people_of(db, campaign).items() if p["eligible"]
              and (department_id is None or p["department_id"] == department_id)]
    rows = db.query(
        "SELECT q.item_code, count(*) AS answers, sum(a.correct) AS correct,"
        " count(DISTINCT t.user_id) AS people"
        " FROM campaign_answers a JOIN campaign_attempts t USING (attempt_id)"
        " JOIN campaign_questions q USING (question_id)"
        " WHERE t.campaign_id = ? AND t.finished_at IS NOT NULL"
        " AND t.user_id IN (SELECT value FROM json_each(?)) GROUP BY q.item_code",
        [campaign_id, json.dumps(people)])
    texts = {row[0]: row[1] for row in db.execute(
        "SELECT i.code, i.text FROM checklist_items i JOIN checklist_versions v USING (version_id)"
        " ORDER BY v.is_current, v.version_id")}
    return sorted(({"item_code": row["item_code"], "item_text": texts.get(row["item_code"], ""),
                    "answers": row["answers"], "correct": row["correct"],
                    "rate": _rate(row["correct"], row["answers"])} for row in rows
                   if actor.has_role("reviewer") or row["people"] >= MIN_GROUP),
                  key=lambda r: code_order(r["item_code"]))


def results_csv(db, actor, campaign_id: int) -> bytes:
    """Every person of the target with their result, for Excel (reviewers only):
    職員番号, 氏名, 所属, 対象, 対象外の理由, 回答日時, 得点, 問題数, 合格, 回数, 紙で回答."""
    require_role(actor, "reviewer")
    campaign = campaign_row(db, campaign_id)
    people = {uid: p for uid, p in people_of(db, campaign).items()
              if p["reason"] != "outside_target"}
    accounts = {row["user_id"]: row for row in db.query(
        "SELECT user_id, login, employee_number, display_name FROM users"
        " WHERE user_id IN (SELECT value FROM json_each(?))", [json.dumps(list(people))])}
    attempts: dict[int, list] = {}
    for row in db.query("SELECT * FROM campaign_attempts WHERE campaign_id = ?"
                        " AND finished_at IS NOT NULL ORDER BY attempt_id", [campaign_id]):
        attempts.setdefault(row["user_id"], []).append(row)
    departments = _departments(db)
    rows = []
    for user_id, person in sorted(people.items(), key=lambda item: (
            departments[item[1]["department_id"]]["position"],
            accounts[item[0]]["employee_number"] or accounts[item[0]]["login"])):
        account, tries = accounts[user_id], attempts.get(user_id, [])
        best = max(tries, key=lambda t: (t["score"], -t["attempt_id"])) if tries else None
        rows.append([account["employee_number"] or account["login"], account["display_name"],
                     departments[person["department_id"]]["name"],
                     "対象" if person["eligible"] else "対象外",
                     "" if person["eligible"] else reason_label(person["reason"]),
                     best["finished_at"] if best else "", best["score"] if best else "",
                     len(json.loads(best["question_ids"])) if best else "",
                     ("合格" if best["passed"] else "不合格") if best else "", len(tries),
                     ("紙" if best["on_paper"] else "") if best else ""])
    return excel_csv(["職員番号", "氏名", "所属", "対象", "対象外の理由", "回答日時", "得点",
                      "問題数", "合格", "回数", "紙で回答"], rows)


# --- exclusions ----------------------------------------------------------------------------

def exclude_person(db, actor, campaign_id: int, user_id: int, reason: str) -> None:
    """Record that a person is excluded from a campaign, with a reason (required). Their
    所属長 or a reviewer; audited. Refused (Invalid) once the campaign is closed: the
    figures are frozen. NotFound for a person outside the target."""
    _exclusion_target(db, actor, campaign_id, user_id)
    reason = (reason or "").strip()
    if not reason:
        raise Invalid({"reason": ["除外する理由を書いてください（例：長期出張のため）。"]})
    if len(reason) > REASON_LIMIT:
        raise Invalid({"reason": [f"理由は{REASON_LIMIT}文字以内にしてください。"]})
    with transaction(db):
        campaign, person = _exclusion_target(db, actor, campaign_id, user_id)
        db.execute("INSERT INTO campaign_exclusions (campaign_id, user_id, reason, excluded_by,"
                   " excluded_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (campaign_id, user_id)"
                   " DO UPDATE SET reason = excluded.reason, excluded_by = excluded.excluded_by,"
                   " excluded_at = excluded.excluded_at",
                   [campaign_id, user_id, reason, actor.user_id, utcnow()])
        _refresh_one(db, campaign, user_id)
        audit.record(db, actor, "campaign_exclude", target=str(campaign_id),
                     detail={"user_id": user_id, "reason": reason})


def include_person(db, actor, campaign_id: int, user_id: int) -> None:
    """Take back an exclusion (same rules as ``exclude_person``); audited."""
    with transaction(db):
        campaign, _ = _exclusion_target(db, actor, campaign_id, user_id)
        db.execute("DELETE FROM campaign_exclusions WHERE campaign_id = ? AND user_id = ?",
                   [campaign_id, user_id])
        _refresh_one(db, campaign, user_id)
        audit.record(db, actor, "campaign_include", target=str(campaign_id),
                     detail={"user_id": user_id})


def _exclusion_target(db, actor, campaign_id, user_id):
    campaign = campaign_row(db, campaign_id)
    if campaign["status"] == "closed":
        raise Invalid({"reason": ["締め切った自己点検の対象者は変更できません（集計は確定しています）。"]})
    person = compute_eligibility(db, campaign, user_ids=[user_id]).get(user_id)
    if person is None or person["reason"] == "outside_target":
        raise NotFound(f"user {user_id} in campaign {campaign_id}")
    _may_see_department(db, actor, person["department_id"])
    return campaign, person


def _refresh_one(db, campaign: dict, user_id: int) -> None:
    """Keep the stored row (banner, invitations) in step for an open campaign."""
    if campaign["status"] != "open":
        return
    person = compute_eligibility(db, campaign, user_ids=[user_id])[user_id]
    db.execute("INSERT OR REPLACE INTO campaign_eligibility (campaign_id, user_id, department_id,"
               " eligible, reason) VALUES (?, ?, ?, ?, ?)",
               [campaign["campaign_id"], user_id, person["department_id"],
                int(person["eligible"]), person["reason"]])
