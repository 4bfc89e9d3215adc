#!/usr/bin/env python
"""Mail speed: queue N mails (default 3,500, a campaign's invitations) in one transaction,
then send them through the real sender to a real SMTP server on loopback (aiosmtpd, from
the test extra), and print the numbers: queueing time, mails/s sent, and how long one run
takes to postpone them all while the server is down.

Every send commits its outcome before the next (the at-most-once contract of kb/mail.py)
with SQLite's synchronous=FULL, so the disk's fsync bounds the rate as much as SMTP does.

    .venv/bin/python scripts/bench_mail.py [--mails 3500]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb import config, mail  # noqa: E402
from kb.db import open_db, transaction  # noqa: E402
from kb.migrations import migrate  # noqa: E402
from tests.smtp_server import free_port  # noqa: E402


def queue_all(db, count: int, settings) -> float:
    started = time.perf_counter()
    with transaction(db):
        for n in range(count):
            mail.queue_mail(db, kind="invite", dedupe_key=f"invite:bench:{n}", template="test",
                            to_address=f"staff{n:05}@ward.example.jp",
                            context={"name": f"職員 {n:05}"}, settings=settings)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=3500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = open_db(Path(folder) / "kb.sqlite3")
        migrate(db)
        # The server runs in a process of its own, as the office's would: in this one it
        # would share the interpreter lock with the sender and halve the rate.
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "tests.smtp_server", str(port)],
                                  cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        assert server.stdout.readline().strip() == "ready"
        settings = {**config.defaults(), "SMTP_HOST": "127.0.0.1", "SMTP_PORT": port,
                    "SMTP_TIMEOUT": 10, "PUBLIC_URL": "https://kb.ward.example.jp",
                    "MAIL_FROM": "情報管理担当 <kb@ward.example.jp>"}

        queued = queue_all(db, args.mails, settings)
        started = time.perf_counter()
        report = mail.send_due(db, settings, limit=args.mails)
        sending = time.perf_counter() - started
        received, _ = server.communicate("")
        assert len(report["sent"]) == args.mails == int(received), "not every mail arrived"

        # The server down: one run postpones every due mail (one claim, one commit).
        with transaction(db):
            db.execute("DELETE FROM outbox")
        queue_all(db, args.mails, settings)
        down = {**settings, "SMTP_PORT": free_port()}
        started = time.perf_counter()
        postponed = mail.send_due(db, down, limit=args.mails)
        postponing = time.perf_counter() - started
        assert len(postponed["retrying"]) == args.mails
        db.close()

    print(json.dumps({
        "mails": args.mails,
        "queue_seconds": round(queued, 2),
        "queue_ms_per_mail": round(queued / args.mails * 1000, 3),
        "send_seconds": round(sending, 2),
        "mails_per_second": round(args.mails / sending, 1),
        "server_down_postpone_seconds": round(postponing, 2),
    }, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
