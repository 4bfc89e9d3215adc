"""Cases: incidents and near-misses, filed here or published by other municipalities.

Every SQL statement about cases lives here, and so does the rule of who may read what
(``readable_clause``, the one predicate every page, write check, list and aggregate uses):
published cases are read by everyone; an unpublished one only by its reporter, the
managers of its department and the reviewers. Drafts stay with their reporter.
"""

import json
import math
import unicodedata

from kb import audit
from kb.exceptions import NotFound

KINDS = ("incident", "near_miss")
KIND_LABELS = {"incident": "事故", "near_miss": "ヒヤリ・ハット"}
ORIGINS = ("internal", "external")
ORIGIN_LABELS = {"internal": "庁内", "external": "他自治体"}
STATUS_LABELS = {
    "draft": "下書き", "submitted": "提出済み", "approved": "承認済み",
    "published": "公開", "withdrawn": "取り下げ",
}
TASKS = (
    "fax", "email", "postal", "counter", "phone", "web_publish", "media", "paper_storage",
    "disposal", "contractor", "system", "remote_work", "meeting", "other",
)
TASK_LABELS = {
    "fax": "FAX送信", "email": "メール送信", "postal": "郵送・封入", "counter": "窓口交付",
    "phone": "電話対応", "web_publish": "ホームページ掲載", "media": "媒体の持ち出し",
    "paper_storage": "書類の保管", "disposal": "廃棄", "contractor": "委託",
    "system": "システム操作", "remote_work": "テレワーク", "meeting": "会議・打合せ",
    "other": "その他",
}
INCIDENT_TYPES = (
    "postal_misdelivery", "email_missend", "fax_missend", "document_loss", "media_loss",
    "counter_misissue", "web_mispublish", "contractor", "system_misconfig", "cyber_attack",
    "improper_disposal", "staff_misconduct", "oral_disclosure", "other",
)
INCIDENT_TYPE_LABELS = {
    "postal_misdelivery": "誤送付・誤封入", "email_missend": "メール誤送信",
    "fax_missend": "FAX誤送信", "document_loss": "書類の紛失", "media_loss": "記録媒体の紛失",
    "counter_misissue": "窓口での誤交付", "web_mispublish": "ウェブへの誤掲載",
    "contractor": "委託先での事故", "system_misconfig": "システムの設定誤り",
    "cyber_attack": "サイバー攻撃", "improper_disposal": "不適切な廃棄",
    "staff_misconduct": "職員の不正", "oral_disclosure": "口頭・書面での漏えい",
    "other": "その他",
}
RULE_STATUS_LABELS = {
    "no_rule": "ルールがなかった", "rule_unknown": "ルールを知らなかった",
    "rule_not_followed": "知っていたが守られなかった", "followed_but_missed": "守ったが見落とした",
    "contractor": "委託先での発生",
}
COUNTERMEASURE_TYPE_LABELS = {
    "education": "教育", "mechanism": "技術・仕組み", "rule": "規則・手順", "sharing": "模範・共有",
}
COUNTERMEASURE_STATUS_LABELS = {"planned": "予定", "in_progress": "実施中", "done": "完了"}

# The risky task behind each incident type whose task is plain from the type itself.
TASK_BY_INCIDENT_TYPE = {
    "fax_missend": "fax", "email_missend": "email", "postal_misdelivery": "postal",
    "counter_misissue": "counter", "web_mispublish": "web_publish", "media_loss": "media",
    "document_loss": "paper_storage", "improper_disposal": "disposal",
    "contractor": "contractor", "system_misconfig": "system", "cyber_attack": "system",
}
# For the other types, words of the channel name the task; the first match wins.
TASK_BY_CHANNEL_WORD = (
    ("fax", "fax"), ("ファクス", "fax"), ("電話", "phone"), ("窓口", "counter"),
    ("メール", "email"), ("郵送", "postal"), ("配送", "postal"), ("ウェブ", "web_publish"),
    ("ホームページ", "web_publish"), ("usb", "media"), ("sd", "media"), ("cd", "media"),
    ("媒体", "media"), ("持ち出し", "media"), ("システム", "system"), ("住基ネット", "system"),
    ("サーバ", "system"), ("端末", "system"), ("アプリ", "system"), ("ツール", "system"),
    ("紙書類", "paper_storage"), ("口頭", "counter"),
)
JSON_FIELDS = ("data_items", "factors", "whys", "causes")


def infer_task(incident_type: str | None, channel: str | None) -> str:
    """The risky task of a case that records only its type and channel (imported cases)."""
    if incident_type in TASK_BY_INCIDENT_TYPE:
        return TASK_BY_INCIDENT_TYPE[incident_type]
    words = unicodedata.normalize("NFKC", channel or "").lower()
    for word, task in TASK_BY_CHANNEL_WORD:
        if word in words:
            return task
    return "other"


def _decode(row: dict, viewer) -> dict:
    """A case row for ``viewer``: JSON lists decoded, the reporter shown only to those
    who handle the report, never to anyone but the reporter when anonymous, and to
    nobody once the case is published (it reads as a case for the whole office; the
    audit log keeps who reported it)."""
    case = dict(row)
    for field in JSON_FIELDS:
        case[field] = json.loads(case[field] or "[]")
    own = case["reporter_id"] is not None and case["reporter_id"] == viewer.user_id
    handler = viewer.has_role("reviewer") or (
        viewer.has_role("manager") and case["department_id"] == viewer.department_id)
    if case["status"] == "published" or not (own or (handler and not case["anonymous"])):
        case["reporter_name"] = None
    case["reported_by_viewer"] = own
    case.pop("reporter_id")
    return case


def readable_clause(user, alias: str = "c", *, drafts: bool = True) -> tuple[str, list]:
    """A WHERE clause (on ``alias``) and its parameters selecting the cases ``user`` may
    read: the one statement of the read rule, used by every page, list and aggregate.

    Published cases are read by everyone; an unpublished report by its reporter, the
    managers of its department once submitted, and the reviewers; a draft by its reporter
    only. ``drafts=False`` leaves drafts out even for their reporter — what every count,
    chart and shared list uses, since a draft belongs on its reporter's own pages only.
    ``user`` None (or an account without id, such as ``users.READER``) reads the
    published cases: what the whole office may read.
    """
    published = f"{alias}.status = 'published'"
    if user is None or user.user_id is None:
        return f"({published})", []
    clause = [published, f"{alias}.reporter_id = ?"]
    params = [user.user_id]
    if user.has_role("reviewer"):
        clause.append(f"{alias}.status != 'draft'")
    elif user.has_role("manager"):
        clause.append(f"({alias}.department_id = ?"
                      f" AND {alias}.status IN ('submitted', 'approved'))")
        params.append(user.department_id)
    where = "(" + " OR ".join(clause) + ")"
    if not drafts:
        where = f"({where} AND {alias}.status != 'draft')"
    return where, params


def may_read(db, user, case_id: int) -> bool:
    """Whether the case exists and ``user`` may read it (see ``readable_clause``)."""
    where, params = readable_clause(user)
    return db.execute(f"SELECT 1 FROM cases c WHERE c.case_id = ? AND {where}",
                      [case_id] + params).fetchone() is not None


def require_readable(db, user, case_id: int) -> None:
    """NotFound unless ``user`` may read the case. Every write to a case calls this
    before any other check, so a refusal never tells that an unreadable case exists."""
    if not may_read(db, user, case_id):
        raise NotFound(f"case {case_id}")


# The day a case is dated by (cases with none come last): the day it happened, else the day it was found or published,
# else — an internal report without its day (the near-miss form does not require one) —
# the office day it was filed (first saved; timestamps are UTC, the office is JST,
# kb.dates.OFFICE_TZ). Not the submission: a report returned and resubmitted would move.
CASE_DATE = ("coalesce(c.occurred_on, c.discovered_on, c.published_on,"
             " CASE WHEN c.origin = 'internal' THEN date(c.created_at, '+9 hours') END)")


CASE_QUERY = (
    f"SELECT c.*, {CASE_DATE} AS case_date,"
    " d.name AS department_label, u.display_name AS reporter_name FROM cases c"
    " LEFT JOIN departments d ON d.department_id = c.department_id"
    " LEFT JOIN users u ON u.user_id = c.reporter_id"
)


def list_cases(db, user, *, q="", kind=None, origin=None, task=None, incident_type=None,
               page=1, page_size=30) -> dict:
    """One page of the cases ``user`` may read, newest first.

    ``q`` matches words in the title and summary (every word must appear). Returns
    {cases, total, page, pages}.
    """
    where, params = readable_clause(user)
    conditions = [where]
    for column, value, allowed in (("kind", kind, KINDS), ("origin", origin, ORIGINS),
                                   ("task", task, TASKS),
                                   ("incident_type", incident_type, INCIDENT_TYPES)):
        if value in allowed:
            conditions.append(f"c.{column} = ?")
            params.append(value)
    for word in unicodedata.normalize("NFKC", q or "").split()[:10]:
        conditions.append("(c.title LIKE ? ESCAPE '\\' OR c.summary LIKE ? ESCAPE '\\')")
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params += [pattern, pattern]
    sql_where = " WHERE " + " AND ".join(conditions)
    total = db.execute(f"SELECT count(*) FROM cases c{sql_where}", params).fetchone()[0]
    pages = max(1, math.ceil(total / page_size))
    page = min(max(1, page), pages)
    rows = db.query(
        f"{CASE_QUERY}{sql_where}"
        f" ORDER BY {CASE_DATE} IS NULL, {CASE_DATE} DESC, c.case_id DESC LIMIT ? OFFSET ?",
        params + [page_size, (page - 1) * page_size],
    )
    return {"cases": [_decode(row, user) for row in rows], "total": total, "page": page,
            "pages": pages}


def read_case(db, user, case_id: int) -> dict:
    """The case with its countermeasures, if ``user`` may read it; NotFound otherwise.

    A case the user may not read is reported as missing, so its existence does not leak.
    Reading an unpublished case is written to the audit log.
    """
    where, params = readable_clause(user)
    rows = db.execute_returning_dicts(f"{CASE_QUERY} WHERE c.case_id = ? AND {where}",
                                      [case_id] + params)
    if not rows:
        raise NotFound(f"case {case_id}")
    case = _decode(rows[0], user)
    case["countermeasures"] = list_countermeasures(db, case_id)
    case["checklist_items"] = [row[0] for row in db.execute(
        "SELECT item_code FROM case_checklist_items WHERE case_id = ? ORDER BY item_code",
        [case_id])]
    if case["status"] != "published":
        audit.record(db, user, "case_read", case_id=case_id,
                     anonymous=bool(case["anonymous"]) and case["reported_by_viewer"])
    return case


def list_countermeasures(db, case_id: int) -> list[dict]:
    """The case's countermeasures in order, each with ``item_codes`` it is linked to."""
    return countermeasures_of(db, [case_id]).get(case_id, [])


def countermeasures_of(db, case_ids: list[int]) -> dict[int, list[dict]]:
    """The countermeasures of several cases in one query, by case id (cases without any
    are absent)."""
    rows = db.execute_returning_dicts(
        "SELECT m.*, d.name AS owner_department,"
        " (SELECT group_concat(item_code, ' ') FROM countermeasure_checklist_items l"
        "  WHERE l.countermeasure_id = m.countermeasure_id) AS item_code_list"
        " FROM countermeasures m"
        " LEFT JOIN departments d ON d.department_id = m.owner_department_id"
        f" WHERE m.case_id IN ({','.join('?' * len(case_ids))}) ORDER BY m.case_id, m.position",
        list(case_ids))
    found: dict[int, list[dict]] = {}
    for row in rows:
        row["item_codes"] = sorted((row.pop("item_code_list") or "").split())
        found.setdefault(row["case_id"], []).append(row)
    return found


# --- the search index's view of cases ------------------------------------------------

INDEXED = "status != 'withdrawn'"  # the cases the search index holds

INDEX_QUERY = (
    f"SELECT c.*, {CASE_DATE} AS case_date, d.name AS department_label,"
    " (SELECT group_concat(text, char(10)) FROM"
    "   (SELECT text FROM countermeasures m WHERE m.case_id = c.case_id ORDER BY position))"
    "   AS countermeasure_texts,"
    " (SELECT group_concat(code, ',') FROM"
    "   (SELECT item_code AS code FROM case_checklist_items i WHERE i.case_id = c.case_id"
    "    UNION SELECT l.item_code FROM countermeasure_checklist_items l"
    "    JOIN countermeasures m USING (countermeasure_id) WHERE m.case_id = c.case_id))"
    "   AS item_codes"
    " FROM cases c LEFT JOIN departments d ON d.department_id = c.department_id"
    f" WHERE c.{INDEXED}"
)


def index_rows(db, case_ids=None):
    """Rows to index (every case but withdrawn ones), lists joined into text."""
    sql, params = INDEX_QUERY, []
    if case_ids is not None:
        sql += f" AND c.case_id IN ({','.join('?' * len(case_ids))})"
        params = list(case_ids)
    for row in db.query(sql + " ORDER BY c.case_id", params):
        for field in JSON_FIELDS:
            row[field] = "\n".join(json.loads(row[field] or "[]"))
        yield row


def count_index_rows(db) -> int:
    """How many rows ``index_rows`` gives for the whole index."""
    return db.execute(f"SELECT count(*) FROM cases WHERE {INDEXED}").fetchone()[0]


def index_stamp(row: dict) -> str:
    """What tells an indexed document from a newer version of its case."""
    return f"{row['updated_at']}|{row['version']}"


def index_stamps(db) -> dict[int, str]:
    """The stamp every indexable case should have in the index."""
    return {row[0]: f"{row[1]}|{row[2]}" for row in db.execute(
        f"SELECT case_id, updated_at, version FROM cases WHERE {INDEXED}")}


def texts_for_feedback(db, user, case_ids: list[int]) -> dict[int, str]:
    """The title and summary of the cases among ``case_ids`` that ``user`` may read, by id:
    what search's feedback reads of its best cases (kb.search), without the full rows (by
    id, NOT INDEXED: see ``rows_for_results``)."""
    if not case_ids:
        return {}
    where, params = readable_clause(user)
    return {case_id: f"{title or ''}\n{summary or ''}" for case_id, title, summary in db.execute(
        f"SELECT c.case_id, c.title, c.summary FROM cases c NOT INDEXED"
        f" WHERE c.case_id IN ({','.join('?' * len(case_ids))}) AND {where}",
        list(case_ids) + params)}


def rows_for_results(db, user, case_ids: list[int]) -> dict[int, dict]:
    """The cases among ``case_ids`` that ``user`` may read, by id, with their first
    countermeasures: the database has the last word on what a search may show."""
    if not case_ids:
        return {}
    where, params = readable_clause(user)
    # By id, NOT INDEXED: without it SQLite picked the status index and read every
    # published case (3 ms at 20,000 cases) to return a page of them.
    rows = db.execute_returning_dicts(
        f"{CASE_QUERY.replace('FROM cases c', 'FROM cases c NOT INDEXED', 1)}"
        f" WHERE c.case_id IN ({','.join('?' * len(case_ids))}) AND {where}",
        list(case_ids) + params)
    found = {row["case_id"]: _decode(row, user) for row in rows}
    measures = countermeasures_of(db, list(found)) if found else {}
    for case_id, case in found.items():
        case["countermeasures"] = measures.get(case_id, [])[:3]
    return found
