"""Files kept between an upload's preview and its 取り込み/反映, in DATA_DIR/uploads.

Each is named from a random token (32 hex characters) the preview page carries; any other
token is 400. Files nobody applied are removed after a day, whenever one is looked up.
"""

import re
import time
from pathlib import Path

from flask import abort, current_app

UPLOAD_DIR = "uploads"
UPLOAD_LIFETIME = 24 * 3600


def held(token: str, name: str) -> Path:
    """The path of the upload ``token`` under ``name`` (a pattern such as "{}.upload",
    the token taking the braces), after removing that kind's files older than a day."""
    if not re.fullmatch(r"[0-9a-f]{32}", token or ""):
        abort(400)
    folder = Path(current_app.config["DATA_DIR"]) / UPLOAD_DIR
    folder.mkdir(exist_ok=True)
    for old in folder.glob(name.format("*")):  # previews nobody applied
        if time.time() - old.stat().st_mtime > UPLOAD_LIFETIME:
            old.unlink(missing_ok=True)
    return folder / name.format(token)
