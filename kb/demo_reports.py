"""About forty demo reports for `init --demo`, so the dashboard, the queues, 改訂候補, the
checklist usage and the department figures show something on the first visit.

The reports are read from ``data/seed/demo_reports.yaml`` (invented ward-office cases with
no personal data) and filed through the core as the app's own forms would: a member of
the demo roster files (``reports.save_report``, ``workflow.submit_report``), their 所属長
returns or approves, the demo reviewer asks questions, records the 速報/確報 and
publishes, the 所属長 moves countermeasures on. Every title starts with ``DEMO_MARK``.

Everything happens in one transaction: either every demo report exists or none does.
Dates are relative to ``today`` and spread over the last year: once the core has written
a step (stamped "now"), the report's own timestamps (filed, submitted, approved,
published, comments, countermeasures) are set back to the day the story gives it. The
audit log keeps the real time of each step: it is append-only and says when the demo was
made. A report titled with the mark already present means it was done: a second
`init --demo` changes nothing.
"""

import random
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import yaml

from kb import cases, dates, demo_roster, reports, users, workflow
from kb.db import transaction
from kb.exceptions import Invalid, NotFound

DEMO_MARK = "【デモ】"
SEED = 14
STATES = ("draft", "returned", "submitted", "approved", "published")
# Days between the steps of a report's story, counted from the day it happened.
APPROVE_AFTER = 2
PUBLISH_AFTER = 6
PROGRESS_AFTER = 5
DONE_AFTER = 12


def in_use(db) -> list[str]:
    """Why this installation is in real use (Japanese, one reason a line), so that
    ``init --demo`` must not add the demo to it: roster people who are not the demo
    roster's invented ones, or internal reports not marked ``DEMO_MARK``. Empty for a fresh
    installation, and for one where the demo is loaded already (``demo-reviewer`` exists:
    a second ``init --demo`` adds nothing).

    Why it matters: the demo's 自己点検 are for the whole office and invite everyone with
    an address, and the demo reports are filed and approved by the 課's roster people.
    """
    if db.execute("SELECT 1 FROM users WHERE login = 'demo-reviewer'").fetchone():
        return []
    reasons = []
    people = db.execute("SELECT count(*) FROM users WHERE source = 'roster'"
                        " AND coalesce(email, '') NOT LIKE ?",
                        ["%@" + demo_roster.EMAIL_DOMAIN]).fetchone()[0]
    if people:
        reasons.append(f"職員名簿から取り込んだ職員が{people}人います"
                       "（デモの自己点検の案内が本人にメールで届いてしまいます）。")
    filed = db.execute("SELECT count(*) FROM cases WHERE origin = 'internal'"
                       " AND coalesce(title, '') NOT LIKE ?", [DEMO_MARK + "%"]).fetchone()[0]
    if filed:
        reasons.append(f"庁内の報告が{filed}件あります（デモの報告と混ざります）。")
    return reasons


def load_demo_reports(db, reviewer_id: int, path, today: date | None = None) -> dict | None:
    """File the demo reports of ``path`` (reviewer: the demo reviewer account); None when
    they exist. Returns {"reports": n, "incidents": n, "anonymous": n, "states": {state: n}}.

    Raises Invalid (nothing written) when the file names a department missing here or a
    report the core refuses.
    """
    if db.execute("SELECT 1 FROM cases WHERE origin = 'internal' AND title LIKE ?",
                  [DEMO_MARK + "%"]).fetchone():
        return None
    today = today or dates.office_today()
    specs = yaml.safe_load(Path(path).read_text(encoding="utf-8"))["reports"]
    reviewer = users.get_user(db, reviewer_id)
    rng = random.Random(SEED)
    counts = {"reports": 0, "incidents": 0, "anonymous": 0,
              "states": {state: 0 for state in STATES}}
    with transaction(db):
        people = _People(db, rng)
        for spec in specs:
            _Story(db, spec, people, reviewer, today, rng).tell()
            counts["reports"] += 1
            counts["incidents"] += spec["kind"] == "incident"
            counts["anonymous"] += bool(spec.get("anonymous"))
            counts["states"][spec["state"]] += 1
    return counts


class _People:
    """Who plays each part, by department code: reporters (members of the demo roster who
    are not 所属長 and have no leave on record) and the 所属長."""

    def __init__(self, db, rng: random.Random):
        self.db, self.rng, self.cache = db, rng, {}

    def department(self, code: str) -> int:
        try:
            return users.get_department_by_code(self.db, code)["department_id"]
        except NotFound:
            raise Invalid({"dept": [f"デモの報告の所属 {code} がこの環境にありません。"]}) from None

    def reporter(self, code: str, login: str | None = None):
        if login:
            row = self.db.execute("SELECT user_id FROM users WHERE login = ?", [login]).fetchone()
            if row:
                return users.get_user(self.db, row[0])
        if ("staff", code) not in self.cache:
            self.cache[("staff", code)] = [row[0] for row in self.db.execute(
                "SELECT u.user_id FROM users u WHERE u.department_id = ? AND u.active = 1"
                " AND u.source = 'roster'"
                " AND NOT EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.user_id"
                "                 AND r.role = 'manager')"
                " AND NOT EXISTS (SELECT 1 FROM staff_status_periods p WHERE p.user_id = u.user_id"
                "                 AND p.status != 'active')"
                " ORDER BY u.user_id", [self.department(code)])]
        staff = self.cache[("staff", code)]
        if not staff:
            raise Invalid({"reporter": [f"{code} にデモ名簿の職員がいません（先にデモ名簿を読み込みます）。"]})
        return users.get_user(self.db, staff[self.rng.randrange(len(staff))])

    def manager(self, code: str):
        if ("manager", code) not in self.cache:
            row = self.db.execute(
                "SELECT u.user_id FROM users u JOIN user_roles r ON r.user_id = u.user_id"
                " AND r.role = 'manager' WHERE u.department_id = ? AND u.active = 1"
                " ORDER BY u.source = 'roster' DESC, u.user_id", [self.department(code)]).fetchone()
            if row is None:
                raise Invalid({"manager": [f"{code} に所属長がいません。"]})
            self.cache[("manager", code)] = users.get_user(self.db, row[0])
        return self.cache[("manager", code)]


class _Story:
    """One report from filing to the state its spec names, then its dates set back."""

    def __init__(self, db, spec: dict, people: _People, reviewer, today: date, rng):
        self.db, self.spec, self.reviewer, self.today, self.rng = db, spec, reviewer, today, rng
        self.people = people
        self.reporter = people.reporter(spec["dept"], spec.get("reporter"))
        self.manager = people.manager(spec["dept"])
        self.day = today - timedelta(days=spec["days_ago"])
        self.last = datetime.combine(self.day, time(0, 0), timezone.utc)
        self.stamps: dict[str, str] = {}
        self.comment_times: list[str] = []
        self.measure_times: dict[int, str] = {}

    def at(self, days_after: int) -> str:
        """A time in office hours ``days_after`` the report's day (yesterday at the latest),
        always later than the story's previous step."""
        day = min(self.day + timedelta(days=days_after), self.today - timedelta(days=1))
        moment = datetime.combine(day, time(0, 0), timezone.utc) + timedelta(
            minutes=self.rng.randrange(30, 8 * 60))  # 09:30–17:00 in Japan
        self.last = max(moment, self.last + timedelta(minutes=7))
        return self.last.isoformat(timespec="seconds")

    def tell(self) -> None:
        spec, state = self.spec, self.spec["state"]
        report = self._report({**spec, **spec.get("first", {})})
        self.case_id = reports.save_report(self.db, self.reporter, report)
        self.stamps["created_at"] = self.at(1 if spec["kind"] == "incident" else 0)
        if state == "draft":
            return self._set_back()
        if state == "returned" or spec.get("resubmitted"):
            self._submit()
            workflow.return_report(self.db, self.manager, self.case_id,
                                   comment=spec.get("returned") or spec["resubmitted"])
            self.comment_times.append(self.at(1))
            if state == "returned":
                return self._set_back()
            fixed = self._report(spec)
            fixed["version"] = reports.report_from_case(self.db, self.case_id)["version"]
            for row, stored in zip(fixed["countermeasures"],
                                   cases.list_countermeasures(self.db, self.case_id)):
                row["countermeasure_id"] = stored["countermeasure_id"]
            reports.save_report(self.db, self.reporter, fixed, case_id=self.case_id)
            self.at(2)
        self._submit()
        if state == "submitted":
            self._comments()
            return self._set_back()
        workflow.approve_report(self.db, self.manager, self.case_id)
        self.stamps["approved_at"] = self.at(APPROVE_AFTER)
        self._comments()
        self._statutory()
        self._progress()
        if state == "published":
            workflow.publish_report(self.db, self.reviewer, self.case_id)
            self.stamps["published_at"] = self.at(PUBLISH_AFTER)
        self._set_back()

    def _report(self, spec: dict) -> dict:
        """The report dict the filing form would send for this spec."""
        report = reports.empty_report(spec["kind"])
        for field in reports.TEXT_COLUMNS:
            report[field] = (spec.get(field) or "").strip()
        report["title"] = DEMO_MARK + spec["title"]
        report["task"] = spec["task"]
        report["anonymous"] = bool(spec.get("anonymous"))
        report["checklist_items"] = list(spec.get("items") or [])
        discovered = self.day
        if spec["kind"] == "near_miss":
            # The near-miss form asks no date: the demo gives one so the charts by month
            # show it (what an imported near-miss has too).
            report["occurred_on"] = discovered.isoformat()
            return report
        report.update({
            "occurred_on": (discovered - timedelta(days=1)).isoformat(),
            "discovered_on": discovered.isoformat(),
            "incident_type": spec["incident_type"], "rule_status": spec["rule_status"],
            "disclosure": spec.get("disclosure") or "",
            "affected_count": str(spec.get("affected_count") or ""),
            "data_items": list(spec.get("data_items") or []),
            "factors": list(spec.get("factors") or []),
            "whys": list(spec.get("whys") or []) + [""] * reports.MAX_WHYS,
        })
        for flag in ("sensitive_data", "property_damage_risk", "unlawful_purpose_risk",
                     "ordinance_sensitive"):
            report[flag] = bool(spec.get(flag))
        owners = {}
        for measure in spec.get("countermeasures") or []:
            owner = measure.get("owner")
            if owner and owner not in owners:
                owners[owner] = str(self.people.department(owner))
            report["countermeasures"].append({
                "countermeasure_id": None, "text": measure["text"], "type": measure["type"],
                "owner_department_id": owners.get(owner, ""),
                "due_on": (self.today + timedelta(days=measure["due"])).isoformat(),
                "status": "planned", "item_codes": list(measure.get("items") or []),
            })
        return report

    def _submit(self) -> None:
        workflow.submit_report(self.db, self.reporter, self.case_id)
        self.stamps["submitted_at"] = self.at(0)

    def _comments(self) -> None:
        """The questions and answers between the reviewers and the department."""
        actors = {"reviewer": self.reviewer, "manager": self.manager, "reporter": self.reporter}
        for who, body in self.spec.get("comments") or []:
            workflow.add_comment(self.db, actors[who], self.case_id, body)
            self.comment_times.append(self.at(1))

    def _statutory(self) -> None:
        """The reviewer records the 速報 (and the 確報) on the days they were made."""
        done = self.spec.get("statutory")
        if not done:
            return
        for upto in ("prelim", "final"):
            if upto not in done:
                continue
            days = {key: (self.day + timedelta(days=done[key])).isoformat()
                    for key in ("prelim", "final") if key in done and done[key] <= done[upto]}
            workflow.update_statutory_record(
                self.db, self.reviewer, self.case_id, prelim_reported_on=days.get("prelim", ""),
                final_reported_on=days.get("final", ""),
                disclosure=self.spec.get("disclosure") or "", disclosure_reason="")
            self.at(done[upto])

    def _progress(self) -> None:
        """The 所属長 marks countermeasures in progress, then done."""
        stored = cases.list_countermeasures(self.db, self.case_id)
        for measure, row in zip(self.spec.get("countermeasures") or [], stored):
            steps = {"in_progress": ["in_progress"], "done": ["in_progress", "done"]}
            for status, after in zip(steps.get(measure["status"], []), (PROGRESS_AFTER, DONE_AFTER)):
                workflow.update_countermeasure_status(self.db, self.manager,
                                                      row["countermeasure_id"], status)
                self.measure_times[row["countermeasure_id"]] = self.at(APPROVE_AFTER + after)

    def _set_back(self) -> None:
        """The report's timestamps as its story dates them (the core stamped "now")."""
        stamps = {"submitted_at": None, "approved_at": None, "published_at": None,
                  **self.stamps}
        updated = max([stamps["created_at"], *self.comment_times, *self.measure_times.values(),
                       *(v for v in stamps.values() if v)])
        self.db.execute(
            "UPDATE cases SET created_at = :created_at, updated_at = :updated,"
            " submitted_at = :submitted_at, approved_at = :approved_at,"
            " published_at = :published_at WHERE case_id = :case_id",
            {**stamps, "updated": updated, "case_id": self.case_id})
        comment_ids = [row[0] for row in self.db.execute(
            "SELECT comment_id FROM comments WHERE case_id = ? ORDER BY comment_id",
            [self.case_id])]
        for comment_id, moment in zip(comment_ids, self.comment_times):
            self.db.execute("UPDATE comments SET created_at = ? WHERE comment_id = ?",
                            [moment, comment_id])
        for row in cases.list_countermeasures(self.db, self.case_id):
            self.db.execute(
                "UPDATE countermeasures SET created_at = ?, updated_at = ? WHERE countermeasure_id = ?",
                [stamps["created_at"], self.measure_times.get(row["countermeasure_id"],
                                                             stamps["created_at"]),
                 row["countermeasure_id"]])
