"""Errors raised by the core, named after what went wrong.

Views turn them into responses: NotFound → 404, Forbidden → 403, Invalid → the form
again with each message next to its field.
"""


class KBError(Exception):
    """Base of the errors the core raises on purpose."""


class NotFound(KBError):
    """The record does not exist, or the user may not know that it exists."""


class Forbidden(KBError):
    """The user is known but their roles do not allow the action."""


class Invalid(KBError):
    """Input was rejected. ``errors`` maps a field name to Japanese messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items()))
        self.errors = errors


class Conflict(KBError):
    """Someone saved the record since this edit began; saving would overwrite their work."""


class PersonalDataFound(KBError):
    """Text fields hold what looks like personal data. ``findings`` maps field → findings."""

    def __init__(self, findings: dict):
        super().__init__(", ".join(findings))
        self.findings = findings


class PersonalDataInExport(PersonalDataFound):
    """Cases to be exported hold what looks like personal data (kb/sharing.py).
    ``findings`` is a list of dicts: case, field, the text found and an excerpt."""

    def __init__(self, findings: list[dict]):
        KBError.__init__(self, f"{len(findings)} personal-data findings in the export")
        self.findings = findings
