"""The personal-information checklist: versions, sections and items with stable codes.

A checklist file (the shape of ``data/seed/checklist.yaml``) is one version. Items keep
their code (``3-2``) across versions; links from countermeasures name the code, so
they survive a new version.
"""

import json
from pathlib import Path

import yaml

from kb.db import transaction, utcnow


def read_checklist_file(path) -> dict:
    """Parse a checklist YAML file into {version, title, sections: [{code, title, items}]}."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return {
        "version": str(data["version"]),
        "title": data.get("title") or "個人情報チェックリスト",
        "sections": [
            {"code": str(section["code"]), "title": section["title"],
             "items": [dict(item, code=str(item["code"])) for item in section.get("items", [])]}
            for section in data["sections"]
        ],
    }


def load_checklist(db, path) -> bool:
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
