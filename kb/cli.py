"""Commands for `flask --app wsgi …`: thin wrappers around the core functions."""

import atexit
import gc
import json
import secrets
import signal
import sys
import threading
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from kb import (backup, checklist, demo_campaigns, demo_roster, imports, indexer, participation,
                pii, reports, roster, search, staff, users, workflow)
from kb import demo_reports
from kb import mail, scheduler, vocabulary
from kb import sharing
from kb.db import transaction
from kb.db import database_path, get_db, open_db
from kb.exceptions import Invalid, NotFound, PersonalDataInExport
from kb.migrations import migrate

# One demo account per role: login, name, department code, roles.
DEMO_ACCOUNTS = (
    ("demo-staff", "デモ 職員", "kumin-koseki", ["staff"]),
    ("demo-manager", "デモ 所属長", "kumin-koseki", ["manager"]),
    ("demo-reviewer", "デモ 情報管理担当", "soumu-gyousei-joho", ["reviewer"]),
    ("demo-trainer", "デモ 研修担当", "soumu-jinji", ["trainer"]),
    ("demo-admin", "デモ 管理者", "kikaku-johoseisaku", ["admin"]),
)


def _fail(error: Invalid, closing: str = "") -> None:
    """Print each message of a refused command as "where: message" and exit 1."""
    for where, messages in error.errors.items():
        for message in messages:
            click.echo(f"{where}: {message}", err=True)
    if closing:
        click.echo(closing, err=True)
    sys.exit(1)


def _seed(name: str) -> Path:
    return Path(current_app.config["SEED_DIR"]) / name


@click.command("init")
@with_appcontext
@click.option("--demo", is_flag=True, help="Also create one demo account per role and print "
                                          "their generated passwords (once), load the demo "
                                          "roster of about 300 people, two demo 自己点検 "
                                          "and about 40 demo reports in every workflow state.")
def init_command(demo: bool) -> None:
    """Create or upgrade the database and load the seed data.

    Idempotent: migrations not yet applied are applied; seed departments, the seed
    checklist and seed external cases are added only where missing, the seed search
    vocabulary only while the vocabulary has never been changed. Nothing that exists
    is changed.
    """
    db = get_db()
    applied = migrate(db)
    click.echo(f"migrations applied: {len(applied)}")
    added = users.load_departments(db, _seed("departments.yaml"))
    click.echo(f"departments added: {added}")
    if checklist.current_version(db) is None:
        checklist.load_checklist(db, _seed("checklist.yaml"))
    version = checklist.current_version(db)
    click.echo(f"checklist: version {version['version']}, "
               f"{len(checklist.current_items(db))} items")
    result = imports.import_external_cases(db, _seed("external_cases.jsonl"), only_new=True)
    click.echo(f"external cases added: {result['new']}, already present: {result['existing']}")
    # The seed vocabulary only on first run: once reviewers changed it, it is theirs.
    seed_file = _seed("vocabulary.csv")
    try:
        added = vocabulary.load_seed(db, users.SYSTEM, seed_file)
        missing = 0 if added else vocabulary.count_seed_proposals(db, seed_file)
    except Invalid as error:  # search works without it; a reviewer can add it later
        added = missing = 0
        click.echo("warning: " + " ".join(error.errors["seed"]), err=True)
    if added:
        click.echo(f"search vocabulary: {added} groups added")
    elif not vocabulary.current_version(db):
        click.echo("search vocabulary: empty (the seed list could not be read)")
    else:
        click.echo("search vocabulary: kept as it is" + (
            f" ({missing} seed groups or words not in it: a reviewer can add them at"
            f" 言い換え → 標準の言い換えから取り込む, /admin/vocabulary/seed)" if missing else ""))
    if search.ensure_index(current_app, db):
        click.echo("search index: rebuilt from the database")
    if demo and (in_use := demo_reports.in_use(db)):
        # A real installation (scripts/run pointed at it, or --demo typed by habit): the
        # demo would mail the whole office and file reports under real people's names.
        _fail(Invalid({"--demo": in_use}), "この環境は使用中のため、デモのデータは作りませんでした"
              "（上の初期化は済んでいます）。デモは新しいデータフォルダで試してください。")
    if demo:
        _create_demo_accounts(db)
        _load_demo_roster(db)
        _load_demo_campaigns(db)
        _load_demo_reports(db)


def _create_demo_accounts(db) -> None:
    created = []
    for login, name, department_code, roles in DEMO_ACCOUNTS:
        if db.execute("SELECT 1 FROM users WHERE login = ?", [login]).fetchone():
            continue
        password = secrets.token_urlsafe(12)
        department = users.get_department_by_code(db, department_code)
        users.create_user(db, users.SYSTEM, login=login, display_name=name,
                          department_id=department["department_id"], roles=roles,
                          password=password)
        created.append((login, password, "・".join(roles)))
    if not created:
        click.echo("demo accounts: already created (their passwords were printed then)")
        return
    click.echo("demo accounts (passwords are shown only now):")
    for login, password, roles in created:
        click.echo(f"  {login:<15} {password}  ({roles})")


def _load_demo_roster(db) -> None:
    # Through the real importer: a second init --demo builds the same file and changes nothing.
    positions = current_app.config["POSITIONS_FILE"] or str(_seed("positions.yaml"))
    try:
        plan = demo_roster.load_demo_roster(db, managers=roster.load_positions(positions))
    except Invalid as error:  # e.g. departments renamed on this installation: the rest stands
        click.echo("demo roster: not loaded (nothing written): "
                   + " / ".join(f"{where}: {m}" for where, ms in error.errors.items() for m in ms[:1]),
                   err=True)
        return
    counts = plan.summary()
    click.echo(f"demo roster: {counts['added'] + counts['updated'] + counts['unchanged']} people "
               f"(added {counts['added']}, updated {counts['updated']}, "
               f"unchanged {counts['unchanged']})")


def _load_demo_campaigns(db) -> None:
    # Two 自己点検 (one closed, one open) answered by the demo roster; once only.
    author = db.execute("SELECT user_id FROM users WHERE login = 'demo-reviewer'").fetchone()
    if author is None:
        return
    made = demo_campaigns.load_demo_campaigns(db, author[0])
    if made is None:
        click.echo("demo campaigns: already created")
        return
    click.echo(f"demo campaigns: one closed, one open ({made['answered']} answered online, "
               f"{made['on_paper']} on paper)")


def _load_demo_reports(db) -> None:
    # About 40 reports in every workflow state, filed by the demo roster; once only.
    reviewer = db.execute("SELECT user_id FROM users WHERE login = 'demo-reviewer'").fetchone()
    if reviewer is None:
        return
    try:
        made = demo_reports.load_demo_reports(db, reviewer[0], _seed("demo_reports.yaml"))
    except Invalid as error:  # e.g. departments renamed on this installation: the rest stands
        click.echo("demo reports: not created (nothing written): "
                   + " / ".join(f"{where}: {m}" for where, ms in error.errors.items() for m in ms[:1]),
                   err=True)
        return
    if made is None:
        click.echo("demo reports: already created")
        return
    states = made["states"]
    click.echo(f"demo reports: {made['reports']} ({made['incidents']} incidents; "
               f"{states['draft'] + states['returned']} drafts, {states['submitted']} submitted, "
               f"{states['approved']} approved, {states['published']} published)")


@click.command("create-user")
@with_appcontext
@click.option("--login", required=True, help="Login id: letters, digits, . _ - (3–40).")
@click.option("--name", "display_name", required=True, help="The person's name as shown.")
@click.option("--department", required=True, help="Department code or exact name.")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(users.ROLES), help="A role; repeat for several.")
def create_user_command(login: str, display_name: str, department: str, roles) -> None:
    """Create an account; the password is asked for twice (or read from standard input)."""
    db = get_db()
    try:
        department_id = users.find_department(db, department)["department_id"]
    except NotFound:
        raise click.BadParameter(f"unknown department {department!r}", param_hint="--department")
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = users.create_user(db, users.SYSTEM, login=login, display_name=display_name,
                                 department_id=department_id, roles=roles, password=password)
    except Invalid as error:
        _fail(error)
    click.echo(f"created user {user.login} ({user.department_name}; {', '.join(sorted(user.roles))})")


@click.command("import-cases")
@with_appcontext
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check the file and report what would change, "
                                              "writing nothing.")
def import_cases_command(file: str, dry_run: bool) -> None:
    """Import cases of other municipalities from JSON Lines or CSV (UTF-8 or CP932).

    Every record is checked first; on any error each problem is printed with its line
    and field and nothing is written (exit 1). Records are matched by id, else by
    source_url: importing the same file again changes nothing.
    """
    from tqdm import tqdm

    db = get_db()
    with tqdm(unit="件", desc="import", disable=None) as bar:
        try:
            result = imports.import_external_cases(db, file, dry_run=dry_run,
                                                   progress=bar.update)
        except Invalid as error:
            bar.close()
            _fail(error, "取り込みを中止しました。データベースは変更していません。")
    prefix = "（試行）" if dry_run else ""
    click.echo(f"{prefix}新規 {result.new}件、更新 {result.updated}件、変更なし {result.unchanged}件、"
               f"重複の可能性 {len(result.duplicates)}件")
    for change in result.changes:
        if change["outcome"] == "updated":
            click.echo(f"  更新 {change['line']}行目 {change['external_id']} {change['title']}"
                       f"（{', '.join(change['fields'])}）")
    for duplicate in result.duplicates:
        where = (f"{duplicate['other_line']}行目の" if duplicate["other_line"] else "登録済みの")
        click.echo(f"  重複の可能性 {duplicate['line']}行目「{duplicate['title']}」と"
                   f"{where} {duplicate['other_external_id']}「{duplicate['other_title']}」")
    for lost in result.lost_links:
        click.echo(f"  {'外れる' if dry_run else '外れた'}関連付け {lost['line']}行目 {lost['external_id']}"
                   f"：再発防止策「{lost['countermeasure']}」がファイルにないため、"
                   f"チェックリスト項目 {'、'.join(lost['item_codes'])} との関連付けが"
                   f"{'外れます' if dry_run else '外れました'}。")
    if not result.changed:
        click.echo("変更はありません（同じ内容が取り込み済みです）。")


@click.command("export-cases")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(sharing.FORMATS), default=None,
              help="jsonl or csv (default: from the file name, else jsonl).")
@click.option("--since", default="", help="Only cases published on or after this day "
                                          "(YYYY-MM-DD; the 公表日, else the day published here).")
@click.option("--encoding", type=click.Choice(sharing.ENCODINGS), default="utf-8",
              help="CSV: utf-8 (with BOM, the default) or cp932.")
def export_cases_command(file: str, fmt: str | None, since: str, encoding: str) -> None:
    """Export the office's published cases (個別公表・一括公表) for other municipalities, in
    the format import-cases reads. Any personal-data finding, or a missing
    KB_MUNICIPALITY_CODE / KB_MUNICIPALITY_NAME, stops it: no file is written (exit 1)."""
    fmt = fmt or ("csv" if Path(file).suffix.lower() in (".csv", ".txt", ".tsv") else "jsonl")
    db_file = database_path(current_app.config["DATA_DIR"])
    try:
        export = sharing.write_export(get_db(), None, current_app.config, file, fmt=fmt,
                                      encoding=encoding, since=since, protected=[db_file])
    except Invalid as error:
        _fail(error, "書き出しを中止しました。ファイルは作っていません。")
    except PersonalDataInExport as found:
        click.echo(f"個人情報のおそれがある記載が{len(found.findings)}件あるため、書き出しを中止しました。"
                   "ファイルは作っていません。", err=True)
        for f in found.findings:
            click.echo(f"  事例 {f['case_id']}（{f['id']}）{f['field_label']}：{f['kind_label']}"
                       f"「{f['text']}」 … {f['excerpt']}", err=True)
        sys.exit(1)
    click.echo(f"{export.count}件の事例を {file} に書き出しました（{export.format}"
               f"{'、' + export.encoding if export.format == 'csv' else ''}）。")


@click.command("import-checklist")
@with_appcontext
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def import_checklist_command(file: str) -> None:
    """Load a checklist version from YAML and make it current.

    Items keep their codes across versions; links from countermeasures follow the
    code, so they survive. A version already loaded is left as it is.
    """
    try:
        loaded = checklist.load_checklist(get_db(), file)
    except Invalid as error:
        _fail(error, "チェックリストを読み込みませんでした。")
    version = checklist.current_version(get_db())
    if loaded:
        click.echo(f"checklist version {version['version']} loaded and made current")
    else:
        click.echo("this version is already loaded; nothing changed")


@click.command("backup")
@with_appcontext
@click.argument("dest", type=click.Path(dir_okay=True))
def backup_command(dest: str) -> None:
    """Copy the database to DEST (a file, or a folder for a dated file) while the app runs.

    Uses SQLite's online backup API and checks the copy's integrity. The search index is
    not copied: it is rebuilt from the database.
    """
    try:
        path = backup.backup(current_app.config["DATA_DIR"], dest)
    except Invalid as error:
        _fail(error)
    click.echo(f"backup written to {path} (integrity ok)")


@click.command("restore")
@with_appcontext
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def restore_command(source: str, yes: bool) -> None:
    """Replace the database with a backup (stop the app first).

    Refused while `serve` runs or any process has the database open. The current
    database, its newest saves included, is kept beside it under a new name; the search
    index is rebuilt on the next start."""
    if not yes:
        click.confirm(f"Replace the database in {current_app.config['DATA_DIR']} with {source}?",
                      abort=True)
    try:
        path = backup.restore(source, current_app.config["DATA_DIR"])
    except Invalid as error:
        _fail(error)
    click.echo(f"restored {source} to {path}; the search index will be rebuilt on start")


@click.command("serve")
@with_appcontext
def serve_command() -> None:
    """Serve the app with the waitress production server on HOST:PORT."""
    import waitress

    config = current_app.config
    try:  # while this process runs, `restore` refuses to replace the database under it
        backup.hold_running_lock(config["DATA_DIR"])
    except Invalid as error:
        _fail(error)
    config["INDEX_IN_BACKGROUND"] = True
    config["REUSE_CONNECTIONS"] = True  # one connection per worker thread (kb/db.py)
    # A stop (Ctrl+C or SIGTERM) lets the background indexer finish what it has queued.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    atexit.register(indexer.flush_all)
    migrate(get_db())  # a database from an older release is brought up to date first
    threading.Thread(target=_prepare_index, args=(current_app._get_current_object(),),
                     daemon=True).start()
    # Due work (sending mail, reminders) every minute; at a stop the mail being sent
    # finishes and the rest goes back to the queue (registered last: runs first).
    scheduler.start(current_app._get_current_object())
    atexit.register(scheduler.stop_all)
    click.echo(f"hiyari-kb: http://{config['HOST']}:{config['PORT']}/  (Ctrl+C to stop)")
    # What start-up built (modules, templates, the app) lives as long as the process: out
    # of the collector's way, a full collection scans a fraction of the objects and stops
    # every request thread for that much less (measured: 50–126 ms pauses under load).
    gc.collect()
    gc.freeze()
    waitress.serve(current_app._get_current_object(), host=config["HOST"], port=config["PORT"],
                   threads=config["THREADS"], ident="hiyari-kb")


@click.command("pii-scan")
@with_appcontext
@click.argument("source", required=False, type=click.File("r", encoding="utf-8"))
@click.option("--all-cases", is_flag=True,
              help="Scan every text field and comment of every case instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def pii_scan_command(source, all_cases: bool, as_json: bool) -> None:
    """Find personal data in a text file (or - for standard input) or in every case.

    Exits 1 when anything is found, 0 when nothing is, so it can gate other scripts.
    """
    if all_cases:
        db = get_db()
        findings = [
            {"case_id": case_id, "field": field, **finding.as_dict()}
            for (case_id,) in db.execute("SELECT case_id FROM cases ORDER BY case_id").fetchall()
            for field, found in {
                **reports.report_findings(reports.report_from_case(db, case_id)),
                # Comments are shown with the published case: scanned alike (comment-<id>).
                **workflow.comment_findings(db, case_id, confirmed=set())}.items()
            for finding in found
        ]
    elif source is not None:
        findings = [finding.as_dict() for finding in pii.scan(source.read())]
    else:
        raise click.UsageError("give a FILE (or - for standard input) or --all-cases")
    if as_json:
        click.echo(json.dumps(findings, ensure_ascii=False, indent=1))
    elif not findings:
        click.echo("個人情報らしき記載は見つかりませんでした。")
    for finding in findings if not as_json else []:
        where = f"case {finding['case_id']} {finding['field']} " if all_cases else ""
        click.echo(f"{where}{finding['start']}-{finding['end']} "
                   f"{pii.KIND_LABELS[finding['kind']]}: {finding['text']}")
    sys.exit(1 if findings else 0)


@click.command("reindex")
@with_appcontext
@click.option("--check", "check_only", is_flag=True,
              help="Compare the index with the database instead of rebuilding: report "
                   "missing, stale and orphaned documents, repair them, and exit 1 if "
                   "there were any.")
@click.option("--procs", type=int, default=2, show_default=True,
              help="Processes for a full rebuild.")
def reindex_command(check_only: bool, procs: int) -> None:
    """Rebuild the search index from the database (the database is the source of truth)."""
    from tqdm import tqdm

    db = get_db()
    data_dir = current_app.config["DATA_DIR"]
    if check_only:
        ix = search.get_index(data_dir)
        drift = search.check(ix, db)
        for kind in ("missing", "stale", "orphaned"):
            ids = drift[kind]
            click.echo(f"{kind}: {len(ids)}" + (f" ({', '.join(map(str, ids[:20]))}"
                                                 f"{' …' if len(ids) > 20 else ''})" if ids else ""))
        if any(drift.values()):
            search.heal(ix, db, drift)
            click.echo("drift repaired")
            sys.exit(1)
        click.echo("index matches the database")
        return
    total = db.execute("SELECT count(*) FROM cases WHERE status != 'withdrawn'").fetchone()[0]
    with tqdm(total=total, unit="件", desc="reindex", disable=None) as bar:
        count = search.rebuild(db, data_dir, progress=bar.update, procs=procs)
    click.echo(f"indexed {count} cases")


@click.command("search")
@with_appcontext
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print the contract JSON.")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
def search_command(query: str, as_json: bool, limit: int) -> None:
    """Search the published cases as any member of staff would.

    With --json prints {"total": n, "hits": [{"case_id", "external_id", "title", "score"}]}
    (the contract, DESIGN.md §4); the text lists mark the cases only feedback found.
    """
    db = get_db()
    result = search.search_cases(search.get_index(current_app.config["DATA_DIR"]), db,
                                 users.READER, query, page_size=limit)
    hits = [{"case_id": hit["case_id"], "external_id": hit["external_id"],
             "title": hit["title"], "score": hit["score"]} for hit in result.hits]
    if as_json:
        click.echo(json.dumps({"total": result.total, "hits": hits}, ensure_ascii=False))
        return
    for notice in result.notices:
        click.echo(notice, err=True)
    click.echo(f"{result.total} cases" + (f" ({result.related} related)" if result.related else ""))
    for hit, found in zip(hits, result.hits):
        click.echo(f"{hit['score']:8.2f}  {hit['case_id']:>6}  {hit['external_id'] or '':<9} "
                   f"{hit['title']}" + ("  (related)" if found["related"] else ""))


@click.command("import-staff")
@with_appcontext
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check the file and report what would change, "
                                              "writing nothing.")
@click.option("--deactivate-missing", is_flag=True,
              help="Deactivate active roster accounts that are not in the file.")
@click.option("--yes", is_flag=True, help="Allow an import that deactivates more than 10 % "
                                          "of the active accounts.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts and errors as JSON.")
def import_staff_command(file: str, dry_run: bool, deactivate_missing: bool, yes: bool,
                         as_json: bool) -> None:
    """Import the staff roster (職員名簿) from 人事's CSV (CP932 or UTF-8; comma or tab).

    Every row is checked first; on any error each problem is printed with its line and
    column and nothing is written (exit 1). People are matched by 職員番号 (also the login
    id of new accounts): importing the same file again changes nothing. With --json prints
    {"added", "updated", "unchanged", "deactivated", "errors": [{"line", "column", "message"}]}.
    """
    db = get_db()
    positions = current_app.config["POSITIONS_FILE"] or str(_seed("positions.yaml"))
    try:
        plan = roster.import_staff_file(db, users.SYSTEM, file, managers=roster.load_positions(positions),
                                        deactivate_missing=deactivate_missing, confirmed=yes,
                                        dry_run=dry_run)
    except (roster.RosterInvalid, roster.TooManyDeactivations, Invalid) as error:
        problems = _roster_problems(error)
        if as_json:
            click.echo(json.dumps({"added": 0, "updated": 0, "unchanged": 0, "deactivated": 0,
                                   "errors": [p.as_dict() for p in problems]}, ensure_ascii=False))
            sys.exit(1)
        for problem in problems:
            where = " ".join(filter(None, [f"{problem.line}行目" if problem.line else "",
                                           problem.column or ""]))
            click.echo(f"{where}: {problem.message}" if where else problem.message, err=True)
        click.echo("取り込みを中止しました。データベースは変更していません。", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({**plan.summary(), "errors": []}, ensure_ascii=False))
        return
    counts = plan.summary()
    click.echo(f"{'（試行）' if dry_run else ''}新規 {counts['added']}人、更新 {counts['updated']}人、"
               f"変更なし {counts['unchanged']}人、無効化 {counts['deactivated']}人")
    for change in plan.updated[:50]:
        fields = "、".join(roster.FIELD_LABELS[key] for key in change["fields"])
        click.echo(f"  更新 {change['line']}行目 {change['employee_number']} {change['name']}（{fields}）")
    for change in plan.deactivated[:50]:
        why = "退職" if change["reason"] == "retired" else "名簿にない"
        click.echo(f"  無効化 {change['employee_number']} {change['name']}（{why}）")
    if len(plan.updated) > 50 or len(plan.deactivated) > 50:
        click.echo("  …（51人目からは省略）")
    if plan.ignored_columns:
        click.echo(f"取り込まなかった列: {'、'.join(plan.ignored_columns)}")
    if dry_run and plan.needs_confirmation:
        click.echo(plan.guard_message())
    if not plan.changed:
        click.echo("変更はありません（同じ内容が取り込み済みです）。")


def _roster_problems(error) -> list:
    """The problems of a refused roster import, each with its line and column (or None)."""
    if isinstance(error, roster.RosterInvalid):
        return error.problems
    if isinstance(error, Invalid):  # the 役職 table could not be read
        return [roster.Problem(None, where, message)
                for where, messages in error.errors.items() for message in messages]
    return [roster.Problem(None, None, str(error))]


@click.command("staff")
@with_appcontext
@click.option("--department", help="A department code; a 部 includes its 課.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def staff_command(department: str | None, as_json: bool) -> None:
    """List accounts with their roster data, roles and today's status.

    With --json prints [{"login", "employee_number", "name", "department_code", "roles",
    "status", "active"}] (status is null for a local account without roster history).
    """
    try:
        people = staff.list_staff(get_db(), users.SYSTEM, department_code=department)
    except NotFound:
        click.echo(f"所属コード「{department}」は登録されていません。", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(people, ensure_ascii=False))
        return
    for person in people:
        status = staff.STATUS_LABELS.get(person["status"], "－")
        click.echo(f"{person['login']:<16} {person['employee_number'] or '':<10} {person['name']:<12}"
                   f" {person['department_code']:<20} {','.join(person['roles']):<16} {status}"
                   f"{'' if person['active'] else ' （無効）'}")
    click.echo(f"{len(people)}人")


@click.command("send-mail")
@with_appcontext
@click.option("--once", is_flag=True, help="Run the due work once and exit (for cron or a "
                                          "systemd timer). Without it: every minute until "
                                          "stopped, as `serve` does.")
@click.option("--json", "as_json", is_flag=True, help="Print each run as one line of JSON.")
@click.option("--test", "test_address", metavar="ADDRESS",
              help="First queue a test mail to ADDRESS, to check the SMTP settings.")
def send_mail_command(once: bool, as_json: bool, test_address: str | None) -> None:
    """Send the mail that is due (and run the other due work): what `serve` does every
    minute, for installations that send from cron, a timer or a separate process."""
    app = current_app._get_current_object()
    migrate(get_db())
    if test_address:
        db = get_db()
        with transaction(db):
            mail.queue_mail(db, kind="test", dedupe_key=f"test:{test_address}:{secrets.token_hex(8)}",
                            template="test", to_address=test_address)
    show = (lambda result: click.echo(json.dumps(result, ensure_ascii=False))) if as_json \
        else _print_due_work
    if once:
        show(scheduler.run_due_work(app))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    running = scheduler.start(app, on_result=show)
    try:
        while running.thread.is_alive():
            running.thread.join(1)
    finally:  # Ctrl+C or SIGTERM: the mail being sent finishes, the rest stays queued
        running.stop()


def _print_due_work(result: dict) -> None:
    for name, summary in result["jobs"].items():
        click.echo(f"{name}: {json.dumps(summary, ensure_ascii=False)}")
    report = result["mail"]
    for entry in report["sent"]:
        click.echo(f"sent    #{entry['mail_id']} {entry['kind']} → {entry['to_address']} "
                   f"「{entry['subject']}」")
    for entry in report["retrying"]:
        click.echo(f"retry   #{entry['mail_id']} {entry['kind']} → {entry['to_address']} "
                   f"at {entry['next_attempt_at']}: {entry['error']}")
    for entry in report["failed"] + report["interrupted"]:
        click.echo(f"FAILED  #{entry['mail_id']} {entry['kind']} → {entry['to_address']}: "
                   f"{entry['error']}")
    state = "" if report["enabled"] else " (mail is off: KB_SMTP_HOST is empty)"
    click.echo(f"mail: sent {len(report['sent'])}, will retry {len(report['retrying'])}, "
               f"failed {len(report['failed']) + len(report['interrupted'])}, "
               f"still queued {report['queued']}{state}")


def _prepare_index(app) -> None:
    """In the background at start: repair drift left by a crash, then warm the caches."""
    db = open_db(database_path(app.config["DATA_DIR"]))
    try:
        search.repair(db, app.config["DATA_DIR"])
    finally:
        db.close()
    search.warm(app.config["DATA_DIR"])


@click.command("campaign-report")
@with_appcontext
@click.argument("campaign_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def campaign_report_command(campaign_id: int, as_json: bool) -> None:
    """Participation of a self-check campaign by department: eligible, completed, excluded by
    reason and rate (frozen figures once it is closed, live ones before)."""
    try:
        report = participation.campaign_report(get_db(), campaign_id)
    except NotFound:
        click.echo(f"自己点検 {campaign_id} は登録されていません。", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    total = report["total"]
    for d in report["departments"]:
        rate = "—" if d["rate"] is None else f"{d['rate']:.1%}"
        click.echo(f"{d['code']:<28} {d['completed']:>5}/{d['eligible']:<5} {rate:>7}  {d['name']}")
    rate = "—" if total["rate"] is None else f"{total['rate']:.1%}"
    click.echo(f"{'total':<28} {total['completed']:>5}/{total['eligible']:<5} {rate:>7}"
               f"  ({'closed' if report['closed'] else 'live'})")


COMMANDS = (init_command, create_user_command, serve_command, pii_scan_command,
            reindex_command, search_command, import_cases_command, import_checklist_command,
            backup_command, restore_command, import_staff_command, staff_command,
            send_mail_command, campaign_report_command, export_cases_command)


def init_app(app) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)
