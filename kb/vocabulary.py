"""The office's search vocabulary (同義語・言い換え): groups of words that mean the same.

Reviewers keep it; everyone's searches use it, at search time (no reindex): a query word
that is a vocabulary word also finds the other words of its groups (kb.ranking weighs
them a little lower). Direction: a word marked *narrower* (狭い語) finds every other word
of its group; a word not marked (広い語) finds only the other 広い語 — 「宛名シール」 finds
「ラベル」, 「ラベル」 does not find 「宛名シール」. Expansion is one step, never transitive:
with 送付/送った and 送信/送った, 「送った」 finds both, 「送付」 does not find 「送信」.

Rules (refused with a message next to the field, nothing written):
- a group has two or more words and at least one 広い語; words of at most 30 characters,
  none empty, each with something searchable in it (kana, kanji, letters or digits), and
  none that is in nearly every case — one kana, letter or digit, a particle or a stop
  word (「の」「を」「a」「した」): a query would then find every case;
- no word finds more than ``MAX_ALTERNATIVES`` other words through all its groups (each
  one is searched for: hundreds would make every search of it slow and find everything);
- words are compared as search compares them (``fold``: kb.analysis's NFKC, case, kana
  and folding table), so 「FAX」 and 「ファクス」 are the same word: twice in one group is a
  duplicate, and two groups of exactly the same words are one group twice;
- a word may be in several groups, but it is narrower everywhere or nowhere: a word that
  is 狭い語 in one group and 広い語 in another is a *conflicting direction* and refused.
  (So the direction between two words is the same in every group that holds both.)

Every change is one transaction, compare-and-set on the group's ``version`` (Conflict
when it moved), audited (kb.audit) and written as a row of ``vocabulary_changes``, whose
id is the vocabulary's version: searches cache by it, so a change is used by the next
search without a restart. The CSV format (one row per group: 語, 狭い語, メモ) serves
offices that keep such lists in Excel; an upload replaces the whole vocabulary after a
preview, in one transaction, and a malformed file changes nothing.
"""

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from kb import analysis, audit, imports, ranking
from kb.db import transaction, utcnow
from kb.exceptions import Conflict, Invalid, NotFound
from kb.rendering import _looks_like_formula, excel_csv
from kb.roles import require_role

MAX_WORD_LENGTH = 30
MAX_WORDS = 20
MAX_NOTE_LENGTH = 200
# How many other words one word may find through all its groups (the seed's most is 8):
# each is searched for, so hundreds made one query ten times slower and find every case.
MAX_ALTERNATIVES = 30
# Rows an uploaded file may have: an office's list is hundreds of groups; a bigger file is
# another file by mistake, and would hold the write lock while it is compared and applied.
MAX_GROUPS = 2000
# What separates words in a field or a CSV cell: 、 ・ / (full or half width), commas, new
# lines, and the full-width blank that Japanese input puts between words (「紛失　なくした」).
SEPARATORS = re.compile(r"[、，,・･/／\n\r\t\u3000]")
CSV_HEADER = ("語", "狭い語", "メモ")
CSV_HEADERS = {"語": "words", "言葉": "words", "同義語": "words", "words": "words",
               "狭い語": "narrower", "narrower": "narrower",
               "メモ": "note", "備考": "note", "note": "note"}


# --- words ------------------------------------------------------------------------

def fold(word: str) -> str:
    """A word as search sees it (kb.analysis normalisation and folding), runs joined by a
    space: 「ＦＡＸ」, 「ファクス」 and 「fax」 all give "fax"; "" when nothing is searchable."""
    return " ".join("".join(c[0] for c in chars) for _, chars in analysis.runs(word))


def _in_every_case(folded: str) -> bool:
    """Whether a folded word is found in nearly every case: one character that is not a
    kanji (a kana, a letter, a digit; a query finds it at the start of any bigram or
    inside any word), or a particle, stop word or function word of the query side."""
    if len(folded) == 1:
        return not ("\u4e00" <= folded <= "\u9fff" or "\u3400" <= folded <= "\u4dbf")
    return folded in ranking.STOP_WORDS or folded in ranking.FUNCTION_WORDS


def split_words(text: str) -> list[str]:
    """The words of a field or a CSV cell, split at 、・/ and commas, trimmed. Empty
    pieces between two separators are kept (as "") so that they can be refused."""
    text = (text or "").strip()
    if not text:
        return []
    pieces = [piece.strip() for piece in SEPARATORS.split(text)]
    # A separator at the very end (「紛失、」) is a habit, not an empty word.
    while pieces and not pieces[-1]:
        pieces.pop()
    return pieces


@dataclass
class Draft:
    """A group as typed: broad words, narrower words, a note."""
    words: list[str]
    narrower: list[str]
    note: str = ""

    @classmethod
    def from_form(cls, form) -> "Draft":
        return cls(split_words(form.get("words", "")), split_words(form.get("narrower", "")),
                   (form.get("note") or "").strip())

    def members(self) -> list[tuple[str, bool]]:
        return [(w, False) for w in self.words] + [(w, True) for w in self.narrower]

    def key(self) -> tuple:
        """What the group means for search: its folded words and directions, and its note."""
        return (tuple(sorted((fold(w), n) for w, n in self.members())), self.note)


def check_draft(draft: Draft) -> dict[str, list[str]]:
    """Messages by field ("words", "narrower", "note") for one group on its own."""
    errors: dict[str, list[str]] = {}

    def fail(name, message):
        errors.setdefault(name, []).append(message)

    seen: dict[str, str] = {}
    for name, words in (("words", draft.words), ("narrower", draft.narrower)):
        for word in words:
            if not word:
                fail(name, "空の語があります（区切りの「、」「・」「/」が続いているか、先頭にあります）。")
                continue
            if len(word) > MAX_WORD_LENGTH:
                fail(name, f"「{word[:MAX_WORD_LENGTH]}…」は{MAX_WORD_LENGTH}文字を超えています"
                           f"（{len(word)}文字）。{MAX_WORD_LENGTH}文字以内にしてください。")
                continue
            folded = fold(word)
            if not folded:
                fail(name, f"「{word}」には検索に使える文字（かな・漢字・英数字）がありません。")
                continue
            if _in_every_case(folded):
                fail(name, f"「{word}」はほとんどの事例に含まれる語（1文字のかな・英数字や、助詞など）"
                           f"なので使えません。検索がすべての事例に当たってしまいます。")
                continue
            if folded in seen:
                other = seen[folded]
                fail(name, f"「{word}」が2回入っています。" if other == word else
                     f"「{other}」と「{word}」は検索では同じ語として扱われます（表記のゆれは自動で"
                     f"そろえています）。どちらか1つにしてください。")
                continue
            seen[folded] = word
    count = len(draft.words) + len(draft.narrower)
    if count - sum(1 for w in draft.members() if not w[0]) < 2 and "words" not in errors:
        fail("words", "語を2つ以上入れてください（1つだけでは言い換えになりません）。")
    elif draft.narrower and not [w for w in draft.words if w]:
        fail("words", "広い語（狭い語から見つけたい語）を1つ以上入れてください。"
                      "すべての語が同じ意味なら、「狭い語」ではなく「語」に入れてください。")
    if count > MAX_WORDS:
        fail("words", f"1つのグループの語は{MAX_WORDS}個までです（{count}個あります）。分けてください。")
    if len(draft.note) > MAX_NOTE_LENGTH:
        fail("note", f"メモは{MAX_NOTE_LENGTH}文字以内にしてください（{len(draft.note)}文字）。")
    return errors


def _add_reach(reach: dict[str, set], members) -> None:
    """Add to ``reach`` (folded word → the folded words it finds) what one group's
    ``members`` ((folded, narrower) pairs) give, as kb.vocabulary.Vocabulary does."""
    for folded, narrower in members:
        reach.setdefault(folded, set()).update(
            other for other, other_narrower in members
            if other != folded and (narrower or not other_narrower))


def _too_many(reach: dict[str, set], words) -> list[str]:
    return [f"「{word}」から探す語がほかのグループと合わせて{len(reach[fold(word)])}個になります。"
            f"1つの語から探す語は{MAX_ALTERNATIVES}個までです（多いと検索が遅くなり、ほとんどの事例に"
            f"当たります）。語を減らすか、意味の近いものだけにしてください。"
            for word in words if len(reach.get(fold(word), ())) > MAX_ALTERNATIVES]


def _conflicts(draft: Draft, others: list[dict]) -> dict[str, list[str]]:
    """Messages for a group that contradicts the other groups: a word narrower in one and
    broad in another, or the very same words as another group."""
    errors: dict[str, list[str]] = {}
    direction = {}
    for group in others:
        for member in group["members"]:
            direction.setdefault(fold(member["word"]), (member["narrower"], group))
    for word, narrower in draft.members():
        found = direction.get(fold(word))
        if found and found[0] != narrower:
            other = "・".join(m["word"] for m in found[1]["members"])
            fail = "narrower" if narrower else "words"
            errors.setdefault(fail, []).append(
                f"「{word}」は別のグループ（{other}）では{'広い語' if narrower else '狭い語'}です。"
                f"同じ語を、あるグループでは狭い語、別のグループでは広い語にはできません"
                f"（向きが食い違います）。どちらかにそろえてください。")
    mine = sorted((fold(w), n) for w, n in draft.members())
    for group in others:
        if sorted((fold(m["word"]), bool(m["narrower"])) for m in group["members"]) == mine:
            errors.setdefault("words", []).append(
                f"同じ語のグループがすでにあります（{'・'.join(m['word'] for m in group['members'])}）。")
            break
    reach: dict[str, set] = {}
    for group in others:
        _add_reach(reach, [(fold(m["word"]), bool(m["narrower"])) for m in group["members"]])
    _add_reach(reach, [(fold(w), n) for w, n in draft.members()])
    for name, words in (("words", draft.words), ("narrower", draft.narrower)):
        for message in _too_many(reach, words):
            errors.setdefault(name, []).append(message)
    return errors


# --- reading ----------------------------------------------------------------------

def current_version(db) -> int:
    """The vocabulary's version: the id of its last change, 0 before the first."""
    return db.execute("SELECT coalesce(max(change_id), 0) FROM vocabulary_changes").fetchone()[0]


def _groups(db, where: str = "", params=()) -> list[dict]:
    groups = {row["group_id"]: dict(row, members=[]) for row in db.query(
        f"SELECT * FROM vocabulary_groups {where} ORDER BY group_id", params)}
    if groups:
        marks = ",".join("?" * len(groups))
        for row in db.query(f"SELECT group_id, word, narrower FROM vocabulary_words"
                            f" WHERE group_id IN ({marks}) ORDER BY group_id, position",
                            list(groups)):
            groups[row["group_id"]]["members"].append(
                {"word": row["word"], "narrower": bool(row["narrower"])})
    for group in groups.values():
        group["words"] = [m["word"] for m in group["members"] if not m["narrower"]]
        group["narrower"] = [m["word"] for m in group["members"] if m["narrower"]]
    return list(groups.values())


def list_groups(db, actor, *, q: str = "") -> list[dict]:
    """Every group (reviewers), those holding a word that contains ``q`` (folded) if given,
    in the order they were made."""
    require_role(actor, "reviewer")
    groups = _groups(db)
    needle = fold(q)
    if needle:
        groups = [g for g in groups if needle in " ".join(fold(m["word"]) for m in g["members"])
                  or needle in fold(g["note"])]
    return groups


def get_group(db, actor, group_id: int) -> dict:
    """One group (reviewers); NotFound if there is none."""
    require_role(actor, "reviewer")
    return _group(db, group_id)


def _group(db, group_id) -> dict:
    found = _groups(db, "WHERE group_id = ?", [group_id])
    if not found:
        raise NotFound(f"vocabulary group {group_id}")
    return found[0]


def history(db, actor, *, limit: int = 200) -> list[dict]:
    """The changes, newest first, with the groups before and after (reviewers)."""
    require_role(actor, "reviewer")
    rows = db.query("SELECT * FROM vocabulary_changes ORDER BY change_id DESC LIMIT ?", [limit])
    return [dict(row, before=json.loads(row["before"] or "null"),
                 after=json.loads(row["after"] or "null")) for row in rows]


# --- writing ----------------------------------------------------------------------

def _snapshot(group: dict | Draft) -> dict:
    if isinstance(group, Draft):
        return {"words": [w for w in group.words], "narrower": list(group.narrower),
                "note": group.note}
    return {"words": group["words"], "narrower": group["narrower"], "note": group["note"]}


def _record(db, actor, action: str, group_id, before, after) -> int:
    change_id = db["vocabulary_changes"].insert({
        "changed_at": utcnow(), "user_id": getattr(actor, "user_id", None),
        "actor": getattr(actor, "login", None) or "cli", "action": action, "group_id": group_id,
        "before": json.dumps(before, ensure_ascii=False) if before is not None else "",
        "after": json.dumps(after, ensure_ascii=False) if after is not None else "",
    }).last_pk
    audit.record(db, actor, f"vocabulary_{action}", target=f"vocabulary:{group_id or ''}",
                 detail={"before": before, "after": after, "version": change_id})
    return change_id


def _write_words(db, group_id: int, draft: Draft) -> None:
    db.execute("DELETE FROM vocabulary_words WHERE group_id = ?", [group_id])
    db["vocabulary_words"].insert_all(
        {"group_id": group_id, "position": i, "word": word, "narrower": int(narrower)}
        for i, (word, narrower) in enumerate(draft.members()))


def _insert_group(db, draft: Draft, now: str) -> int:
    group_id = db["vocabulary_groups"].insert(
        {"note": draft.note, "version": 1, "created_at": now, "updated_at": now}).last_pk
    _write_words(db, group_id, draft)
    return group_id


def _validated(db, draft: Draft, *, exclude=None) -> None:
    errors = check_draft(draft)
    if not errors:
        others = [g for g in _groups(db) if g["group_id"] != exclude]
        errors = _conflicts(draft, others)
    if errors:
        raise Invalid(errors)


def create_group(db, actor, draft: Draft) -> int:
    """Add a group (reviewers). Invalid with messages by field; nothing written then."""
    require_role(actor, "reviewer")
    with transaction(db):
        _validated(db, draft)
        group_id = _insert_group(db, draft, utcnow())
        _record(db, actor, "create", group_id, None, _snapshot(draft))
    return group_id


def _check_version(group: dict, version) -> None:
    if str(group["version"]) != str(version or "").strip():
        raise Conflict(f"vocabulary group {group['group_id']} is at version {group['version']}")


def update_group(db, actor, group_id: int, draft: Draft, version) -> None:
    """Change a group (reviewers), naming the ``version`` the form was opened at.

    NotFound, Conflict (saved since ``version``) and Invalid change nothing."""
    require_role(actor, "reviewer")
    with transaction(db):
        group = _group(db, group_id)
        _check_version(group, version)
        _validated(db, draft, exclude=group_id)
        _write_words(db, group_id, draft)
        db["vocabulary_groups"].update(group_id, {"note": draft.note, "updated_at": utcnow(),
                                                  "version": group["version"] + 1})
        _record(db, actor, "update", group_id, _snapshot(group), _snapshot(draft))


def delete_group(db, actor, group_id: int, version) -> None:
    """Delete a group (reviewers); NotFound or Conflict change nothing."""
    require_role(actor, "reviewer")
    with transaction(db):
        group = _group(db, group_id)
        _check_version(group, version)
        db.execute("DELETE FROM vocabulary_words WHERE group_id = ?", [group_id])
        db.execute("DELETE FROM vocabulary_groups WHERE group_id = ?", [group_id])
        _record(db, actor, "delete", group_id, _snapshot(group), None)


# --- CSV --------------------------------------------------------------------------

def export_csv(db, actor) -> bytes:
    """Every group as CSV for Excel (UTF-8 with BOM; formula-looking cells neutralised)."""
    return excel_csv(CSV_HEADER, (("、".join(g["words"]), "、".join(g["narrower"]), g["note"])
                                  for g in list_groups(db, actor)))


def _cell(value: str) -> str:
    # Our own download put a ' before cells a spreadsheet would run as a formula: take it
    # off again, so that a download uploaded unchanged is unchanged.
    if value.startswith("'") and _looks_like_formula(value[1:]):
        return value[1:]
    return value


def read_csv(data: bytes) -> list[tuple[int, Draft]]:
    """(line number, group) for each row of a vocabulary CSV. Invalid, listing every bad
    line with its reason, when the file cannot be read or any row is malformed."""
    header, rows = imports.read_csv_table(data)
    keys = [CSV_HEADERS.get(imports.fold_header(name)) for name in header]
    if "words" not in keys:
        raise Invalid({"1行目": ["見出し行に「語」の列がありません。1行目は列の名前（語、狭い語、メモ）にしてください。"]})
    if len(rows) > MAX_GROUPS:
        raise Invalid({"ファイル": [f"行が多すぎます（{len(rows):,}行）。言い換えのファイルは{MAX_GROUPS:,}行"
                                   f"（グループ）までです。別のファイルを選んでいないか確かめてください。"]})
    drafts, errors, lines = [], {}, {}
    for line_no, row in rows:
        cells = {key: _cell(cell) for key, cell in zip(keys, row) if key}
        draft = Draft(split_words(cells.get("words", "")), split_words(cells.get("narrower", "")),
                      cells.get("note", "").strip())
        problems = check_draft(draft)
        if problems:
            errors[f"{line_no}行目"] = [m for messages in problems.values() for m in messages]
            continue
        key = draft.key()[0]
        if key in lines:
            errors[f"{line_no}行目"] = [f"{lines[key]}行目と同じ語のグループです。"]
            continue
        lines[key] = line_no
        drafts.append((line_no, draft))
    direction: dict[str, tuple[bool, int, str]] = {}
    for line_no, draft in drafts:
        for word, narrower in draft.members():
            seen = direction.setdefault(fold(word), (narrower, line_no, word))
            if seen[0] != narrower:
                errors.setdefault(f"{line_no}行目", []).append(
                    f"「{word}」は{seen[1]}行目では{'広い語' if narrower else '狭い語'}です。同じ語を、"
                    f"あるグループでは狭い語、別のグループでは広い語にはできません（向きが食い違います）。")
    reach: dict[str, set] = {}
    reported = set()
    for line_no, draft in drafts:
        _add_reach(reach, [(fold(w), n) for w, n in draft.members()])
        words = [w for w, _ in draft.members() if fold(w) not in reported]
        for message in _too_many(reach, words):
            errors.setdefault(f"{line_no}行目", []).append(message)
        reported.update(fold(w) for w in words if len(reach[fold(w)]) > MAX_ALTERNATIVES)
    if errors:
        raise Invalid(dict(sorted(errors.items(), key=lambda kv: int(kv[0].rstrip("行目")))))
    return drafts


@dataclass
class UploadPlan:
    """What an upload would do: groups added, changed (old → new), removed, unchanged."""
    version: int
    added: list[Draft] = field(default_factory=list)
    changed: list[tuple[dict, Draft]] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changes(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def _draft_of(group: dict) -> Draft:
    return Draft(group["words"], group["narrower"], group["note"])


def plan_upload(db, actor, data: bytes) -> UploadPlan:
    """Read a CSV and work out what it would change; nothing is written. The file is the
    whole vocabulary: groups it does not hold are removed."""
    require_role(actor, "reviewer")
    drafts = [draft for _, draft in read_csv(data)]
    plan = UploadPlan(current_version(db))
    stored = _groups(db)
    by_key = {}
    for group in stored:
        by_key.setdefault(_draft_of(group).key(), []).append(group)
    new = []
    for draft in drafts:
        same = by_key.get(draft.key())
        if same:
            same.pop()
            plan.unchanged += 1
        else:
            new.append(draft)
    # Folded once: folding every group's words again for each new row made a preview of
    # 10,000 rows take 40 s (and the apply as long, holding the write lock).
    gone = {g["group_id"]: (g, {fold(m["word"]) for m in g["members"]})
            for groups in by_key.values() for g in groups}
    # A new row that shares a word with a group that goes is that group changed.
    for draft in new:
        words = {fold(w) for w, _ in draft.members()}
        best = max(gone.values(), default=None, key=lambda pair: len(words & pair[1]))
        if best is not None and words & best[1]:
            del gone[best[0]["group_id"]]
            plan.changed.append((best[0], draft))
        else:
            plan.added.append(draft)
    plan.removed = sorted((g for g, _ in gone.values()), key=lambda g: g["group_id"])
    return plan


def apply_upload(db, actor, data: bytes, version) -> UploadPlan:
    """Make the vocabulary what the file says, in one transaction. ``version`` is the
    vocabulary version the preview was made at: Conflict (nothing written) once it moved."""
    require_role(actor, "reviewer")
    with transaction(db):
        if str(current_version(db)) != str(version or "").strip():
            raise Conflict(f"the vocabulary is at version {current_version(db)}")
        plan = plan_upload(db, actor, data)
        if not plan.changes:
            return plan
        now = utcnow()
        for group in plan.removed:
            db.execute("DELETE FROM vocabulary_words WHERE group_id = ?", [group["group_id"]])
            db.execute("DELETE FROM vocabulary_groups WHERE group_id = ?", [group["group_id"]])
        for group, draft in plan.changed:
            _write_words(db, group["group_id"], draft)
            db["vocabulary_groups"].update(group["group_id"], {
                "note": draft.note, "updated_at": now, "version": group["version"] + 1})
        for draft in plan.added:
            _insert_group(db, draft, now)
        _record(db, actor, "upload", None,
                {"removed": [_snapshot(g) for g in plan.removed],
                 "changed": [_snapshot(g) for g, _ in plan.changed]},
                {"added": [_snapshot(d) for d in plan.added],
                 "changed": [_snapshot(d) for _, d in plan.changed], "unchanged": plan.unchanged})
    return plan


def load_seed(db, actor, path) -> int:
    """Load the seed list on first run: only while the vocabulary has never been changed,
    so a later ``init`` never overwrites what reviewers did (deleting everything included).
    Returns the number of groups added; Invalid (field "seed", nothing written) when the
    seed file cannot be read."""
    with transaction(db):
        if current_version(db):
            return 0
        drafts = _seed_drafts(path)
        now = utcnow()
        for draft in drafts:
            _insert_group(db, draft, now)
        _record(db, actor, "seed", None, None, {"groups": len(drafts)})
    return len(drafts)


@dataclass
class SeedProposal:
    """A seed group the office's vocabulary does not fully hold: a new group, or the words
    missing from the office's group that holds two or more of its words and is that seed
    group's own (see ``_proposals``). ``problem`` is why it cannot be added as things stand
    (a conflicting direction, too many alternatives …): shown, never offered for adding."""
    key: str
    seed: Draft
    group: dict | None
    draft: Draft  # the new group, or what the office's group would become
    problem: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[tuple[str, bool]]:
        return _missing(self.group, self.seed) if self.group else self.seed.members()


def _seed_key(draft: Draft) -> str:
    return hashlib.sha256(repr(draft.key()).encode()).hexdigest()[:16]


def _missing(group: dict, seed: Draft) -> list[tuple[str, bool]]:
    """The (word, narrower) members of ``seed`` that ``group`` lacks."""
    held = {fold(m["word"]) for m in group["members"]}
    return [(w, n) for w, n in seed.members() if fold(w) not in held]


def _extended(group: dict, seed: Draft) -> Draft:
    """``group`` with the words of ``seed`` it lacks (in the seed's direction)."""
    missing = _missing(group, seed)
    return Draft(group["words"] + [w for w, n in missing if not n],
                 group["narrower"] + [w for w, n in missing if n], group["note"])


def _proposals(stored: list[dict], seeds: list[Draft]) -> list[SeedProposal]:
    """The seed groups ``stored`` lacks, each checked against ``stored`` as it is.

    A seed group is held when one office group has all its words. Otherwise it extends an
    office group only if that group shares two or more of its words *and* is its own — of
    all the seed groups, it shares the most words with this one, and with no other as many
    (the seed's ラベル and 宛名 groups share 宛名シール・宛名ラベル: with the 宛名 group
    deleted, the ラベル group is still the ラベル seed group's, so 宛名 comes back as a
    group of its own instead of joining ラベル; an office group sharing as many words with
    both is neither's). Anything else is proposed as a new group: a word may be in several
    groups (the seed has 送った in both 送付 and 送信)."""
    words_of = [(g, {fold(m["word"]) for m in g["members"]}) for g in stored]
    seed_words = [{fold(w) for w, _ in seed.members()} for seed in seeds]
    owner = {}
    for group, held in words_of:
        shared = [len(held & words) for words in seed_words]
        best = max(shared, default=0)
        if shared.count(best) == 1:  # a tie makes it nobody's: which one is a guess
            owner[group["group_id"]] = shared.index(best)
    proposals = []
    for index, (seed, words) in enumerate(zip(seeds, seed_words)):
        if any(words <= held for _, held in words_of):
            continue
        homes = [(g, held) for g, held in words_of
                 if len(words & held) >= 2 and owner.get(g["group_id"]) == index]
        if homes:
            group, _ = max(homes, key=lambda pair: len(words & pair[1]))
            proposal = SeedProposal(_seed_key(seed), seed, group, _extended(group, seed))
        else:
            proposal = SeedProposal(_seed_key(seed), seed, None, seed)
        exclude = proposal.group["group_id"] if proposal.group else None
        errors = check_draft(proposal.draft) or _conflicts(
            proposal.draft, [g for g in stored if g["group_id"] != exclude])
        proposal.problem = [m for messages in errors.values() for m in messages]
        proposals.append(proposal)
    return proposals


def _seed_drafts(path) -> list[Draft]:
    """The seed list's groups; Invalid (field "seed") when the file cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise Invalid({"seed": [f"標準の言い換えのファイル（{Path(path).name}）を読めません"
                                f"（{error.strerror or error}）。システムの管理者に連絡してください。"]})
    try:
        return [draft for _, draft in read_csv(data)]
    except Invalid as error:
        lines = [f"{where}：{m}" for where, messages in error.errors.items() for m in messages]
        raise Invalid({"seed": [f"標準の言い換えのファイル（{Path(path).name}）に誤りがあります。"
                                "システムの管理者に連絡してください。"] + lines[:5]})


_proposal_cache: dict[tuple, list[SeedProposal]] = {}
_proposal_lock = threading.Lock()


def _cached_proposals(db, path) -> list[SeedProposal]:
    """``_proposals`` for the vocabulary's version and the seed file as it is now: the
    言い換え list asks on every view, and working them out takes a quarter of a second at
    2,000 groups."""
    try:
        stat = Path(path).stat()
        database = db.execute("PRAGMA database_list").fetchone()[2]  # which installation
        last = db.execute("SELECT change_id, changed_at FROM vocabulary_changes"
                          " ORDER BY change_id DESC LIMIT 1").fetchone()
        key = (database, str(path), stat.st_mtime_ns, stat.st_size, tuple(last or ()))
    except OSError:
        key = None
    with _proposal_lock:
        if key is not None and key in _proposal_cache:
            return _proposal_cache[key]
    proposals = _proposals(_groups(db), _seed_drafts(path))
    if key is not None:
        with _proposal_lock:
            _proposal_cache.clear()
            _proposal_cache[key] = proposals
    return proposals


def seed_proposals(db, actor, path) -> list[SeedProposal]:
    """What the shipped seed list holds that this vocabulary does not (reviewers): for an
    installation set up before the seed grew, or one whose reviewers removed words. Nothing
    is written; ``add_from_seed`` takes the ones a reviewer chooses. Invalid (field "seed")
    when the seed file cannot be read."""
    require_role(actor, "reviewer")
    return _cached_proposals(db, path)


def count_seed_proposals(db, path) -> int:
    """How many seed proposals could be added now — a number only, for ``init`` and the
    list's notice. Invalid (field "seed") when the seed file cannot be read."""
    return sum(1 for p in _cached_proposals(db, path) if not p.problem)


def _shown(draft: Draft) -> str:
    return "・".join(w for w, _ in draft.members())


SEED_CHANGED = ("選んだもののうち、いまの標準の言い換えとの差にないものがあります（標準の言い換えのファイルか"
                "言い換えが更新されました）。何も取り込んでいません。一覧を確かめてから、もう一度選んでください。")


def add_from_seed(db, actor, path, keys, version) -> list[SeedProposal]:
    """Add the chosen seed proposals (``keys``) in one transaction (reviewers).

    ``version`` is the vocabulary version the list was shown at: Conflict once it moved.
    Each proposal is checked like a typed group against the vocabulary as the ones before
    it left it (two that extend one group both land); Invalid (by seed group) writes
    nothing — also for a key that is not a proposal now. Returns what was added."""
    require_role(actor, "reviewer")
    keys = set(keys)
    with transaction(db):
        if str(current_version(db)) != str(version or "").strip():
            raise Conflict(f"the vocabulary is at version {current_version(db)}")
        if not keys:
            raise Invalid({"seed": ["取り込む言い換えを1つ以上選んでください。"]})
        proposals = _proposals(_groups(db), _seed_drafts(path))
        chosen = [p for p in proposals if p.key in keys]
        if len(chosen) < len(keys):
            raise Invalid({"seed": [SEED_CHANGED]})
        errors: dict[str, list[str]] = {}
        now = utcnow()
        for proposal in chosen:
            if proposal.group is None:
                draft, before, group_id = proposal.draft, None, None
            else:  # as the proposals before this one left it
                before = _group(db, proposal.group["group_id"])
                draft, group_id = _extended(before, proposal.seed), before["group_id"]
            try:
                _validated(db, draft, exclude=group_id)
            except Invalid as error:
                errors[_shown(proposal.seed)] = [m for ms in error.errors.values() for m in ms]
                continue
            # Recorded as the reviewer's own 追加 or 編集, each marked as from the seed list.
            after = dict(_snapshot(draft), source="seed")
            if before is None:
                _record(db, actor, "create", _insert_group(db, draft, now), None, after)
            else:
                _write_words(db, group_id, draft)
                db["vocabulary_groups"].update(group_id, {
                    "updated_at": now, "version": before["version"] + 1})
                _record(db, actor, "update", group_id, _snapshot(before), after)
        if errors:
            raise Invalid(errors)  # the transaction rolls back what was written before
    return chosen


# --- what searches use --------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """A vocabulary word as a query may hold it, and what it also finds."""
    folded: str
    alternatives: tuple[tuple[str, str], ...]  # (the word as written, folded)


class Vocabulary:
    """The vocabulary compiled for queries: looked up many times, built once per version."""

    def __init__(self, version: int, groups: list[dict]):
        self.version = version
        narrower: dict[str, bool] = {}
        found: dict[str, dict[str, str]] = {}
        for group in groups:
            members = [(fold(m["word"]), m["word"], m["narrower"]) for m in group["members"]]
            for folded, _, is_narrower in members:
                narrower[folded] = is_narrower
            for folded, _, is_narrower in members:
                targets = found.setdefault(folded, {})
                for other, written, other_narrower in members:
                    # A narrower word finds every word of its group; a broad one only the
                    # other broad ones.
                    if other != folded and (is_narrower or not other_narrower):
                        targets.setdefault(other, written)
        self.entries = {folded: Entry(folded, tuple((w, f) for f, w in targets.items()))
                        for folded, targets in found.items() if targets}
        self._by_first: dict[str, list[str]] = {}
        for folded in sorted(self.entries, key=len, reverse=True):
            self._by_first.setdefault(folded[0], []).append(folded)
        # Inflected words by their stem (「捨てた」 → 捨), so that a query's other form of
        # the verb (「捨ててしまった」「捨てる」) finds what the vocabulary gives for it.
        stems: dict[str, dict[str, str]] = {}
        for group in groups:
            for member in group["members"]:
                folded = fold(member["word"])
                root = ranking.stem(member["word"])
                if folded in self.entries and root and root != folded:
                    merged = stems.setdefault(root, {})
                    for written, other in self.entries[folded].alternatives:
                        if other != root:
                            merged.setdefault(other, written)
        self._stems = {root: Entry(root, tuple((w, f) for f, w in targets.items()))
                       for root, targets in stems.items() if targets}

    def __len__(self) -> int:
        return len(self.entries)

    def stem_entry(self, stem: str) -> "Entry | None":
        """What a query word whose stem (kb.ranking.stem) is ``stem`` also finds: the
        vocabulary word that is that stem, else the inflected words that have it."""
        return self.entries.get(stem) or self._stems.get(stem)

    def find(self, chars: list[tuple[str, int, int]]) -> list[tuple[int, int, Entry]]:
        """The vocabulary words in a normalised query (``analysis.normalize``), as
        (start, end, entry) over ``chars``: longest first, never overlapping, and never
        cutting a word of the query apart — not inside an ASCII word, nor between two
        kanji or two katakana (「誤」 is not found in 「誤交付」, 「マイナ」 not in 「マイナス」)."""
        text = "".join(c[0] for c in chars)
        candidates = []
        for i, char in enumerate(text):
            for folded in self._by_first.get(char, ()):
                end = i + len(folded)
                if text.startswith(folded, i) and _clean_cut(text, i) and _clean_cut(text, end):
                    candidates.append((-len(folded), i, end, folded))
        taken, found = [False] * len(text), []
        for _, start, end, folded in sorted(candidates):
            if not any(taken[start:end]):
                taken[start:end] = [True] * (end - start)
                found.append((start, end, self.entries[folded]))
        return sorted(found, key=lambda match: match[0])


def _kind(char: str) -> str:
    if char.isascii() and char.isalnum():
        return "ascii"
    if analysis._is_katakana(char):
        return "katakana"
    if "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf" or char in "々〆ヶ":
        return "kanji"
    return "other"


def _clean_cut(text: str, at: int) -> bool:
    """Whether a word may begin or end at ``at`` without cutting a word of ``text``."""
    if at <= 0 or at >= len(text):
        return True
    before, after = _kind(text[at - 1]), _kind(text[at])
    return not (before == after and before in ("ascii", "kanji", "katakana"))


_compiled: dict[str, Vocabulary] = {}
_compiled_lock = threading.Lock()


def current(db) -> Vocabulary:
    """The vocabulary searches use now, compiled once per database and version: a change
    is in effect at the next search, and a search costs one small query to learn the version."""
    version = current_version(db)
    key = db.execute("PRAGMA database_list").fetchone()[2]
    with _compiled_lock:
        compiled = _compiled.get(key)
    if compiled is None or compiled.version != version:
        compiled = Vocabulary(version, _groups(db))
        with _compiled_lock:
            _compiled[key] = compiled
    return compiled
