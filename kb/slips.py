"""Sign-in slips: one-time codes on paper for staff without a PC of their own.

An admin, or the 所属長 (manager) of a 課 for their own 課, prints an A4 sheet of slips for
the 課: one per active person, with the login id, a one-time code, the URL (also as a QR
code) and the expiry date. The code lets its person choose a password once (``use_code``).

Codes are random (``secrets``), 12 characters from an alphabet without look-alikes
(about 59 bits), so a sha256 of the code is a safe thing to keep: the plain code exists
only in the printed sheet's response. A code is single-use, expires at the end of the
SLIP_VALID_DAYS-th day (Japan time) after printing, and is voided when a newer slip is
printed for the same person. Printing, voiding, using and every failed use are written to
the audit log — never the code itself.

This module is the only one that imports segno (the QR codes).
"""

import hashlib
import hmac
import secrets
import unicodedata
from datetime import datetime, time, timedelta, timezone
from urllib.parse import urlencode

import segno

from kb import audit, users
from kb.db import transaction
from kb.exceptions import Forbidden, Invalid, NotFound
from kb.roles import require_role

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off paper by eye
CODE_LENGTH = 12
JST = timezone(timedelta(hours=9))
SCOPES = {"no_password": "パスワードをまだ設定していない人", "all": "全員（設定済みの人はパスワードが置き換わります）"}
# Accounts holding these roles get their slips from an admin only: a 所属長 who could print
# one could also use it, and take over powers they do not have (or a fellow 所属長's).
ADMIN_ONLY_ROLES = frozenset({"admin", "reviewer", "trainer", "manager"})

REFUSED = "ログインIDまたはコードが正しくありません。用紙に書かれたとおりに入力してください。"
USED = ("このコードは使用済みです。パスワードを忘れたときは、所属長か管理者に新しい用紙を"
        "印刷してもらってください。")
VOIDED = ("このコードは、新しい用紙が印刷されたか、アカウントがいったん無効になったため使えなく"
          "なりました。新しい用紙のコードを入力してください。")
EXPIRED = ("このコードは有効期限（{date}）を過ぎています。所属長か管理者に新しい用紙を"
           "印刷してもらってください。")


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def normalize_code(text: str) -> str:
    """A code as typed (full-width, lower case, spaces and hyphens) → its canonical form."""
    folded = unicodedata.normalize("NFKC", text or "").upper()
    return "".join(char for char in folded if char.isalnum())


def _hash(code: str) -> str:
    return hashlib.sha256(normalize_code(code).encode("ascii", "replace")).hexdigest()


def new_code() -> str:
    """A fresh code, grouped for reading: "ABCD-EFGH-JKMN"."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, CODE_LENGTH, 4))


def expiry(now: datetime, valid_days: int) -> datetime:
    """The end (23:59:59 Japan time) of the ``valid_days``-th day after ``now``."""
    last_day = now.astimezone(JST).date() + timedelta(days=valid_days)
    return datetime.combine(last_day, time(23, 59, 59), tzinfo=JST)


def qr_svg(url: str) -> str:
    """The QR code of ``url`` as an inline SVG element. segno writes presentation
    attributes (stroke, transform) and no style attribute, so the strict CSP holds."""
    return segno.make(url, error="m").svg_inline(
        scale=3, border=2, svgclass="slip-qr", lineclass="slip-qr-line", omitsize=True,
        title="ログイン用紙のページ（QRコード）")


# --- who prints for whom ---------------------------------------------------------------

def printable_departments(db, actor) -> list[dict]:
    """The departments ``actor`` may print slips for: every one for an admin, their own
    for a manager. Forbidden for anyone else."""
    require_role(actor, "admin", "manager")
    departments = users.list_departments(db)
    if actor.has_role("admin"):
        return departments
    return [row for row in departments if row["department_id"] == actor.department_id]


def _department(db, actor, department_id) -> dict:
    """The department once ``actor`` may print for it: Forbidden for other roles and for a
    manager of another 課, NotFound for an unknown one."""
    require_role(actor, "admin", "manager")
    try:
        department_id = int(department_id)
    except (TypeError, ValueError):
        raise NotFound(f"department {department_id!r}") from None
    found = [row for row in users.list_departments(db) if row["department_id"] == department_id]
    if not found:
        raise NotFound(f"department {department_id}")
    if not actor.has_role("admin") and actor.department_id != department_id:
        raise Forbidden(f"user {actor.user_id} prints slips for their own department only")
    return found[0]


def department_people(db, actor, department_id, *, now: datetime | None = None) -> dict:
    """The department and its active people, for the page that prints slips: each with
    ``has_password``, ``open_slip_expires`` (an unused, valid slip's expiry, or None) and
    ``excluded`` (why ``actor`` gets no slip for them, or '')."""
    department = _department(db, actor, department_id)
    moment = _iso(_now(now))
    rows = db.execute_returning_dicts(
        "SELECT u.user_id, u.login, u.display_name, u.password_hash != '' AS has_password,"
        " (SELECT group_concat(role) FROM user_roles r WHERE r.user_id = u.user_id) AS role_list,"
        " (SELECT max(expires_at) FROM sign_in_slips s WHERE s.user_id = u.user_id"
        "   AND s.used_at IS NULL AND s.voided_at IS NULL AND s.expires_at > ?) AS open_slip_expires"
        " FROM users u WHERE u.department_id = ? AND u.active = 1"
        " ORDER BY u.name_kana = '', u.name_kana, u.display_name, u.login",
        [moment, department["department_id"]])
    people = []
    for row in rows:
        roles = frozenset((row.pop("role_list") or "").split(",")) - {""}
        excluded = ""
        if row["user_id"] == actor.user_id:
            excluded = "ご自身（パスワード変更の画面を使ってください）"
        elif not actor.has_role("admin") and roles & ADMIN_ONLY_ROLES:
            excluded = "所属長・管理者・情報管理担当・研修担当の役割があるため、管理者が印刷します"
        people.append(dict(row, has_password=bool(row["has_password"]), roles=roles,
                           excluded=excluded))
    return {"department": department, "people": people}


# --- printing -----------------------------------------------------------------------------

def print_slips(db, actor, department_id, *, base_url: str, scope: str = "no_password",
                valid_days: int = 14, now: datetime | None = None) -> dict:
    """Make a new slip for each person of the department ``actor`` may print for (see
    ``department_people``; ``scope`` "no_password" leaves out those who have a password),
    voiding each one's older unused slips, in one transaction.

    Returns {"department", "slips": [{"name", "login", "department_label", "code",
    "url", "qr_svg", "expires_on"}], "voided", "expires_on"}: the only place the plain
    codes ever exist. Audited as "slip_print" (and "slip_void" when older codes were
    voided) with the logins, never the codes. Raises Invalid for an unknown scope,
    Forbidden / NotFound as ``department_people``.
    """
    if scope not in SCOPES:
        raise Invalid({"scope": ["印刷する対象を選んでください。"]})
    moment = _now(now)
    expires = expiry(moment, valid_days)
    slips, voided_logins = [], []
    with transaction(db):
        # Chosen inside the write transaction: nobody is deactivated between list and codes.
        listing = department_people(db, actor, department_id, now=moment)
        department = listing["department"]
        people = [person for person in listing["people"] if not person["excluded"]
                  and (scope == "all" or not person["has_password"])]
        for person in people:
            voided = db.execute(
                "UPDATE sign_in_slips SET voided_at = ? WHERE user_id = ?"
                " AND used_at IS NULL AND voided_at IS NULL", [_iso(moment), person["user_id"]])
            if voided.rowcount:
                voided_logins.append(person["login"])
            code = new_code()
            db["sign_in_slips"].insert({
                "user_id": person["user_id"], "code_hash": _hash(code),
                "department_id": department["department_id"],
                "printed_by": getattr(actor, "user_id", None), "created_at": _iso(moment),
                "expires_at": _iso(expires)})
            url = f"{base_url}?{urlencode({'login': person['login']})}"
            slips.append({"name": person["display_name"], "login": person["login"],
                          "department_label": department["label"], "code": code, "url": url,
                          "expires_on": expires.date().isoformat()})
        if voided_logins:
            audit.record(db, actor, "slip_void", target=department["code"], detail={
                "count": len(voided_logins), "logins": voided_logins, "reason": "reprint"})
        audit.record(db, actor, "slip_print", target=department["code"], detail={
            "count": len(slips), "logins": [slip["login"] for slip in slips], "scope": scope,
            "expires_on": expires.date().isoformat()})
    for slip in slips:  # after the commit: drawing QR codes (~9 ms each) holds no write lock
        slip["qr_svg"] = qr_svg(slip["url"])
    return {"department": department, "slips": slips, "voided": len(voided_logins),
            "expires_on": expires.date().isoformat()}


# --- using a code ------------------------------------------------------------------------

def _refuse(db, login: str, reason: str, message: str):
    with transaction(db):
        audit.record(db, None, "slip_use_failed", target=(login or "")[:users.MAX_NAME_LENGTH],
                     detail={"reason": reason})
    raise Invalid({"code": [message]})


def _slip_for(db, login: str, code: str, moment: datetime) -> tuple[dict, dict]:
    """The (account row, slip row) the login and code name, or Invalid with the message
    for the code field after auditing the failure. Only someone holding the right code
    learns that it is used, voided or expired."""
    login = (login or "").strip()
    errors = {}
    if not login:
        errors["login"] = ["ログインIDを入力してください。"]
    if not normalize_code(code):
        errors["code"] = ["用紙に書かれたコードを入力してください。"]
    if errors:
        raise Invalid(errors)
    account = db.execute_returning_dicts(
        "SELECT user_id, login, active FROM users WHERE login = ?", [login])
    if not account:
        _refuse(db, login, "unknown_login", REFUSED)
    digest = _hash(code)
    slip = next((row for row in db.execute_returning_dicts(
        "SELECT * FROM sign_in_slips WHERE user_id = ? ORDER BY slip_id DESC",
        [account[0]["user_id"]]) if hmac.compare_digest(row["code_hash"], digest)), None)
    if slip is None:
        _refuse(db, login, "wrong_code", REFUSED)
    if not account[0]["active"]:
        _refuse(db, login, "inactive", REFUSED)
    if slip["used_at"]:
        _refuse(db, login, "used", USED)
    if slip["voided_at"]:
        _refuse(db, login, "voided", VOIDED)
    if slip["expires_at"] <= _iso(moment):
        shown = datetime.fromisoformat(slip["expires_at"]).astimezone(JST)
        _refuse(db, login, "expired",
                EXPIRED.format(date=f"{shown.year}年{shown.month}月{shown.day}日"))
    if not _printer_may_still_print(db, slip, account[0]["user_id"]):
        _refuse(db, login, "printer_not_allowed", VOIDED)
    return account[0], slip


def _printer_may_still_print(db, slip: dict, user_id: int) -> bool:
    """Whether whoever printed the slip could print it for the person today: a 所属長's
    slip is void once its person holds an admin-only role or has moved to another 課 (it
    was printed for someone with fewer powers, in the printer's 課) — or once the printer
    is no longer an active 所属長 there. An admin's slip stays good."""
    if slip["printed_by"] is None:  # printed by the system (the command line)
        return True
    printer = db.execute_returning_dicts(
        "SELECT u.active, u.department_id, (SELECT group_concat(role) FROM user_roles r"
        " WHERE r.user_id = u.user_id) AS role_list FROM users u WHERE u.user_id = ?",
        [slip["printed_by"]])
    if not printer or not printer[0]["active"]:
        return False
    printer_roles = set((printer[0]["role_list"] or "").split(","))
    if "admin" in printer_roles:
        return True
    person = db.execute_returning_dicts(
        "SELECT u.department_id, (SELECT group_concat(role) FROM user_roles r"
        " WHERE r.user_id = u.user_id) AS role_list FROM users u WHERE u.user_id = ?", [user_id])[0]
    return ("manager" in printer_roles
            and printer[0]["department_id"] == slip["department_id"] == person["department_id"]
            and not set((person["role_list"] or "").split(",")) & ADMIN_ONLY_ROLES)


def check_code(db, login: str, code: str, *, now: datetime | None = None) -> users.User:
    """The person a valid, unused slip code belongs to (the first step of /slip).

    Raises Invalid with the message for "login" or "code"; a wrong, used, voided or
    expired code, an unknown login and a deactivated account are audited as
    "slip_use_failed" (with the login typed and the reason, never the code).
    """
    account, _ = _slip_for(db, login, code, _now(now))
    return users.get_user(db, account["user_id"])


def use_code(db, login: str, code: str, *, password: str, confirm: str,
             now: datetime | None = None) -> users.User:
    """Choose a password with a slip code: check the code as ``check_code`` does, then the
    password (users.check_new_password), then, in one transaction, mark the slip used,
    store the password, end the person's other sessions and audit "slip_use".

    Returns the person (with their new session generation) for signing in. Raises
    Invalid with messages by field ("login", "code", "password", "password_confirm")
    and writes nothing but the audit of a failed code.
    """
    moment = _now(now)
    account, slip = _slip_for(db, login, code, moment)
    errors = users.check_new_password(account["login"], password, confirm)
    if errors:
        raise Invalid(errors)
    with transaction(db):
        # Only one of two simultaneous uses of the same code can flip it.
        taken = db.execute("UPDATE sign_in_slips SET used_at = ? WHERE slip_id = ?"
                           " AND used_at IS NULL AND voided_at IS NULL",
                           [_iso(moment), slip["slip_id"]])
        if taken.rowcount != 1:
            raise Invalid({"code": [USED]})
        users.store_password(db, account["user_id"], password)
        person = users.get_user(db, account["user_id"])
        audit.record(db, person, "slip_use", target=account["login"],
                     detail={"slip_id": slip["slip_id"]})
    return users.get_user(db, account["user_id"])
