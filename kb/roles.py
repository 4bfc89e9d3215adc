"""Roles and the one check every core function uses before acting (DESIGN §1)."""

from kb.exceptions import Forbidden

ROLES = ("staff", "manager", "reviewer", "trainer", "admin")
ROLE_LABELS = {
    "staff": "職員",
    "manager": "所属長",
    "reviewer": "情報管理担当",
    "trainer": "研修担当",
    "admin": "管理者",
}


def require_role(actor, *roles: str) -> None:
    """Raise Forbidden unless ``actor`` (a User, or None) holds one of ``roles``."""
    if actor is None or not actor.has_role(*roles):
        raise Forbidden(f"requires one of the roles {', '.join(roles)}")


def require_account(actor) -> None:
    """Raise Forbidden unless ``actor`` is a signed-in, active account, whatever its roles.

    What every member of staff may do (search, file a report) needs no role: reviewer,
    trainer, admin and manager add powers and take none away (DESIGN §1). The command
    line's users (no user_id) are not accounts.
    """
    if actor is None or getattr(actor, "user_id", None) is None \
            or not getattr(actor, "is_active", False):
        raise Forbidden("requires a signed-in, active account")
