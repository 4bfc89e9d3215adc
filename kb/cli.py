"""Commands for `flask --app wsgi …`: thin wrappers around the core functions."""

import atexit
import json
import secrets
import signal
import sys
import threading
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from kb import backup, checklist, imports, indexer, pii, reports, search, users
from kb.db import database_path, get_db, open_db
from kb.exceptions import Invalid, NotFound
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
                                          "their generated passwords (once).")
def init_command(demo: bool) -> None:
    """Create or upgrade the database and load the seed data.

    Idempotent: migrations not yet applied are applied; seed departments, the seed
    checklist and seed external cases are added only where missing. Nothing that
    exists is changed.
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
    if search.ensure_index(current_app, db):
        click.echo("search index: rebuilt from the database")
    if demo:
        _create_demo_accounts(db)


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
        click.echo(f"  重複の可能性 {duplicate['line']}行目「{duplicate['title']}」と"
                   f"登録済みの {duplicate['other_external_id']}「{duplicate['other_title']}」")
    if not result.changed:
        click.echo("変更はありません（同じ内容が取り込み済みです）。")


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
    """Replace the database with a backup (stop the app first). The current database is
    kept beside it; the search index is rebuilt on the next start."""
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
    config["INDEX_IN_BACKGROUND"] = True
    # A stop (Ctrl+C or SIGTERM) lets the background indexer finish what it has queued.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    atexit.register(indexer.flush_all)
    migrate(get_db())  # a database from an older release is brought up to date first
    threading.Thread(target=_prepare_index, args=(current_app._get_current_object(),),
                     daemon=True).start()
    click.echo(f"hiyari-kb: http://{config['HOST']}:{config['PORT']}/  (Ctrl+C to stop)")
    waitress.serve(current_app._get_current_object(), host=config["HOST"], port=config["PORT"],
                   threads=config["THREADS"], ident="hiyari-kb")


@click.command("pii-scan")
@with_appcontext
@click.argument("source", required=False, type=click.File("r", encoding="utf-8"))
@click.option("--all-cases", is_flag=True, help="Scan every text field of every case instead.")
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
            for field, found in reports.report_findings(reports.report_from_case(db, case_id)).items()
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

    With --json prints {"total": n, "hits": [{"case_id", "external_id", "title", "score"}]}.
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
    click.echo(f"{result.total} cases")
    for hit in hits:
        click.echo(f"{hit['score']:8.2f}  {hit['case_id']:>6}  {hit['external_id'] or '':<9} "
                   f"{hit['title']}")


def _prepare_index(app) -> None:
    """In the background at start: repair drift left by a crash, then warm the caches."""
    db = open_db(database_path(app.config["DATA_DIR"]))
    try:
        search.repair(db, app.config["DATA_DIR"])
    finally:
        db.close()
    search.warm(app.config["DATA_DIR"])


COMMANDS = (init_command, create_user_command, serve_command, pii_scan_command,
            reindex_command, search_command, import_cases_command, import_checklist_command,
            backup_command, restore_command)


def init_app(app) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)
