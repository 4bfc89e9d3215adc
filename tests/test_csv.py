"""Every CSV the app serves: Excel opens it as it is and runs none of its cells as a formula."""

import csv
import io
import re
import unicodedata

import pytest

from kb import dashboard, workflow, workshops
from kb.db import get_db
from kb.rendering import excel_csv
from tests.conftest import csrf_token, login
from tests.reporting import incident_form, new_case_id, post_report

# Cells a spreadsheet would evaluate (OWASP "CSV injection"); each at most 40 characters,
# the longest login id the sign-in form takes.
PAYLOADS = [
    "=1+1",
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1)",
    "\t=1",
    "\r=1",
    '=HYPERLINK("http://evil.example/","x")',
    "=1,2\n3",
    # Full-width signs (Japanese Excel reads them as ASCII) and blanks before the sign.
    "＝1+1",
    "＋1+1",
    "－1+1",
    "＠SUM(1)",
    " =1+1",
    "\u3000=HYPERLINK(\"http://evil.example/\")",
    "\n=1+1",
]


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def formula_cells(rows: list[list[str]]) -> list[str]:
    """Cells a spreadsheet would run: starting with a formula character and not a number."""
    found = []
    for row in rows:
        for cell in row:
            head = unicodedata.normalize("NFKC", cell.lstrip()[:1])
            if cell.startswith(("=", "+", "-", "@", "\t", "\r")) or head in ("=", "+", "-", "@"):
                try:
                    float(cell)
                except ValueError:
                    found.append(cell)
    return found


def test_formula_cells_are_quoted_and_read_back_exactly():
    body = excel_csv(["見出し"] * len(PAYLOADS), [PAYLOADS])
    assert read_csv(body)[1] == ["'" + payload for payload in PAYLOADS]


def test_numbers_stay_numbers_and_plain_text_is_unchanged():
    rows = read_csv(excel_csv(["a", "b", "c", "d", "e"], [[-5, 0, 2.5, "FAX 誤送信 - 宛先", "'引用"]]))
    assert rows[1] == ["-5", "0", "2.5", "FAX 誤送信 - 宛先", "'引用"]


def test_the_detector_itself_finds_live_formulas():
    assert formula_cells([["=1+1", "-3", "-2+3", "x=1", "\t=1"]]) == ["=1+1", "-2+3", "\t=1"]


def test_login_id_typed_at_a_failed_sign_in_is_inert_in_the_audit_csv(client, signed_in, make_user):
    """The path that needs no account: the typed login id goes to the audit log as it is."""
    for number, payload in enumerate(PAYLOADS, start=1):
        address = {"REMOTE_ADDR": f"10.0.0.{number}"}  # keep clear of the sign-in rate limit
        token = csrf_token(client.get("/login", environ_base=address).get_data(as_text=True))
        response = client.post("/login", environ_base=address,
                               data={"csrf_token": token, "login": payload, "password": "x"})
        assert response.status_code == 200
    signed_in("admin")
    rows = read_csv(client.get("/admin/audit.csv?action=login_failed").data)
    targets = [row[4] for row in rows[1:]]
    assert sorted(targets) == sorted("'" + payload for payload in PAYLOADS)
    assert not formula_cells(rows)


def test_countermeasures_and_titles_are_inert_in_every_dashboard_csv(app, client, make_user):
    reporter = make_user("reporter", "staff")
    typed = [payload for payload in PAYLOADS if payload.strip() == payload]
    form = incident_form(title="=HYPERLINK(\"http://evil.example/\")", countermeasure_rows=str(len(typed)))
    for row, payload in enumerate(typed):
        form.update({f"countermeasures-{row}-text": payload, f"countermeasures-{row}-type": "rule",
                     f"countermeasures-{row}-status": "planned",
                     f"countermeasures-{row}-due_on": "2020-01-01",
                     f"countermeasures-{row}-item_codes": ""})
    login(client, "reporter")
    case_id = new_case_id(post_report(client, "/reports/new/incident", form))
    with app.app_context():
        workflow.submit_report(get_db(), reporter, case_id, pii_acknowledged=True)
    make_user("checker", "reviewer", department="soumu-gyousei-joho")
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    login(client, "checker")
    backlog = read_csv(client.get("/dashboard/backlog.csv?origin=internal").data)
    mine = [row for row in backlog if row[5] == "'=HYPERLINK(\"http://evil.example/\")"]
    assert sorted(row[0] for row in mine) == sorted("'" + payload for payload in typed)
    for chart in dashboard.CSV_COLUMNS:
        response = client.get(f"/dashboard/{chart}.csv")
        assert response.status_code == 200, chart
        assert not formula_cells(read_csv(response.data)), chart


def test_trainer_notes_are_inert_in_the_workshop_csv(app, client, make_user):
    trainer = make_user("trainer", "trainer", department="soumu-jinji")
    with app.app_context():
        db = get_db()
        case_ids = [row[0] for row in db.execute(
            "SELECT case_id FROM cases WHERE status = 'published' ORDER BY case_id LIMIT ?",
            [len(PAYLOADS)])]
        workshop_id = workshops.create_workshop(db, trainer, title="-研修", held_on="")
        for case_id in case_ids:
            workshops.add_case(db, trainer, workshop_id, case_id)
    login(client, "trainer")
    for case_id, payload in zip(case_ids, PAYLOADS):
        page = client.get(f"/workshops/{workshop_id}").get_data(as_text=True)
        version = re.search(r'name="version" value="(\d*)"', page)
        response = client.post(f"/workshops/{workshop_id}/cases/{case_id}",
                               data={"csrf_token": csrf_token(page), "note": payload,
                                     "version": version.group(1) if version else ""})
        assert response.status_code == 302
    rows = read_csv(client.get(f"/workshops/{workshop_id}/cases.csv").data)
    # Notes are stored stripped, so "\t=1" is kept as "=1".
    assert [row[-1] for row in rows[1:]] == ["'" + payload.strip() for payload in PAYLOADS]
    assert [row[0] for row in rows[1:]] == [str(n) for n in range(1, len(PAYLOADS) + 1)]
    assert not formula_cells(rows)
