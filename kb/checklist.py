"""The personal-information checklist: versions, sections and items with stable codes.

A checklist file (the shape of ``data/seed/checklist.yaml``) is one version. Items keep
their code (``3-2``) across versions; links from countermeasures name the code, so
they survive a new version.
"""

import json
from pathlib import Path

import yaml

from kb import audit
from kb.cases import CASE_DATE, INCIDENT_TYPES, TASKS, readable_clause, require_readable
from kb.db import mark_changed, transaction, utcnow
from kb.exceptions import Conflict, Forbidden, Invalid, NotFound
from kb.roles import require_role


def read_checklist_file(path) -> dict:
    """Parse and check a checklist YAML file: {version, title, sections: [{code, title, items}]}.

    Raises Invalid naming the offending line: YAML that does not parse, a section without
    code or title, an item without code or text, a code used twice, an unknown task or
    incident type.
    """
    text = Path(path).read_text(encoding="utf-8-sig")
    try:
        _check_depth(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}行目" if mark else "ファイル"
        raise Invalid({where: [f"YAMLとして読めません（{getattr(exc, 'problem', exc)}）。"]}) from None
    errors: dict[str, list[str]] = {}

    def fail(node, message):
        errors.setdefault(f"{node.start_mark.line + 1}行目", []).append(message)

    if not isinstance(root, yaml.MappingNode):
        raise Invalid({"ファイル": ["version・title・sections を持つチェックリストのYAMLではありません。"]})
    top = _mapping(root)
    version = _scalar(top.get("version"))
    if not version:
        fail(root, "version（版）がありません。")
    sections, seen = [], {}
    sections_node = top.get("sections")
    if not isinstance(sections_node, yaml.SequenceNode) or not sections_node.value:
        fail(root, "sections（節の一覧）がありません。")
    for section_node in sections_node.value if isinstance(sections_node, yaml.SequenceNode) else []:
        section = _mapping(section_node)
        code, title = _scalar(section.get("code")), _scalar(section.get("title"))
        if not code:
            fail(section_node, "節に code がありません。")
        if not title:
            fail(section_node, f"節「{code}」に title（見出し）がありません。")
        items = []
        items_node = section.get("items")
        for item_node in items_node.value if isinstance(items_node, yaml.SequenceNode) else []:
            item = _mapping(item_node)
            item_code, item_text = _scalar(item.get("code")), _scalar(item.get("text"))
            if not item_code:
                fail(item_node, "項目に code がありません。")
            elif item_code in seen:
                fail(item.get("code", item_node),
                     f"項目コード「{item_code}」が重複しています（{seen[item_code]}行目と同じ）。")
            else:
                seen[item_code] = item_node.start_mark.line + 1
            if not item_text:
                fail(item_node, f"項目「{item_code}」に text（確認の文）がありません。")
            tasks = _sequence(item.get("tasks"))
            types = _sequence(item.get("incident_types"))
            for task in set(tasks) - set(TASKS):
                fail(item.get("tasks"), f"項目「{item_code}」の作業「{task}」は決められた作業にありません。")
            for kind in set(types) - set(INCIDENT_TYPES):
                fail(item.get("incident_types"),
                     f"項目「{item_code}」の種別「{kind}」は決められた種別にありません。")
            items.append({"code": item_code, "text": item_text,
                          "guidance": _scalar(item.get("guidance")), "tasks": tasks,
                          "incident_types": types})
        sections.append({"code": code, "title": title, "items": items})
    if errors:
        raise Invalid(errors)
    return {"version": version, "title": _scalar(top.get("title")) or "個人情報チェックリスト",
            "sections": sections}


MAX_DEPTH = 20  # a checklist nests four deep; PyYAML's composer recurses per level


def _check_depth(text: str) -> None:
    """Invalid naming the line where the YAML nests deeper than MAX_DEPTH.

    PyYAML's parser is iterative, its composer recursive: the events are read first so
    that ``[[[[…`` is refused before it can exhaust the stack.
    """
    depth = 0
    for event in yaml.parse(text):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise Invalid({f"{event.start_mark.line + 1}行目": [
                    f"入れ子が深すぎます（{MAX_DEPTH}段まで）。チェックリストのYAMLではありません。"]})
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _mapping(node) -> dict:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {key.value: value for key, value in node.value if isinstance(key, yaml.ScalarNode)}


def _scalar(node) -> str:
    return str(node.value).strip() if isinstance(node, yaml.ScalarNode) and node.value else ""


def _sequence(node) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [str(item.value).strip() for item in node.value if isinstance(item, yaml.ScalarNode)]


def load_checklist(db, path, actor=None) -> bool:
    """Store the checklist version in ``path`` and make it current.

    Returns False, changing nothing, when that version is already stored.
    """
    checklist = read_checklist_file(path)
    with transaction(db):
        if db.execute("SELECT 1 FROM checklist_versions WHERE version = ?",
                      [checklist["version"]]).fetchone():
            return False
        db.execute("UPDATE checklist_versions SET is_current = 0")
        version_id = db["checklist_versions"].insert({
            "version": checklist["version"], "title": checklist["title"],
            "is_current": 1, "loaded_at": utcnow(),
        }).last_pk
        position = 0
        for section_position, section in enumerate(checklist["sections"]):
            db["checklist_sections"].insert({
                "version_id": version_id, "code": section["code"],
                "title": section["title"], "position": section_position,
            })
            for item in section["items"]:
                db["checklist_items"].insert({
                    "version_id": version_id, "section_code": section["code"],
                    "code": item["code"], "text": item["text"],
                    "guidance": item.get("guidance") or "",
                    "tasks": json.dumps(item.get("tasks") or []),
                    "incident_types": json.dumps(item.get("incident_types") or []),
                    "position": position,
                })
                position += 1
        audit.record(db, actor, "checklist_load", target=checklist["version"])
    return True


def current_version(db) -> dict | None:
    rows = db.execute_returning_dicts("SELECT * FROM checklist_versions WHERE is_current = 1")
    return rows[0] if rows else None


def current_items(db, *, task: str | None = None) -> list[dict]:
    """Items of the current version in checklist order; only those for ``task`` if given."""
    rows = db.query(
        "SELECT i.*, s.title AS section_title FROM checklist_items i"
        " JOIN checklist_versions v ON v.version_id = i.version_id AND v.is_current = 1"
        " JOIN checklist_sections s ON s.version_id = i.version_id AND s.code = i.section_code"
        " ORDER BY i.position"
    )
    items = [dict(row, tasks=json.loads(row["tasks"]),
                  incident_types=json.loads(row["incident_types"])) for row in rows]
    if task:
        items = [item for item in items if task in item["tasks"]]
    return items


def known_codes(db) -> set[str]:
    """Every item code of any version: links may name an item a later version dropped."""
    return {row[0] for row in db.execute("SELECT DISTINCT code FROM checklist_items")}


def current_sections(db, *, task: str | None = None) -> list[dict]:
    """The current version's sections, each with its ``items`` (filtered by task if given)."""
    sections: dict[str, dict] = {}
    for item in current_items(db, task=task):
        section = sections.setdefault(item["section_code"], {
            "code": item["section_code"], "title": item["section_title"], "items": []})
        section["items"].append(item)
    return list(sections.values())


def current_codes(db) -> set[str]:
    return {item["code"] for item in current_items(db)}


def get_item(db, code: str) -> dict:
    """The item with this code: from the current version, else from the newest version
    that had it (marked ``removed``: links to it are kept and shown as such)."""
    rows = db.execute_returning_dicts(
        "SELECT i.*, v.version, v.is_current, s.title AS section_title FROM checklist_items i"
        " JOIN checklist_versions v USING (version_id)"
        " LEFT JOIN checklist_sections s ON s.version_id = i.version_id AND s.code = i.section_code"
        " WHERE i.code = ? ORDER BY v.is_current DESC, v.version_id DESC LIMIT 1", [code])
    if not rows:
        raise NotFound(f"checklist item {code}")
    item = rows[0]
    return dict(item, tasks=json.loads(item["tasks"]),
                incident_types=json.loads(item["incident_types"]),
                removed=not item["is_current"])


# The overview, item pages and cards are the same for every reader and get printed and
# posted: they are built from what the whole office may read (published cases), never
# from a report only some readers may see.
PUBLIC, _ = readable_clause(None)

# A published case touches an item through its own links or its countermeasures' links.
TOUCHES = (
    "SELECT l.item_code AS code, c.case_id, m.countermeasure_id FROM countermeasure_checklist_items l"
    " JOIN countermeasures m USING (countermeasure_id) JOIN cases c ON c.case_id = m.case_id"
    f" WHERE {PUBLIC}"
    " UNION ALL SELECT i.item_code, i.case_id, NULL FROM case_checklist_items i"
    f" JOIN cases c USING (case_id) WHERE {PUBLIC}"
)


def item_usage(db) -> dict[str, dict[str, int]]:
    """For each item code: how many published cases and countermeasures touch it."""
    return {row["code"]: {"cases": row["cases"], "countermeasures": row["countermeasures"]}
            for row in db.query(
                f"SELECT code, count(DISTINCT case_id) AS cases,"
                f" count(DISTINCT countermeasure_id) AS countermeasures FROM ({TOUCHES})"
                " GROUP BY code")}


def item_cases(db, code: str) -> dict:
    """The published cases and countermeasures that touch an item, newest first."""
    cases = db.execute_returning_dicts(
        "SELECT c.case_id, c.title, c.kind, c.origin, c.incident_type, c.municipality,"
        " c.occurred_on, c.discovered_on, c.published_on, c.lesson, d.name AS department_label,"
        f" {CASE_DATE} AS case_date"
        f" FROM cases c LEFT JOIN departments d USING (department_id)"
        f" WHERE c.case_id IN (SELECT case_id FROM ({TOUCHES}) WHERE code = ?)"
        f" ORDER BY {CASE_DATE} IS NULL, {CASE_DATE} DESC, c.case_id DESC", [code])
    measures = db.execute_returning_dicts(
        "SELECT m.countermeasure_id, m.text, m.status, m.type, c.case_id, c.title AS case_title,"
        " c.origin FROM countermeasure_checklist_items l JOIN countermeasures m USING (countermeasure_id)"
        f" JOIN cases c ON c.case_id = m.case_id WHERE l.item_code = ? AND {PUBLIC}"
        f" ORDER BY {CASE_DATE} DESC, m.countermeasure_id DESC",
        [code])
    return {"cases": cases, "countermeasures": measures}


def revision_candidates(db, actor) -> dict[str, list[dict]]:
    """Reviewers' 改訂候補, by task: reports whose rule was missing or unknown, and
    published cases linked to no item (never a draft: only what the reviewer may read)."""
    require_role(actor, "reviewer")
    readable, params = readable_clause(actor, drafts=False)
    rows = db.execute_returning_dicts(
        "SELECT c.case_id, c.title, c.task, c.origin, c.status, c.rule_status, c.municipality,"
        " d.name AS department_label,"
        " CASE WHEN c.rule_status IN ('no_rule', 'rule_unknown') THEN 'rule' ELSE 'unlinked' END"
        "  AS reason"
        " FROM cases c LEFT JOIN departments d USING (department_id)"
        f" WHERE {readable} AND ((c.origin = 'internal'"
        "        AND c.status IN ('submitted', 'approved', 'published')"
        "        AND c.rule_status IN ('no_rule', 'rule_unknown'))"
        "    OR (c.status = 'published' AND NOT EXISTS"
        "        (SELECT 1 FROM case_checklist_items i WHERE i.case_id = c.case_id)"
        "        AND NOT EXISTS (SELECT 1 FROM countermeasure_checklist_items l"
        "        JOIN countermeasures m USING (countermeasure_id) WHERE m.case_id = c.case_id)))"
        " ORDER BY c.task, reason, c.case_id DESC", params)
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["task"] or "other", []).append(row)
    return grouped


def _check_codes(db, codes) -> list[str]:
    codes = sorted({code.strip() for code in codes if code.strip()})
    unknown = [code for code in codes if code not in known_codes(db)]
    if unknown:
        raise Invalid({"item_codes": [f"チェックリストにない項目コードです：{'、'.join(unknown)}"]})
    return codes


def set_countermeasure_items(db, actor, countermeasure_id: int, codes, *,
                             version=None) -> None:
    """Link a countermeasure to checklist items (replacing its links).

    Reviewers may link any case's countermeasures, external ones included; managers
    those of their department's reports. NotFound, changing nothing, when the actor may
    not read the case (a draft, for a reviewer); Forbidden when they read it but may not link.
    Conflict, changing nothing, when the countermeasure changed since ``version`` (its
    ``countermeasures.version`` as the actor's page showed it; None skips the check).
    """
    rows = db.execute_returning_dicts(
        "SELECT m.case_id, c.origin, c.department_id, c.status, c.version FROM countermeasures m"
        " JOIN cases c USING (case_id) WHERE m.countermeasure_id = ?", [countermeasure_id])
    if not rows:
        raise NotFound(f"countermeasure {countermeasure_id}")
    case = rows[0]
    require_readable(db, actor, case["case_id"])
    _may_link(actor, case)
    codes = _check_codes(db, codes)
    with transaction(db):
        _check_version(db, "countermeasures", "countermeasure_id", countermeasure_id, version)
        db.execute("DELETE FROM countermeasure_checklist_items WHERE countermeasure_id = ?",
                   [countermeasure_id])
        db["countermeasure_checklist_items"].insert_all(
            {"countermeasure_id": countermeasure_id, "item_code": code, "created_at": utcnow()}
            for code in codes)
        db.execute("UPDATE countermeasures SET version = version + 1, updated_at = ?"
                   " WHERE countermeasure_id = ?", [utcnow(), countermeasure_id])
        _touch(db, case["case_id"])
        audit.record(db, actor, "checklist_link", case_id=case["case_id"],
                     detail={"countermeasure_id": countermeasure_id, "codes": codes})


def set_case_items(db, actor, case_id: int, codes, *, version=None) -> None:
    """Link a case itself to checklist items (for cases with no countermeasure to link).
    NotFound when the actor may not read the case, Forbidden when they may not link it;
    Conflict, changing nothing, when the case changed since ``version`` (None skips the
    check)."""
    rows = db.execute_returning_dicts(
        "SELECT case_id, origin, department_id, status, version FROM cases WHERE case_id = ?",
        [case_id])
    if not rows:
        raise NotFound(f"case {case_id}")
    require_readable(db, actor, case_id)
    _may_link(actor, rows[0])
    codes = _check_codes(db, codes)
    with transaction(db):
        _check_version(db, "cases", "case_id", case_id, version)
        db.execute("DELETE FROM case_checklist_items WHERE case_id = ?", [case_id])
        db["case_checklist_items"].insert_all(
            {"case_id": case_id, "item_code": code, "created_at": utcnow()} for code in codes)
        _touch(db, case_id)
        audit.record(db, actor, "checklist_link", case_id=case_id, detail={"codes": codes})


def may_link(actor, case: dict) -> bool:
    """Whether ``actor`` may link a case they may read (reviewers never see drafts)."""
    if actor.has_role("reviewer"):
        return case["status"] != "draft"
    return (case["origin"] == "internal" and case["status"] != "draft"
            and actor.has_role("manager") and case["department_id"] == actor.department_id)


def _may_link(actor, case: dict) -> None:
    if not may_link(actor, case):
        raise Forbidden("checklist links")


def _check_version(db, table: str, key: str, row_id: int, version) -> None:
    # Called inside the write transaction, so the version compared is the one replaced.
    current = db.execute(f"SELECT version FROM {table} WHERE {key} = ?", [row_id]).fetchone()
    if version is not None and (current is None or str(version) != str(current[0])):
        raise Conflict(f"{table} {row_id} changed since version {version}")


def _touch(db, case_id: int) -> None:
    # The case's index document lists its item codes: a new version re-indexes it.
    # Counted in SQL: a version read before the transaction may already be stale.
    db.execute("UPDATE cases SET version = version + 1, updated_at = ? WHERE case_id = ?",
               [utcnow(), case_id])
    mark_changed(db, case_id)


CARD_ITEMS = 10


def card(db, *, task: str | None = None, department_id: int | None = None) -> dict:
    """A one-page card: the items that matter for a task or a department, and one line
    from a recent published case, to post beside the FAX machine or the counter.

    Built from published cases only, so the card is the same for every reader and a
    report still in review (or a draft being typed) never changes it."""
    items = current_items(db)
    if task:
        chosen = [item for item in items if task in item["tasks"]]
        example = db.execute_returning_dicts(
            "SELECT case_id, title, lesson, municipality, origin FROM cases c"
            f" WHERE {PUBLIC} AND task = ?"
            f" ORDER BY {CASE_DATE} IS NULL, {CASE_DATE} DESC LIMIT 1", [task])
        return {"items": chosen[:CARD_ITEMS], "example": example[0] if example else None,
                "tasks": [task]}
    tasks = [row[0] for row in db.execute(
        f"SELECT task FROM cases c WHERE {PUBLIC} AND department_id = ? AND task IS NOT NULL"
        " GROUP BY task ORDER BY count(*) DESC LIMIT 3", [department_id])]
    linked = {row[0] for row in db.execute(
        f"SELECT code FROM ({TOUCHES}) t JOIN cases c USING (case_id) WHERE c.department_id = ?",
        [department_id])}
    chosen = [item for item in items
              if item["code"] in linked or set(item["tasks"]) & set(tasks)]
    chosen.sort(key=lambda item: (item["code"] not in linked, item["position"]))
    example = db.execute_returning_dicts(
        "SELECT case_id, title, lesson, municipality, origin FROM cases c"
        f" WHERE {PUBLIC} AND department_id = ?"
        f" ORDER BY {CASE_DATE} DESC LIMIT 1",
        [department_id])
    return {"items": chosen[:CARD_ITEMS], "example": example[0] if example else None,
            "tasks": tasks}
