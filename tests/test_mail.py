"""Mail through a real SMTP server on loopback (aiosmtpd): the outbox, the sender, its
retries, the scheduler, the send-mail command and the outbox page."""

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from kb import mail, scheduler
from kb.db import database_path, open_db, transaction
from kb.exceptions import Invalid
from tests.conftest import csrf_token
from tests.smtp_server import SmtpServer, free_port

BASE_URL = "https://kb.ward.example.jp/kb"
NOW = datetime(2025, 12, 1, 0, 0, tzinfo=timezone.utc)
SUBJECT = "【ヒヤリ・ハット事例ナレッジベース】テストメール"


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def db(app):
    """A connection of the test's own. Not the shared fixture's: that one holds an app
    context open, which the test client's requests would then share (and with it ``g``,
    where flask-login and Flask-WTF keep the signed-in user and the CSRF token)."""
    own = open_db(database_path(app.config["DATA_DIR"]))
    yield own
    own.close()


@pytest.fixture
def mail_app(app, smtp):
    """The app pointed at the loopback SMTP server."""
    app.config.update(SMTP_HOST=smtp.host, SMTP_PORT=smtp.port, SMTP_TIMEOUT=5,
                      PUBLIC_URL=BASE_URL, MAIL_FROM="情報管理担当 <kb@ward.example.jp>")
    return app


def queue(db, address, key=None, **options):
    with transaction(db):
        return mail.queue_mail(db, kind=options.pop("kind", "test"),
                               dedupe_key=key or f"test:{address}", template="test",
                               to_address=address, now=options.pop("now", NOW),
                               settings={"PUBLIC_URL": BASE_URL}, **options)


def statuses(db):
    return {row["to_address"]: row for row in db.query("SELECT * FROM outbox")}


def set_email(db, user, address):
    with transaction(db):
        db.execute("UPDATE users SET email = ? WHERE user_id = ?", [address, user.user_id])


# --- queueing ---------------------------------------------------------------------------------

def test_a_mail_reaches_its_recipient_with_japanese_subject_body_and_sender(mail_app, db, smtp,
                                                                               make_user):
    taro = make_user("taro", "staff")
    set_email(db, taro, "taro@ward.example.jp")
    with transaction(db):
        mail_id = mail.queue_mail(db, kind="test", dedupe_key="test:taro", template="test",
                                  to_user_id=taro.user_id, settings=mail_app.config)

    report = mail.send_due(db, mail_app.config)

    assert [entry["mail_id"] for entry in report["sent"]] == [mail_id]
    [received] = smtp.received
    assert received.rcpt_tos == ["taro@ward.example.jp"]
    assert received.mail_from == "kb@ward.example.jp"
    # The wire is ASCII: the Japanese headers travel RFC 2047-encoded, the body as UTF-8.
    assert received.content.isascii()
    assert b"=?utf-8?" in received.content.split(b"\r\n\r\n")[0]
    message = received.message
    assert message["Subject"] == SUBJECT
    assert message["From"].addresses[0].display_name == "情報管理担当"
    assert message["From"].addresses[0].addr_spec == "kb@ward.example.jp"
    assert message["To"].addresses[0].display_name == "taro さん"
    assert message["Message-ID"].endswith("@ward.example.jp>")
    assert message["Date"] and message["Auto-Submitted"] == "auto-generated"
    body = message.get_body(("plain",))
    assert body.get_content_charset() == "utf-8"
    text = body.get_content()
    assert "taro さん 様" in text and "テストメールです" in text
    assert f"{BASE_URL}/" in text.splitlines()
    row = statuses(db)["taro@ward.example.jp"]
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, "")


def test_links_in_mail_are_built_on_the_base_url_without_a_request():
    subject, body = mail.render_mail("test", {"name": "山田 花子"}, base_url="https://kb.example/")
    assert subject == SUBJECT
    assert body.startswith("山田 花子 様\n")
    assert "https://kb.example/\n" in body
    assert mail.link("https://kb.example/kb/", "/selfcheck/3", token="a b") \
        == "https://kb.example/kb/selfcheck/3?token=a+b"
    with pytest.raises(ValueError):
        mail.link("https://kb.example", "https://elsewhere.example/")


def test_queueing_outside_a_transaction_is_refused(db):
    with pytest.raises(RuntimeError, match="transaction"):
        mail.queue_mail(db, kind="test", dedupe_key="k", template="test", to_address="a@b.jp")
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0


def test_the_dedupe_key_prevents_a_second_row(db):
    first = queue(db, "hanako@ward.example.jp", key="invite:1:7")
    again = queue(db, "hanako@ward.example.jp", key="invite:1:7")
    assert isinstance(first, int) and again is None
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


def test_a_mail_queued_by_an_event_that_rolls_back_is_not_kept(db):
    with pytest.raises(ZeroDivisionError):
        with transaction(db):
            mail.queue_mail(db, kind="test", dedupe_key="k", template="test",
                            to_address="a@ward.example.jp")
            1 / 0
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0


def test_a_person_without_an_address_is_refused_with_a_message(db, make_user):
    jiro = make_user("jiro", "staff")
    with pytest.raises(Invalid) as refused:
        with transaction(db):
            mail.queue_mail(db, kind="test", dedupe_key="k", template="test",
                            to_user_id=jiro.user_id)
    assert "メールアドレスが登録されていない" in refused.value.errors["to_address"][0]


# --- sending once -----------------------------------------------------------------------------

def test_running_the_sender_again_sends_nothing_twice(mail_app, db, smtp):
    for number in range(3):
        queue(db, f"person{number}@ward.example.jp")
    assert len(mail.send_due(db, mail_app.config)["sent"]) == 3
    assert mail.send_due(db, mail_app.config)["sent"] == []
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == [
        f"person{number}@ward.example.jp" for number in range(3)]


def test_two_senders_at_the_same_time_send_each_mail_once(mail_app, db, smtp):
    addresses = [f"p{number:03}@ward.example.jp" for number in range(120)]
    for address in addresses:
        queue(db, address)
    path = database_path(mail_app.config["DATA_DIR"])
    reports, start = [], threading.Barrier(2)

    def sender():
        own = open_db(path)  # a separate connection, as a second process would have
        start.wait()
        reports.append(mail.send_due(own, mail_app.config))
        own.close()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(r.rcpt_tos[0] for r in smtp.received) == addresses
    assert sum(len(report["sent"]) for report in reports) == 120
    assert {row["status"] for row in statuses(db).values()} == {"sent"}


def test_a_mail_claimed_before_a_crash_is_never_sent_again_and_shows_as_failed(mail_app, db,
                                                                                 smtp):
    queue(db, "crash@ward.example.jp")
    mail._claim(db, NOW, 10)  # the process died right after claiming, before or after SMTP

    soon = mail.send_due(db, mail_app.config, now=NOW + timedelta(minutes=1))
    assert soon["sent"] == [] and statuses(db)["crash@ward.example.jp"]["status"] == "sending"

    later = mail.send_due(db, mail_app.config, now=NOW + mail.SENDING_LEASE + timedelta(seconds=1))
    row = statuses(db)["crash@ward.example.jp"]
    assert [entry["mail_id"] for entry in later["interrupted"]] == [row["mail_id"]]
    assert row["status"] == "failed" and "届いたかどうか分かりません" in row["last_error"]
    assert smtp.received == []


def test_a_stop_hands_the_claimed_but_unsent_mails_back_to_the_queue(mail_app, db, smtp):
    for number in range(3):
        queue(db, f"stop{number}@ward.example.jp")
    stop = threading.Event()
    stop.set()
    report = mail.send_due(db, mail_app.config, now=NOW, stop=stop)
    assert report["sent"] == [] and report["queued"] == 3
    assert {(row["status"], row["attempts"]) for row in statuses(db).values()} == {("queued", 0)}


# --- when the server is down or refuses --------------------------------------------------------

def test_mail_waits_with_backoff_while_the_server_is_down_and_goes_out_when_it_is_back(app, db):
    down = SmtpServer(port=free_port())  # nothing listens on this port yet
    app.config.update(SMTP_HOST=down.host, SMTP_PORT=down.port, SMTP_TIMEOUT=5)
    queue(db, "patient@ward.example.jp")

    report = mail.send_due(db, app.config, now=NOW)
    row = statuses(db)["patient@ward.example.jp"]
    assert len(report["retrying"]) == 1 and report["sent"] == []
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["next_attempt_at"] == "2025-12-01T00:01:00+00:00"
    assert "接続できません" in row["last_error"]

    mail.send_due(db, app.config, now=NOW + timedelta(minutes=1))  # second attempt: wait 2 min
    assert statuses(db)["patient@ward.example.jp"]["next_attempt_at"] == "2025-12-01T00:03:00+00:00"

    down.start()
    try:
        early = mail.send_due(db, app.config, now=NOW + timedelta(minutes=2))
        assert early["sent"] == [] and down.received == []  # its time has not come yet
        late = mail.send_due(db, app.config, now=NOW + timedelta(minutes=3))
        assert len(late["sent"]) == 1
        assert [r.rcpt_tos for r in down.received] == [["patient@ward.example.jp"]]
    finally:
        down.stop()
    assert statuses(db)["patient@ward.example.jp"]["status"] == "sent"


def test_a_temporary_refusal_is_tried_again_and_then_sent(mail_app, db, smtp):
    queue(db, "busy@ward.example.jp")
    smtp.refuse_next("451 4.3.0 Mailbox temporarily unavailable")

    first = mail.send_due(db, mail_app.config, now=NOW)
    row = statuses(db)["busy@ward.example.jp"]
    assert first["sent"] == [] and row["status"] == "queued" and row["attempts"] == 1
    assert "451" in row["last_error"]

    second = mail.send_due(db, mail_app.config, now=NOW + timedelta(minutes=1))
    assert len(second["sent"]) == 1 and len(smtp.received) == 1
    assert statuses(db)["busy@ward.example.jp"]["status"] == "sent"


def test_temporary_failures_become_a_failure_after_the_last_attempt(mail_app, db, smtp):
    mail_app.config["MAIL_MAX_ATTEMPTS"] = 2
    queue(db, "never@ward.example.jp")
    smtp.refuse_always("never@ward.example.jp", "452 4.2.2 Mailbox full")
    mail.send_due(db, mail_app.config, now=NOW)
    assert statuses(db)["never@ward.example.jp"]["status"] == "queued"
    mail.send_due(db, mail_app.config, now=NOW + timedelta(minutes=1))
    row = statuses(db)["never@ward.example.jp"]
    assert row["status"] == "failed" and "2回試みても送れなかった" in row["last_error"]


def test_a_permanent_refusal_fails_that_mail_only_and_the_reviewer_sees_and_requeues_it(
        mail_app, db, smtp, client, signed_in):
    queue(db, "gone@ward.example.jp")
    queue(db, "here@ward.example.jp")
    smtp.refuse_always("gone@ward.example.jp", "550 5.1.1 User unknown")

    report = mail.send_due(db, mail_app.config, now=NOW)

    assert [entry["to_address"] for entry in report["sent"]] == ["here@ward.example.jp"]
    [failed] = report["failed"]
    assert "550 5.1.1 User unknown" in failed["error"]
    assert statuses(db)["gone@ward.example.jp"]["status"] == "failed"

    signed_in("reviewer")
    page = client.get("/mail/?status=failed").get_data(as_text=True)
    assert "gone@ward.example.jp" in page and "550 5.1.1 User unknown" in page
    assert "再送する" in page and "here@ward.example.jp" not in page

    url = f"/mail/{failed['mail_id']}"
    html = client.get(url).get_data(as_text=True)
    assert "宛先を受け付けられませんでした" in html
    response = client.post(f"{url}/requeue", data={"csrf_token": csrf_token(html)})
    assert response.status_code == 302
    row = statuses(db)["gone@ward.example.jp"]
    assert (row["status"], row["attempts"]) == ("queued", 0)
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'mail_requeue'"
                      ).fetchone()[0] == 1

    smtp.address_replies.clear()
    assert len(mail.send_due(db, mail_app.config)["sent"]) == 1


def test_an_address_that_is_not_one_fails_without_holding_up_the_others(mail_app, db, smtp):
    queue(db, "not an address")
    queue(db, "fine@ward.example.jp")
    report = mail.send_due(db, mail_app.config, now=NOW)
    assert [entry["to_address"] for entry in report["sent"]] == ["fine@ward.example.jp"]
    assert "メールアドレスが正しくありません" in statuses(db)["not an address"]["last_error"]
    assert [r.rcpt_tos for r in smtp.received] == [["fine@ward.example.jp"]]


def test_with_mail_off_nothing_is_sent_and_nothing_is_lost(mail_app, db, smtp, client, signed_in):
    mail_app.config["SMTP_HOST"] = ""
    queue(db, "later@ward.example.jp")
    report = mail.send_due(db, mail_app.config, now=NOW)
    assert (report["enabled"], report["sent"], report["queued"]) == (False, [], 1)
    assert smtp.received == [] and statuses(db)["later@ward.example.jp"]["attempts"] == 0

    signed_in("admin")
    page = client.get("/mail/").get_data(as_text=True)
    assert "メールの送信は無効です" in page and "later@ward.example.jp" in page

    mail_app.config["SMTP_HOST"] = smtp.host
    assert len(mail.send_due(db, mail_app.config, now=NOW)["sent"]) == 1


# --- the scheduler and the command ---------------------------------------------------------------

def test_the_scheduler_runs_registered_jobs_then_sends_what_they_queued(mail_app, smtp):
    calls = []

    @scheduler.register("test_job")
    def queue_a_reminder(db, settings, now):
        calls.append(now)
        with transaction(db):  # idempotent: the dedupe key makes every later run a no-op
            queued = mail.queue_mail(db, kind="remind", dedupe_key="remind:test:1",
                                     template="test", to_address="due@ward.example.jp")
        return {"queued": int(queued is not None)}

    try:
        running = scheduler.start(mail_app, interval=0.05)
        deadline = time.monotonic() + 20
        while (len(smtp.received) < 1 or len(calls) < 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        running.stop()
    finally:
        scheduler.DUE_WORK[:] = [job for job in scheduler.DUE_WORK if job[0] != "test_job"]
    assert len(calls) >= 3
    assert [r.rcpt_tos for r in smtp.received] == [["due@ward.example.jp"]]


def test_a_job_that_fails_does_not_stop_the_mail(mail_app, db, smtp):
    queue(db, "still@ward.example.jp")

    @scheduler.register("broken_job")
    def broken(db, settings, now):
        raise RuntimeError("boom")

    try:
        result = scheduler.run_due_work(mail_app)
    finally:
        scheduler.DUE_WORK[:] = [job for job in scheduler.DUE_WORK if job[0] != "broken_job"]
    assert result["jobs"]["broken_job"] == {"error": "RuntimeError: boom"}
    assert len(result["mail"]["sent"]) == 1


def test_send_mail_once_prints_what_it_sent_and_what_failed(mail_app, db, smtp):
    queue(db, "ok@ward.example.jp")
    queue(db, "bad@ward.example.jp")
    smtp.refuse_always("bad@ward.example.jp", "550 5.1.1 No such user")
    runner = mail_app.test_cli_runner()

    result = runner.invoke(args=["send-mail", "--once", "--json"])

    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert [entry["to_address"] for entry in printed["mail"]["sent"]] == ["ok@ward.example.jp"]
    assert [entry["to_address"] for entry in printed["mail"]["failed"]] == ["bad@ward.example.jp"]

    text = runner.invoke(args=["send-mail", "--once", "--test", "admin@ward.example.jp"])
    assert text.exit_code == 0, text.output
    assert "sent    #3 test → admin@ward.example.jp" in text.output
    assert "mail: sent 1, will retry 0, failed 0, still queued 0" in text.output
    assert smtp.received[-1].message["Subject"] == SUBJECT


# --- the outbox page ------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["staff", "manager", "trainer"])
def test_only_reviewers_and_admins_see_the_outbox(client, signed_in, db, role):
    mail_id = queue(db, "secret@ward.example.jp")
    signed_in(role)
    assert client.get("/mail/").status_code == 403
    assert client.get(f"/mail/{mail_id}").status_code == 403
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert client.post(f"/mail/{mail_id}/requeue", data={"csrf_token": token}).status_code == 403


def test_the_outbox_filters_by_status_and_kind_and_explains_an_empty_list(client, signed_in, db):
    signed_in("reviewer")
    assert "メールはまだありません" in client.get("/mail/").get_data(as_text=True)
    queue(db, "a@ward.example.jp", kind="invite")
    queue(db, "b@ward.example.jp", kind="remind")
    page = client.get("/mail/?kind=remind").get_data(as_text=True)
    assert "b@ward.example.jp" in page and "a@ward.example.jp" not in page
    assert "送信待ち（2）" in page
    empty = client.get("/mail/?status=sent").get_data(as_text=True)
    assert "この条件に当てはまるメールはありません" in empty
    # An unknown filter value is ignored, not an error.
    assert "a@ward.example.jp" in client.get("/mail/?kind=nonsense").get_data(as_text=True)


def test_requeue_without_a_csrf_token_is_refused_and_changes_nothing(mail_app, client, signed_in,
                                                                    db, smtp):
    queue(db, "gone@ward.example.jp")
    smtp.refuse_always("gone@ward.example.jp", "550 5.1.1 User unknown")
    mail.send_due(db, mail_app.config)
    signed_in("reviewer")
    mail_id = statuses(db)["gone@ward.example.jp"]["mail_id"]
    assert client.post(f"/mail/{mail_id}/requeue").status_code == 400
    assert statuses(db)["gone@ward.example.jp"]["status"] == "failed"
