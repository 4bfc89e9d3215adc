"""Builders for report forms, shared by the filing and workflow tests."""

import re

from kb.db import transaction
from tests.conftest import csrf_token

# First saved at 01:25 JST on 1 March 2026 (still 28 February in UTC).
UNDATED_FILED = "2026-02-28T16:25:00+00:00"


def insert_undated_near_miss(db) -> int:
    """A published near-miss with no day of its own (the form leaves it optional), first
    saved at ``UNDATED_FILED``: it is dated 2026-03-01 by its filing. Returns its id."""
    with transaction(db):
        return db["cases"].insert({
            "kind": "near_miss", "origin": "internal", "status": "published",
            "title": "日付のないヒヤリ", "summary": "送る前に気づいた。", "task": "fax",
            "created_at": UNDATED_FILED, "updated_at": "2026-03-02T00:00:00+00:00",
            "submitted_at": "2026-03-02T00:00:00+00:00"}).last_pk


def near_miss_form(**overrides):
    form = {
        "summary": "FAXの短縮ダイヤルが別の事業所の番号に登録されていた。",
        "how_found": "送信前に画面の宛先名を読み上げて気づいた。",
        "task": "fax",
        "potential_outcome": "介護認定の資料が別の事業所に届くところだった。",
        "prevention_idea": "短縮ダイヤルの登録を年1回点検する。",
        "checklist_items": ["3-5"],
    }
    form.update(overrides)
    return form


def incident_form(**overrides):
    form = {
        "title": "通知書の封入誤りにより別人の通知を送付",
        "occurred_on": "2026-10-01", "discovered_on": "2026-10-03",
        "task": "postal", "incident_type": "postal_misdelivery", "channel": "郵送",
        "summary": "介護保険料の通知書を封入する際、2人分を1つの封筒に入れて発送した。",
        "how_found": "受け取った区民から電話で連絡があった。",
        "immediate_action": "当日中に訪問して回収し、本人に謝罪した。",
        "affected_count": "2", "data_items": "氏名\n住所\n保険料額",
        "rule_status": "followed_but_missed", "factors": ["man", "media"],
        "whys-0": "2人分の通知が重なって1通に見えた。", "whys-1": "封入前に枚数を数える手順がなかった。",
        "root_cause": "封入物と宛名の照合が手作業の目視だけに頼っていた。",
        "countermeasure_rows": "1",
        "countermeasures-0-text": "封入封緘機の重量チェックで枚数違いを止める。",
        "countermeasures-0-type": "mechanism", "countermeasures-0-due_on": "2027-03-31",
        "countermeasures-0-status": "planned", "countermeasures-0-item_codes": "4-1 4-2",
        "lesson": "封入物の照合は人の目ではなく仕組みで行う。",
    }
    form.update(overrides)
    return form


def post_report(client, url, form, action="save", **extra):
    token = csrf_token(client.get("/reports/new").get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, "action": action, **form, **extra})


def new_case_id(response) -> int:
    match = re.search(r"/reports/(\d+)/edit", response.headers.get("Location", ""))
    assert match, response.headers.get("Location")
    return int(match.group(1))


def file_report(client, kind="near_miss", form=None, *, submit=False):
    """File a report as the signed-in client; return its case id."""
    form = form if form is not None else (near_miss_form() if kind == "near_miss" else incident_form())
    response = post_report(client, f"/reports/new/{kind}", form, action="save")
    case_id = new_case_id(response)
    if submit:
        edit = client.get(f"/reports/{case_id}/edit").get_data(as_text=True)
        version = re.search(r'name="version" value="(\d+)"', edit).group(1)
        response = post_report(client, f"/reports/{case_id}/edit", dict(form, version=version),
                               action="submit")
        assert response.status_code == 302, response.get_data(as_text=True)
    return case_id


def workflow_post(client, case_id, step, **data):
    """Press a workflow button as a browser would: with the CSRF token and the version of
    the case page's workflow form (none when the page shows no such form)."""
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    token = csrf_token(client.get("/").get_data(as_text=True))
    form = re.search(r'<form[^>]*>((?:(?!</form>).)*?id="workflow-comment".*?)</form>', page, re.S)
    version = re.search(r'name="version" value="(\d+)"', form.group(1)) if form else None
    fields = {"version": version.group(1)} if version else {}
    return client.post(f"/reports/{case_id}/{step}",
                       data={"csrf_token": token, **fields, **data})


def form_version(html: str, action: str | None) -> str:
    """The version a page's form posting to ``action`` carries, as a browser would send it
    (``action`` None: the page's first form with a version, e.g. one posting to the page)."""
    if action is None:
        form = html
    else:
        match = re.search(r'<form[^>]*action="' + re.escape(action) + r'"[^>]*>(.*?)</form>',
                          html, re.S)
        assert match, f"no form posting to {action}"
        form = match.group(1)
    version = re.search(r'name="version"[^>]*value="([^"]*)"', form)
    assert version, f"the form posting to {action} carries no version"
    return version.group(1)
