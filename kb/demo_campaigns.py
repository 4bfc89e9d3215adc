"""Two demo 自己点検 campaigns for `init --demo`: one closed months ago and one open now,
answered by the demo roster, so the participation pages show something real.

Everything goes through the core (create, generate, open, exclude, answer, paper sheets
keyed in by the 所属長, close), inside one transaction: either both campaigns exist with
their answers or nothing was written. Participation varies by department (the counters
and the care workplaces lowest, as in the council's figures), two workplaces answer on
paper, and a few people are excluded with a reason. The answers are drawn from a fixed
seed. A campaign with a demo title already present means it was done: a second
`init --demo` changes nothing.
"""

import random
from datetime import date, timedelta

from kb import campaigns, dates, paper, participation, selfcheck, users
from kb.db import transaction

CLOSED_TITLE = "【デモ】上期 個人情報 自己点検"
OPEN_TITLE = "【デモ】下期 個人情報 自己点検（FAX・メール）"
SEED = 13
# How likely a person of a 部 is to take part (others 0.85): front-line 部 lowest.
TURNOUT = {"kumin": 0.55, "fukushi": 0.6, "kodomo": 0.65, "kenkou": 0.75, "soumu": 0.95,
           "kikaku": 0.92}
# Workplaces without a PC per person: their 所属長 prints sheets and keys them in.
PAPER = ("kodomo-hoiku", "fukushi-kaigo")
EXCLUSIONS = (("kumin-koseki", "長期研修（派遣）のため"), ("fukushi-seikatsu", "応援業務で不在のため"),
              ("kenkou-suishin", "長期出張のため"))
# The chance of a right answer: items of these sections are harder.
RIGHT = 0.82
HARD = {"3": 0.68, "7": 0.7}


def load_demo_campaigns(db, author_id: int, today: date | None = None) -> dict | None:
    """Create the two demo campaigns (author: a reviewer account); None when they exist.
    Returns {"closed": campaign_id, "open": campaign_id, "answered": n, "on_paper": n}."""
    if db.execute("SELECT 1 FROM campaigns WHERE title IN (?, ?)",
                  [CLOSED_TITLE, OPEN_TITLE]).fetchone():
        return None
    today = today or dates.office_today()
    author = users.get_user(db, author_id)
    rng = random.Random(SEED)
    counts = {"answered": 0, "on_paper": 0}
    with transaction(db):
        earlier = today - timedelta(days=150)
        closed_id = _campaign(db, author, CLOSED_TITLE, earlier, earlier + timedelta(days=21),
                              sections=("1", "2", "3", "4", "5", "7"))
        _take_part(db, author, closed_id, rng, counts, when=f"{earlier + timedelta(days=3)}T10:00",
                   turnout_shift=0.1)
        campaigns.close_campaign(db, author, closed_id)
        opened = today - timedelta(days=6)
        open_id = _campaign(db, author, OPEN_TITLE, opened, today + timedelta(days=14),
                            sections=("3", "4"))
        _take_part(db, author, open_id, rng, counts, when=None, turnout_shift=-0.1)
    return {"closed": closed_id, "open": open_id, **counts}


def _campaign(db, author, title: str, opens: date, closes: date, *, sections) -> int:
    campaign_id = campaigns.create_campaign(
        db, author, title=title, opens_at=f"{opens}T09:00", closes_at=f"{closes}T17:00",
        whole_office=True, department_ids=[], questions_per_person="10", pass_mark="8",
        retakes="until_passed")
    version = participation.campaign_row(db, campaign_id)["version"]
    campaigns.generate_questions(db, author, campaign_id, section_codes=sections, version=version)
    campaigns.open_campaign(db, author, campaign_id, now=f"{opens}T09:00")
    return campaign_id


def _managers(db) -> dict[int, int]:
    """{department_id: a 所属長's user_id} (the first by id)."""
    return {department_id: user_id for user_id, department_id in db.execute(
        "SELECT u.user_id, u.department_id FROM users u JOIN user_roles r USING (user_id)"
        " WHERE r.role = 'manager' AND u.active = 1 ORDER BY u.user_id DESC")}


def _take_part(db, author, campaign_id: int, rng: random.Random, counts: dict, *, when,
               turnout_shift: float) -> None:
    """Exclusions, online answers and keyed-in paper sheets for the demo roster."""
    codes = {d["department_id"]: d for d in users.list_departments(db)}
    by_code = {d["code"]: d["department_id"] for d in codes.values()}
    report = participation.people_of(db, participation.campaign_row(db, campaign_id))
    demo = {row[0] for row in db.execute("SELECT user_id FROM users WHERE employee_number != ''"
                                         " AND employee_number IS NOT NULL")}
    people = {uid: p for uid, p in report.items() if p["eligible"] and uid in demo}
    for code, reason in EXCLUSIONS:
        members = sorted(uid for uid, p in people.items() if p["department_id"] == by_code.get(code))
        if members:
            victim = members[rng.randrange(len(members))]
            participation.exclude_person(db, author, campaign_id, victim, reason)
            people.pop(victim)
    managers = _managers(db)
    for department_id in sorted({p["department_id"] for p in people.values()}):
        code = codes[department_id]["code"]
        turnout = TURNOUT.get(code.split("-")[0], 0.85) + turnout_shift + rng.uniform(-0.1, 0.1)
        members = sorted(uid for uid, p in people.items() if p["department_id"] == department_id)
        takers = [uid for uid in members if rng.random() < turnout]
        if code in PAPER:
            keyer = users.get_user(db, managers.get(department_id, author.user_id))
            sheets = paper.answer_sheets(db, keyer, campaign_id, department_id)["sheets"]
            for sheet in sheets:
                if sheet["person"]["user_id"] not in takers:
                    continue
                answers = {q["question_id"]: str(_answer(db, q["question_id"], rng))
                           for q in sheet["questions"]}
                paper.key_in_sheet(db, keyer, campaign_id, sheet["person"]["user_id"],
                                   sheet["attempt_id"], answers)
                counts["on_paper"] += 1
            continue
        for user_id in takers:
            person = users.get_user(db, user_id)
            attempt_id = selfcheck.start_attempt(db, person, campaign_id, now=when)
            attempt = selfcheck._attempt(db, person, campaign_id, attempt_id)
            for position, question_id in enumerate(attempt["question_ids"], start=1):
                selfcheck.answer_question(db, person, campaign_id, attempt_id, position,
                                          _answer(db, question_id, rng), now=when)
            counts["answered"] += 1


def _answer(db, question_id: int, rng: random.Random) -> int:
    """A plausible answer: right with the section's chance, else the other one."""
    right, section = db.execute("SELECT answer, section_code FROM campaign_questions"
                                " WHERE question_id = ?", [question_id]).fetchone()
    return right if rng.random() < HARD.get(section, RIGHT) else 1 - right
