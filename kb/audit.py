"""The audit log: an append-only record of who did what to which record, and when.

The table refuses UPDATE and DELETE (triggers in the initial migration), so the log
cannot be edited through the app or by a slip in later code.
"""

import json

from kb.db import utcnow
from kb.roles import require_role


def record(db, actor, action: str, *, case_id=None, target=None, detail=None) -> None:
    """Append one entry. ``actor`` is a User, or None for the command line."""
    db["audit_log"].insert({
        "at": utcnow(),
        "user_id": getattr(actor, "user_id", None),
        "actor": getattr(actor, "login", None) or "cli",
        "action": action,
        "case_id": case_id,
        "target": target,
        "detail": json.dumps(detail or {}, ensure_ascii=False, sort_keys=True),
    })


def list_entries(db, actor, *, limit=200) -> list[dict]:
    """The newest entries first. Admins only."""
    require_role(actor, "admin")
    return list(db.query("SELECT * FROM audit_log ORDER BY audit_id DESC LIMIT ?", [limit]))
