"""自己点検 mails after the invitation: reminders, the 所属長's digest, the author's summary.

Three scheduler jobs (``kb.scheduler``), run every minute by `serve` and by `send-mail`:

- ``campaign_reminders``: on each of the ``CAMPAIGN_REMINDER_DAYS`` days before an open
  campaign closes (3 and 1 by default), a reminder to every eligible person with an
  address who has not finished it — never to those done, excluded or on leave — and a
  digest to each 所属長 listing the non-respondents of their 所属 (and the 課 under it) by
  name, with those without an address marked for paper and a link to the 所属's page.
- ``campaign_summaries``: once a campaign has closed, its figures to its author.

Every mail has a dedupe key naming its unit — ``remind:<campaign>:<user>:<date>``,
``digest:<campaign>:<manager>:<date>``, ``summary:<campaign>`` — so however often a job
runs (twice in a minute, after a restart, in two processes) a person gets at most one
reminder and one digest a day. Candidates are read before any write lock is taken: a
minute with nothing new to queue writes nothing.
"""

import json
from datetime import date, datetime, timedelta, timezone

from kb import campaigns, mail, participation, scheduler
from kb.db import transaction
from kb.roles import require_role

# Closed campaigns older than this get no summary (e.g. those closed before mail existed).
SUMMARY_WITHIN = timedelta(days=14)
# The kinds of mail a campaign causes and the dedupe-key prefix of each.
KEY_PREFIXES = {"campaign_invitation": "invite", "campaign_reminder": "remind",
                "campaign_digest": "digest", "campaign_summary": "summary"}


def reminder_days(settings) -> set[int]:
    """The days before closing on which reminders go: ``CAMPAIGN_REMINDER_DAYS`` ("3,1").
    ValueError names the setting when it is not a list of whole numbers."""
    text = str(settings.get("CAMPAIGN_REMINDER_DAYS", "") or "")
    try:
        return {int(part) for part in text.replace(" ", "").split(",") if part}
    except ValueError:
        raise ValueError(f"KB_CAMPAIGN_REMINDER_DAYS must be days separated by commas, not {text!r}") \
            from None


def _local(now: datetime | None) -> str:
    return (now.astimezone() if now is not None else datetime.now().astimezone()) \
        .strftime(campaigns.TIME_FORMAT)


def _due_campaigns(db, local_now: str, days: set[int]) -> list[dict]:
    """Open campaigns running now whose closing day is one of ``days`` days ahead."""
    today = date.fromisoformat(local_now[:10])
    return [campaign for campaign in db.execute_returning_dicts(
        "SELECT * FROM campaigns WHERE status = 'open' AND opens_at <= ? AND closes_at > ?"
        " ORDER BY campaign_id", [local_now, local_now])
        if (date.fromisoformat(campaign["closes_at"][:10]) - today).days in days]


def _not_done(db, campaign_id: int) -> list[dict]:
    """Eligible people of an open campaign who have not finished it, with their 所属."""
    return db.execute_returning_dicts(
        "SELECT u.user_id, u.display_name AS name, u.employee_number, u.login, u.email,"
        " e.department_id FROM campaign_eligibility e JOIN users u USING (user_id)"
        " WHERE e.campaign_id = ? AND e.eligible = 1 AND u.active = 1"
        " AND NOT EXISTS (SELECT 1 FROM campaign_exclusions x"
        "  WHERE x.campaign_id = e.campaign_id AND x.user_id = e.user_id)"
        " AND NOT EXISTS (SELECT 1 FROM campaign_attempts a WHERE a.campaign_id = e.campaign_id"
        "  AND a.user_id = e.user_id AND a.finished_at IS NOT NULL)"
        " ORDER BY e.department_id, u.employee_number, u.login", [campaign_id])


def _unqueued(db, keys: list[str]) -> set[str]:
    """The keys no outbox row has yet."""
    taken = {row[0] for row in db.execute(
        "SELECT dedupe_key FROM outbox WHERE dedupe_key IN (SELECT value FROM json_each(?))",
        [json.dumps(keys)])}
    return set(keys) - taken


def _manager_scopes(db) -> list[tuple[dict, set[int]]]:
    """Every active 所属長 with an address and the departments they answer for (their own
    and those under it)."""
    managers = db.execute_returning_dicts(
        "SELECT u.user_id, u.display_name AS name, u.department_id FROM users u"
        " JOIN user_roles r ON r.user_id = u.user_id AND r.role = 'manager'"
        " WHERE u.active = 1 AND u.email != '' ORDER BY u.user_id")
    children: dict[int, list[int]] = {}
    for department_id, parent_id in db.execute("SELECT department_id, parent_id FROM departments"):
        children.setdefault(parent_id, []).append(department_id)
    scopes = []
    for manager in managers:
        scope, todo = set(), [manager["department_id"]]
        while todo:
            department_id = todo.pop()
            if department_id not in scope:
                scope.add(department_id)
                todo.extend(children.get(department_id, []))
        scopes.append((manager, scope))
    return scopes


def queue_reminders(db, settings, now: datetime | None = None) -> dict:
    """Queue the reminders and digests due now (see the module docstring); return
    {"reminders": n, "digests": n} newly queued. Idempotent."""
    local_now = _local(now)
    day = local_now[:10]
    counts = {"reminders": 0, "digests": 0}
    for campaign in _due_campaigns(db, local_now, reminder_days(settings)):
        cid = campaign["campaign_id"]
        people = _not_done(db, cid)
        reminders = {f"remind:{cid}:{p['user_id']}:{day}": p for p in people if p["email"]}
        scopes = _manager_scopes(db)
        digests = {f"digest:{cid}:{m['user_id']}:{day}": (m, scope) for m, scope in scopes
                   if any(p["department_id"] in scope for p in people)}
        fresh = _unqueued(db, [*reminders, *digests])
        if not fresh:
            continue
        departments = participation._departments(db)
        deadline = campaigns.deadline_text(campaign["closes_at"])
        days_left = (date.fromisoformat(campaign["closes_at"][:10]) - date.fromisoformat(day)).days
        context = {"campaign_id": cid, "title": campaign["title"], "deadline": deadline,
                   "days_left": days_left}
        with transaction(db):
            # Inside the lock again: a person who finished meanwhile gets no reminder.
            still = {p["user_id"] for p in _not_done(db, cid)}
            for key, person in reminders.items():
                if key in fresh and person["user_id"] in still and mail.queue_mail(
                        db, kind="campaign_reminder", dedupe_key=key, template="campaign_reminder",
                        to_user_id=person["user_id"], settings=settings, now=now,
                        context={**context, "path": f"/selfcheck/{cid}"}):
                    counts["reminders"] += 1
            for key, (manager, scope) in digests.items():
                listed = [p for p in people if p["department_id"] in scope and p["user_id"] in still]
                if key not in fresh or not listed:
                    continue
                groups = []
                for department_id in sorted({p["department_id"] for p in listed},
                                            key=lambda d: (departments[d]["position"], d)):
                    groups.append({"name": departments[department_id]["name"],
                                   "path": f"/selfcheck/manage/{cid}/{department_id}",
                                   "people": [p for p in listed if p["department_id"] == department_id]})
                if mail.queue_mail(db, kind="campaign_digest", dedupe_key=key,
                                   template="campaign_digest", to_user_id=manager["user_id"],
                                   settings=settings, now=now,
                                   context={**context, "groups": groups, "count": len(listed),
                                            "without_address": sum(not p["email"] for p in listed)}):
                    counts["digests"] += 1
    return counts


def queue_summaries(db, settings, now: datetime | None = None) -> dict:
    """Queue the summary of each campaign closed within ``SUMMARY_WITHIN`` to its author
    (once: ``summary:<campaign>``; an author without an address gets none). Returns
    {"summaries": n} newly queued."""
    moment = now if now is not None else datetime.now(timezone.utc)
    since = (moment - SUMMARY_WITHIN).astimezone(timezone.utc).isoformat(timespec="seconds")
    rows = db.execute_returning_dicts(
        "SELECT c.campaign_id, c.title, c.created_by FROM campaigns c JOIN users u"
        " ON u.user_id = c.created_by WHERE c.status = 'closed' AND c.closed_at >= ?"
        " AND u.active = 1 AND u.email != '' AND NOT EXISTS (SELECT 1 FROM outbox o"
        " WHERE o.dedupe_key = 'summary:' || c.campaign_id) ORDER BY c.campaign_id", [since])
    count = 0
    for row in rows:
        report = participation.campaign_report(db, row["campaign_id"])
        lowest = sorted((d for d in report["departments"] if d["rate"] is not None),
                        key=lambda d: (d["rate"], d["code"]))[:10]
        with transaction(db):
            if mail.queue_mail(db, kind="campaign_summary", dedupe_key=f"summary:{row['campaign_id']}",
                               template="campaign_summary", to_user_id=row["created_by"],
                               settings=settings, now=now,
                               context={"title": row["title"], "total": report["total"],
                                        "lowest": lowest, "departments": len(report["departments"]),
                                        "path": f"/campaigns/{row['campaign_id']}"}):
                count += 1
    return {"summaries": count}


def mail_counts(db, actor, campaign_id: int) -> list[dict]:
    """What a campaign has caused in the outbox, per kind: [{"kind", "label", "queued",
    "sending", "sent", "failed", "total"}] in the order invitation, reminder, digest,
    summary (kinds with no mail left out). Reviewers only."""
    require_role(actor, "reviewer")
    participation.campaign_row(db, campaign_id)
    result = []
    for kind, prefix in KEY_PREFIXES.items():
        pattern = f"summary:{campaign_id}" if kind == "campaign_summary" else f"{prefix}:{campaign_id}:%"
        counts = dict.fromkeys(mail.STATUSES, 0)
        counts.update(db.execute("SELECT status, count(*) FROM outbox WHERE dedupe_key LIKE ?"
                                 " GROUP BY status", [pattern]).fetchall())
        total = sum(counts.values())
        if total:
            result.append({"kind": kind, "label": mail.KIND_LABELS.get(kind, kind), **counts,
                           "total": total})
    return result


@scheduler.register("campaign_reminders")
def _remind(db, settings, now=None) -> dict:
    """Due work: reminders and 所属長 digests on the reminder days before closing."""
    return queue_reminders(db, settings, now)


@scheduler.register("campaign_summaries")
def _summarise(db, settings, now=None) -> dict:
    """Due work: the summary to the author of a campaign that has closed."""
    return queue_summaries(db, settings, now)
