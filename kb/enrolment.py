"""Who an open 自己点検 addresses, kept in step with the roster after it opened.

Opening a campaign writes who it addresses to ``campaign_eligibility`` — the banner and
the reminders read it — and invites each of them. People change afterwards: someone is
created, transferred into the target, back from leave or given an e-mail address; someone
else leaves the target, goes on leave or is deactivated. Two ways keep the stored rows
right while a campaign is open:

- ``refresh_open_campaigns``, a scheduler job run every ten minutes (the app's own changes
  are handled at once by ``refresh_people``; this catches what only time changes — a
  leave that starts or ends today — and changes made outside the app): for each open campaign it
  works eligibility out again (``participation.compute_eligibility``, the rule of the
  opening), writes the rows that changed and invites each newly addressed person with an
  address. Read first, without the write lock: a minute in which nobody changed writes
  nothing.
- ``refresh_people``, for the few people a change concerns, inside the transaction of
  that change (the roster import, creating or changing an account, a status change), so
  the banner appears — or goes — at once.

Invitations use the opening's dedupe key ``invite:<campaign>:<user>``: nobody is invited
twice to a campaign, however often either runs; and nobody before the campaign's opening
time (``campaigns.queue_invitations``): a campaign opened early has its rows kept right
here and its invitations queued by ``campaigns.invite_started_campaigns`` when it starts.
Someone no longer addressed loses the banner and gets no reminders (both read the stored
rows); a closed campaign's rows are frozen and never touched here.
"""

import json
import time
from datetime import date, datetime

from kb import campaigns, participation, scheduler
from kb.db import transaction


def _open_campaigns(db) -> list[dict]:
    return db.execute_returning_dicts(
        "SELECT * FROM campaigns WHERE status = 'open' ORDER BY campaign_id")


def _today(now: datetime | None) -> date:
    return date.fromisoformat(campaigns.local_moment(now)[:10])


def _changes(db, campaign: dict, today: date, user_ids=None) -> tuple[dict, list[int]]:
    """({user_id: eligibility} that differ from the stored rows, [user_id] whose stored
    row no longer applies: gone before the campaign, as the opening would leave them out)."""
    computed = participation.compute_eligibility(db, campaign, user_ids=user_ids, today=today)
    narrow, params = "", []
    if user_ids is not None:
        narrow, params = " AND user_id IN (SELECT value FROM json_each(?))", [json.dumps(list(user_ids))]
    stored = {user_id: {"department_id": department_id, "eligible": bool(eligible), "reason": reason}
              for user_id, department_id, eligible, reason in db.execute(
                  "SELECT user_id, department_id, eligible, reason FROM campaign_eligibility"
                  f" WHERE campaign_id = ?{narrow}", [campaign["campaign_id"], *params])}
    changed = {user_id: person for user_id, person in computed.items()
               if stored.get(user_id) != person}
    gone = [user_id for user_id in stored if user_id not in computed]
    return changed, gone


def _sync(db, campaign: dict, today: date, now: datetime | None, settings, user_ids=None) -> dict:
    """Write the changed rows and queue the invitations due (inside the caller's
    transaction); return {"changed": n, "invited": n}."""
    changed, gone = _changes(db, campaign, today, user_ids)
    campaign_id = campaign["campaign_id"]
    db.conn.executemany(
        "INSERT OR REPLACE INTO campaign_eligibility (campaign_id, user_id, department_id,"
        " eligible, reason) VALUES (?, ?, ?, ?, ?)",
        [(campaign_id, user_id, p["department_id"], int(p["eligible"]), p["reason"])
         for user_id, p in changed.items()])
    db.conn.executemany("DELETE FROM campaign_eligibility WHERE campaign_id = ? AND user_id = ?",
                        [(campaign_id, user_id) for user_id in gone])
    invited = campaigns.queue_invitations(db, campaign, user_ids=user_ids, now=now,
                                          settings=settings)
    return {"changed": len(changed) + len(gone), "invited": invited}


def refresh_open_campaigns(db, settings=None, now: datetime | None = None) -> dict:
    """Bring every open campaign's stored eligibility up to date at ``now`` (default: the
    clock) and invite those newly addressed; return {"changed": n, "invited": n}.
    Idempotent; one transaction per campaign that has anything to write."""
    today = _today(now)
    totals = {"changed": 0, "invited": 0}
    for campaign in _open_campaigns(db):
        changed, gone = _changes(db, campaign, today)
        if not changed and not gone and not (campaigns.has_started(campaign, now)
                                             and campaigns.uninvited(db, campaign["campaign_id"])):
            continue
        with transaction(db):
            # Again inside the write lock: the campaign may have closed meanwhile.
            campaign = participation.campaign_row(db, campaign["campaign_id"])
            if campaign["status"] != "open":
                continue
            result = _sync(db, campaign, today, now, settings)
        totals = {key: totals[key] + result[key] for key in totals}
    return totals


def refresh_people(db, user_ids, *, today: date | None = None, now: datetime | None = None) -> None:
    """The same for the people of ``user_ids`` only, in every open campaign: for a change
    that concerns them, called inside its transaction (RuntimeError outside one), so the
    stored rows and the invitations commit or roll back with it."""
    if not db.conn.in_transaction:
        raise RuntimeError("refresh_people must run inside the transaction of the change")
    user_ids = sorted(set(user_ids))
    if not user_ids:
        return
    for campaign in _open_campaigns(db):
        _sync(db, campaign, today or _today(now), now, None, user_ids)


# The full refresh costs about 0.5 s of CPU for 3,500 people: not every minute.
REFRESH_SECONDS = 600
_last_refresh: dict[str, float] = {}  # database file → time.monotonic() of the last run


@scheduler.register("campaign_eligibility")
def _refresh(db, settings, now=None) -> dict:
    """Due work: open campaigns follow the roster (late joiners invited, leavers dropped),
    at most every REFRESH_SECONDS on the clock (a given ``now`` always runs)."""
    path = db.execute("PRAGMA database_list").fetchone()[2]
    if now is None and time.monotonic() - _last_refresh.get(path, -REFRESH_SECONDS) < REFRESH_SECONDS:
        return {"skipped": "ran less than ten minutes ago"}
    result = refresh_open_campaigns(db, settings, now)
    if now is None:
        _last_refresh[path] = time.monotonic()
    return result
