"""自己点検 mails after the invitation: reminders, the 所属長's digest, the author's summary.

Three scheduler jobs (``kb.scheduler``), run every minute by `serve` and by `send-mail`:

- ``campaign_reminders``: on each of the ``CAMPAIGN_REMINDER_DAYS`` days before an open
  campaign closes (3 and 1 by default), a reminder to every eligible person with an
  address who has not finished it — never to those done, excluded or on leave — and a
  digest to each 所属長 listing the non-respondents of their 所属 (and the 課 under it) by
  name, with those without an address marked for paper and a link to the 所属's page.
- ``campaign_summaries``: once a campaign has closed, its figures to its author.

A person gets at most one reminder a day and a 所属長 one digest a day, whatever number
of campaigns is due: with two due the same day, one mail lists both. The dedupe keys
name the day and the person first — ``remind:<date>:<user>:+<campaign>+<campaign>+``,
``digest:<date>:<manager>:+…+`` — and today's keys are looked up inside the write lock
before queueing, so however often the job runs (twice in a minute, after a restart, in
two processes) nobody gets a second one that day; ``summary:<campaign>`` once. Candidates
are read before any write lock is taken: a minute with nothing new to queue writes
nothing. ``now`` is a parameter of every job (tests pass a fixed clock).
"""

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
    return campaigns.local_moment(now)


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


def _manager_scopes(db) -> list[tuple[dict, set[int]]]:
    """Every active 所属長 with an address and the departments they answer for (their own
    and those under it)."""
    managers = db.execute_returning_dicts(
        "SELECT u.user_id, u.display_name AS name, u.department_id, u.email FROM users u"
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


def _already_today(db, prefix: str, day: str) -> set[int]:
    """The people (or 所属長) who got a mail of ``prefix`` on ``day`` (keys
    ``<prefix>:<day>:<user>:…``; a range over the unique index, not a scan)."""
    start = f"{prefix}:{day}:"
    return {int(key[len(start):].split(":")[0]) for (key,) in db.execute(
        "SELECT dedupe_key FROM outbox WHERE dedupe_key >= ? AND dedupe_key < ?",
        [start, start[:-1] + ";"])}


def _invited(db, campaign_id: int) -> set[int]:
    """The people whose invitation to the campaign is in the outbox (``invite:<campaign>:
    <user>``; a range over the unique index)."""
    start = f"invite:{campaign_id}:"
    return {int(key[len(start):]) for (key,) in db.execute(
        "SELECT dedupe_key FROM outbox WHERE dedupe_key >= ? AND dedupe_key < ?",
        [start, start[:-1] + ";"])}


def _key(prefix: str, day: str, user_id: int, campaign_ids) -> str:
    """``remind:<day>:<user>:+3+7+`` — one per person per day, naming the campaigns it
    covers (``mail_counts`` counts it for each)."""
    return f"{prefix}:{day}:{user_id}:+{'+'.join(str(c) for c in campaign_ids)}+"


def _plan(db, due: list[dict], day: str) -> tuple[dict, dict]:
    """Who gets what today: ({user_id: (person, [campaign, …])} reminders to people with
    a deliverable address, {manager_id: (manager, [(campaign, [person, …]), …])} digests)
    — each person and each 所属長 at most once a day, their campaigns soonest first,
    leaving out those who already had today's. Nobody is reminded of a campaign before
    their invitation to it is queued: at its opening time the reminder job may see the
    campaign started a moment before the invitation job does (each reads the clock), or
    run after that job failed; the reminder then waits for a later run."""
    reminded, digested = _already_today(db, "remind", day), _already_today(db, "digest", day)
    scopes = _manager_scopes(db)
    reminders: dict[int, tuple[dict, list]] = {}
    digests: dict[int, tuple[dict, list]] = {}
    for campaign in sorted(due, key=lambda c: (c["closes_at"], c["campaign_id"])):
        people = _not_done(db, campaign["campaign_id"])
        invited = _invited(db, campaign["campaign_id"])
        for person in people:
            if person["user_id"] not in reminded and person["user_id"] in invited \
                    and mail.is_deliverable(person["email"]):
                reminders.setdefault(person["user_id"], (person, []))[1].append(campaign)
        for manager, scope in scopes:
            listed = [p for p in people if p["department_id"] in scope]
            if listed and manager["user_id"] not in digested \
                    and mail.is_deliverable(manager["email"]):
                digests.setdefault(manager["user_id"], (manager, []))[1].append((campaign, listed))
    return reminders, digests


def _entry(campaign: dict, day: str) -> dict:
    """What a mail says about one campaign: title, deadline, days left, link."""
    return {"campaign_id": campaign["campaign_id"], "title": campaign["title"],
            "deadline": campaigns.deadline_text(campaign["closes_at"]),
            "days_left": (date.fromisoformat(campaign["closes_at"][:10]) - date.fromisoformat(day)).days,
            "path": f"/selfcheck/{campaign['campaign_id']}"}


def queue_reminders(db, settings, now: datetime | None = None) -> dict:
    """Queue the reminders and digests due at ``now`` (default: the clock; see the module
    docstring); return {"reminders": n, "digests": n} newly queued. Idempotent.

    At most one reminder a person a day and one digest a 所属長 a day: with two campaigns
    due the same day, one mail lists both (soonest deadline first), each with its link
    and deadline."""
    local_now = _local(now)
    day = local_now[:10]
    counts = {"reminders": 0, "digests": 0}
    due = _due_campaigns(db, local_now, reminder_days(settings))
    if not due or not any(_plan(db, due, day)):
        return counts
    departments = participation._departments(db)
    with transaction(db):
        # Planned again inside the lock: someone who finished meanwhile gets no reminder,
        # and another process's mails of today count.
        reminders, digests = _plan(db, due, day)
        for user_id, (person, chosen) in reminders.items():
            entries = [_entry(c, day) for c in chosen]
            if mail.queue_mail(db, kind="campaign_reminder",
                               dedupe_key=_key("remind", day, user_id, [c["campaign_id"] for c in chosen]),
                               template="campaign_reminder", to_user_id=user_id, settings=settings,
                               now=now, context={**entries[0], "campaigns": entries}):
                counts["reminders"] += 1
        for manager_id, (manager, chosen) in digests.items():
            entries = []
            for campaign, listed in chosen:
                groups = []
                for department_id in sorted({p["department_id"] for p in listed},
                                            key=lambda d: (departments[d]["position"], d)):
                    groups.append({"name": departments[department_id]["name"],
                                   "path": f"/selfcheck/manage/{campaign['campaign_id']}/{department_id}",
                                   "people": [p for p in listed if p["department_id"] == department_id]})
                entries.append({**_entry(campaign, day), "groups": groups, "count": len(listed),
                                "without_address": sum(not p["email"] for p in listed)})
            if mail.queue_mail(db, kind="campaign_digest",
                               dedupe_key=_key("digest", day, manager_id, [c["campaign_id"] for c, _ in chosen]),
                               template="campaign_digest", to_user_id=manager_id, settings=settings,
                               now=now, context={**entries[0], "campaigns": entries}):
                counts["digests"] += 1
    return counts


def queue_summaries(db, settings, now: datetime | None = None) -> dict:
    """Queue the summary of each campaign closed within ``SUMMARY_WITHIN`` to its author
    (once: ``summary:<campaign>``; an author without an address gets none, and so does a
    campaign closed before its opening time, ``campaigns.never_ran``: it has no results).
    Returns {"summaries": n} newly queued."""
    moment = now if now is not None else datetime.now(timezone.utc)
    since = (moment - SUMMARY_WITHIN).astimezone(timezone.utc).isoformat(timespec="seconds")
    rows = db.execute_returning_dicts(
        "SELECT c.campaign_id, c.title, c.created_by, c.status, c.opens_at, c.closed_at"
        " FROM campaigns c JOIN users u"
        " ON u.user_id = c.created_by WHERE c.status = 'closed' AND c.closed_at >= ?"
        " AND u.active = 1 AND u.email != '' AND NOT EXISTS (SELECT 1 FROM outbox o"
        " WHERE o.dedupe_key = 'summary:' || c.campaign_id) ORDER BY c.campaign_id", [since])
    count = 0
    for row in rows:
        if campaigns.never_ran(row):
            continue
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
        # Reminders and digests name their campaigns as "+3+7+" at the end of the key (one
        # mail a person a day); those queued before that as "remind:<campaign>:…".
        daily = f"{prefix}:%:+%" if kind in ("campaign_reminder", "campaign_digest") else ""
        counts = dict.fromkeys(mail.STATUSES, 0)
        counts.update(db.execute(
            "SELECT status, count(*) FROM outbox WHERE kind = ? AND (dedupe_key LIKE ?"
            " OR (dedupe_key LIKE ? AND instr(dedupe_key, ?) > 0)) GROUP BY status",
            [kind, pattern, daily, f"+{campaign_id}+"]).fetchall())
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
