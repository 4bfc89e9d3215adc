"""Ordered, append-only schema changes.

Each migration is a number, a name and a tuple of SQL statements, applied in one
transaction and recorded in ``schema_migrations``. Never edit or reorder a migration
that has shipped: add a new one at the end. ``migrate`` is safe to run repeatedly.
"""

from kb.db import transaction, utcnow

ROLE_CHECK = "'staff', 'manager', 'reviewer', 'trainer', 'admin'"

INITIAL_SCHEMA = (
    """
    CREATE TABLE departments (
        department_id INTEGER PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        parent_id INTEGER REFERENCES departments (department_id),
        position INTEGER NOT NULL DEFAULT 0,
        active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
        created_at TEXT NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE users (
        user_id INTEGER PRIMARY KEY,
        login TEXT NOT NULL UNIQUE COLLATE NOCASE,
        display_name TEXT NOT NULL,
        department_id INTEGER NOT NULL REFERENCES departments (department_id),
        password_hash TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        last_login_at TEXT
    ) STRICT
    """,
    f"""
    CREATE TABLE user_roles (
        user_id INTEGER NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ({ROLE_CHECK})),
        PRIMARY KEY (user_id, role)
    ) STRICT
    """,
    """
    CREATE TABLE cases (
        case_id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('incident', 'near_miss')),
        origin TEXT NOT NULL CHECK (origin IN ('internal', 'external')),
        status TEXT NOT NULL
            CHECK (status IN ('draft', 'submitted', 'approved', 'published', 'withdrawn')),
        external_id TEXT UNIQUE,
        title TEXT NOT NULL,
        occurred_on TEXT,
        discovered_on TEXT,
        published_on TEXT,
        department_id INTEGER REFERENCES departments (department_id),
        department_name TEXT,
        municipality TEXT,
        prefecture TEXT,
        task TEXT,
        incident_type TEXT,
        channel TEXT,
        summary TEXT NOT NULL DEFAULT '',
        how_found TEXT NOT NULL DEFAULT '',
        immediate_action TEXT NOT NULL DEFAULT '',
        potential_outcome TEXT NOT NULL DEFAULT '',
        prevention_idea TEXT NOT NULL DEFAULT '',
        affected_count INTEGER CHECK (affected_count IS NULL OR affected_count >= 0),
        data_items TEXT NOT NULL DEFAULT '[]',
        sensitive_data INTEGER NOT NULL DEFAULT 0 CHECK (sensitive_data IN (0, 1)),
        secondary_damage TEXT NOT NULL DEFAULT '',
        rule_status TEXT CHECK (rule_status IS NULL OR rule_status IN (
            'no_rule', 'rule_unknown', 'rule_not_followed', 'followed_but_missed', 'contractor')),
        factors TEXT NOT NULL DEFAULT '[]',
        whys TEXT NOT NULL DEFAULT '[]',
        root_cause TEXT NOT NULL DEFAULT '',
        causes TEXT NOT NULL DEFAULT '[]',
        lesson TEXT NOT NULL DEFAULT '',
        property_damage_risk INTEGER NOT NULL DEFAULT 0 CHECK (property_damage_risk IN (0, 1)),
        unlawful_purpose_risk INTEGER NOT NULL DEFAULT 0 CHECK (unlawful_purpose_risk IN (0, 1)),
        ordinance_sensitive INTEGER NOT NULL DEFAULT 0 CHECK (ordinance_sensitive IN (0, 1)),
        disclosure TEXT CHECK (disclosure IS NULL OR disclosure IN ('individual', 'batch', 'none')),
        disclosure_reason TEXT NOT NULL DEFAULT '',
        source_url TEXT,
        source_title TEXT,
        reporter_id INTEGER REFERENCES users (user_id),
        anonymous INTEGER NOT NULL DEFAULT 0 CHECK (anonymous IN (0, 1)),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        submitted_at TEXT,
        approved_at TEXT,
        published_at TEXT
    ) STRICT
    """,
    "CREATE INDEX cases_status ON cases (status, origin, kind)",
    "CREATE INDEX cases_incident_type ON cases (incident_type)",
    "CREATE INDEX cases_task ON cases (task)",
    "CREATE INDEX cases_department ON cases (department_id)",
    "CREATE INDEX cases_reporter ON cases (reporter_id)",
    "CREATE INDEX cases_source_url ON cases (source_url)",
    """
    CREATE TABLE countermeasures (
        countermeasure_id INTEGER PRIMARY KEY,
        case_id INTEGER NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        type TEXT CHECK (type IS NULL OR type IN ('education', 'mechanism', 'rule', 'sharing')),
        owner_department_id INTEGER REFERENCES departments (department_id),
        due_on TEXT,
        status TEXT NOT NULL DEFAULT 'planned' CHECK (status IN ('planned', 'in_progress', 'done')),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT
    """,
    "CREATE INDEX countermeasures_case ON countermeasures (case_id, position)",
    """
    CREATE TABLE checklist_versions (
        version_id INTEGER PRIMARY KEY,
        version TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        is_current INTEGER NOT NULL DEFAULT 0 CHECK (is_current IN (0, 1)),
        loaded_at TEXT NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE checklist_sections (
        section_id INTEGER PRIMARY KEY,
        version_id INTEGER NOT NULL REFERENCES checklist_versions (version_id) ON DELETE CASCADE,
        code TEXT NOT NULL,
        title TEXT NOT NULL,
        position INTEGER NOT NULL,
        UNIQUE (version_id, code)
    ) STRICT
    """,
    """
    CREATE TABLE checklist_items (
        item_id INTEGER PRIMARY KEY,
        version_id INTEGER NOT NULL REFERENCES checklist_versions (version_id) ON DELETE CASCADE,
        section_code TEXT NOT NULL,
        code TEXT NOT NULL,
        text TEXT NOT NULL,
        guidance TEXT NOT NULL DEFAULT '',
        tasks TEXT NOT NULL DEFAULT '[]',
        incident_types TEXT NOT NULL DEFAULT '[]',
        position INTEGER NOT NULL,
        UNIQUE (version_id, code)
    ) STRICT
    """,
    # Links name an item by its stable code, not its row, so they survive a new version.
    """
    CREATE TABLE countermeasure_checklist_items (
        countermeasure_id INTEGER NOT NULL
            REFERENCES countermeasures (countermeasure_id) ON DELETE CASCADE,
        item_code TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (countermeasure_id, item_code)
    ) STRICT
    """,
    """
    CREATE TABLE case_checklist_items (
        case_id INTEGER NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
        item_code TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (case_id, item_code)
    ) STRICT
    """,
    "CREATE INDEX countermeasure_items_code ON countermeasure_checklist_items (item_code)",
    "CREATE INDEX case_items_code ON case_checklist_items (item_code)",
    """
    CREATE TABLE comments (
        comment_id INTEGER PRIMARY KEY,
        case_id INTEGER NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
        user_id INTEGER REFERENCES users (user_id),
        body TEXT NOT NULL,
        created_at TEXT NOT NULL
    ) STRICT
    """,
    "CREATE INDEX comments_case ON comments (case_id, created_at)",
    # No foreign keys: the log must outlive what it talks about.
    """
    CREATE TABLE audit_log (
        audit_id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        user_id INTEGER,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        case_id INTEGER,
        target TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    ) STRICT
    """,
    "CREATE INDEX audit_log_at ON audit_log (at)",
    "CREATE INDEX audit_log_case ON audit_log (case_id)",
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
    """,
)

REPORT_WORKFLOW = (
    # Optimistic locking: a save names the version it edited; a stale one is refused.
    "ALTER TABLE cases ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
    # When the 速報 and 確報 to the Personal Information Protection Commission were made.
    "ALTER TABLE cases ADD COLUMN prelim_reported_on TEXT",
    "ALTER TABLE cases ADD COLUMN final_reported_on TEXT",
    # The workflow step a comment was written with: submit, approve, return, publish, or NULL.
    "ALTER TABLE comments ADD COLUMN action TEXT",
    # A reviewer's word that a personal-data finding is not personal data.
    """
    CREATE TABLE pii_confirmations (
        case_id INTEGER NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
        field TEXT NOT NULL,
        text TEXT NOT NULL,
        confirmed_by INTEGER REFERENCES users (user_id),
        confirmed_at TEXT NOT NULL,
        PRIMARY KEY (case_id, field, text)
    ) STRICT
    """,
)

WORKSHOPS = (
    """
    CREATE TABLE workshops (
        workshop_id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        held_on TEXT,
        audience_department_id INTEGER REFERENCES departments (department_id),
        owner_id INTEGER NOT NULL REFERENCES users (user_id),
        shared INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),
        questions TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE workshop_cases (
        workshop_id INTEGER NOT NULL REFERENCES workshops (workshop_id) ON DELETE CASCADE,
        case_id INTEGER NOT NULL REFERENCES cases (case_id),
        position INTEGER NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (workshop_id, case_id)
    ) STRICT
    """,
    "CREATE INDEX workshops_owner ON workshops (owner_id)",
)

SECURITY_REVIEW = (
    # Raised by sign-out, a password change or reset and deactivation: a session cookie
    # carries the generation it was issued under and is refused once it is older.
    "ALTER TABLE users ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0",
    # Optimistic locking for every form that writes a record (as cases.version does).
    "ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE workshops ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE countermeasures ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
    # Likely-duplicate candidates of an import are narrowed by municipality and date.
    "CREATE INDEX cases_municipality ON cases (municipality, occurred_on)",
)

STAFF_STATUS_CHECK = ("'active', 'suspended', 'sick_leave', 'maternity_leave', "
                      "'childcare_leave', 'care_leave', 'retired'")

STAFF_ROSTER = (
    # The personnel roster (職員名簿): 職員番号 is the key a re-import matches on.
    "ALTER TABLE users ADD COLUMN employee_number TEXT",
    "CREATE UNIQUE INDEX users_employee_number ON users (employee_number)"
    " WHERE employee_number IS NOT NULL",
    "ALTER TABLE users ADD COLUMN name_kana TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE users ADD COLUMN position TEXT NOT NULL DEFAULT ''",
    # Roster accounts are kept by imports (and have password_hash '' until their owner
    # sets one); local ones only by hand.
    "ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local'"
    " CHECK (source IN ('roster', 'local'))",
    # What each statement said, never rewritten: the status on a day is the one of the
    # latest statement covering it (kb/staff.py), so past periods can always be answered.
    f"""
    CREATE TABLE staff_status_periods (
        period_id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (user_id),
        status TEXT NOT NULL CHECK (status IN ({STAFF_STATUS_CHECK})),
        starts_on TEXT NOT NULL,
        ends_on TEXT CHECK (ends_on IS NULL OR ends_on >= starts_on),
        source TEXT NOT NULL CHECK (source IN ('roster', 'manual')),
        reason TEXT NOT NULL DEFAULT '',
        changed_by INTEGER REFERENCES users (user_id),
        created_at TEXT NOT NULL
    ) STRICT
    """,
    "CREATE INDEX staff_status_periods_user ON staff_status_periods (user_id, period_id)",
    # Which department a roster person belonged to, from when to when: "who was in 課 X"
    # for a past period must not follow a later transfer.
    """
    CREATE TABLE staff_assignments (
        assignment_id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (user_id),
        department_id INTEGER NOT NULL REFERENCES departments (department_id),
        starts_on TEXT NOT NULL,
        ends_on TEXT CHECK (ends_on IS NULL OR ends_on >= starts_on)
    ) STRICT
    """,
    "CREATE INDEX staff_assignments_department ON staff_assignments (department_id, starts_on)",
    "CREATE INDEX staff_assignments_user ON staff_assignments (user_id, starts_on)",
)

SIGN_IN_SLIPS = (
    # One-time codes printed on sign-in slips (kb/slips.py): only a hash of each code is
    # kept. A code is used once, voided by a newer slip for the same person, and expires.
    """
    CREATE TABLE sign_in_slips (
        slip_id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (user_id),
        code_hash TEXT NOT NULL UNIQUE,
        department_id INTEGER NOT NULL REFERENCES departments (department_id),
        printed_by INTEGER REFERENCES users (user_id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT,
        voided_at TEXT,
        CHECK (used_at IS NULL OR voided_at IS NULL)
    ) STRICT
    """,
    "CREATE INDEX sign_in_slips_user ON sign_in_slips (user_id, slip_id)",
    # Deactivating an account (退職, a roster import, the admin) voids its unused slips by
    # every path, so a slip printed before someone left cannot be used once they are back.
    """
    CREATE TRIGGER sign_in_slips_void_on_deactivation AFTER UPDATE OF active ON users
    WHEN NEW.active = 0 AND OLD.active = 1
    BEGIN
        UPDATE sign_in_slips SET voided_at = strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')
        WHERE user_id = NEW.user_id AND used_at IS NULL AND voided_at IS NULL;
    END
    """,
)

SELF_CHECK_CAMPAIGNS = (
    # 自己点検 (kb/campaigns.py, kb/selfcheck.py). Times are the office's local time as
    # "YYYY-MM-DDTHH:MM", what the authoring form shows and the deadline banner prints.
    """
    CREATE TABLE campaigns (
        campaign_id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        opens_at TEXT NOT NULL,
        closes_at TEXT NOT NULL CHECK (closes_at > opens_at),
        whole_office INTEGER NOT NULL DEFAULT 1 CHECK (whole_office IN (0, 1)),
        questions_per_person INTEGER CHECK (questions_per_person IS NULL OR questions_per_person > 0),
        pass_mark INTEGER NOT NULL DEFAULT 0 CHECK (pass_mark >= 0),
        retakes TEXT NOT NULL DEFAULT 'none' CHECK (retakes IN ('none', 'until_passed')),
        status TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'open', 'closed')),
        created_by INTEGER NOT NULL REFERENCES users (user_id),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        opened_at TEXT,
        closed_at TEXT,
        frozen_at TEXT,
        version INTEGER NOT NULL DEFAULT 1
    ) STRICT
    """,
    "CREATE INDEX campaigns_status ON campaigns (status, closes_at)",
    # The target when not the whole office: 部 (with their 課) or 課.
    """
    CREATE TABLE campaign_departments (
        campaign_id INTEGER NOT NULL REFERENCES campaigns (campaign_id) ON DELETE CASCADE,
        department_id INTEGER NOT NULL REFERENCES departments (department_id),
        PRIMARY KEY (campaign_id, department_id)
    ) STRICT
    """,
    """
    CREATE TABLE campaign_questions (
        question_id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns (campaign_id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        section_code TEXT NOT NULL DEFAULT '',
        item_code TEXT NOT NULL DEFAULT '',
        statement TEXT NOT NULL,
        answer INTEGER NOT NULL CHECK (answer IN (0, 1)),
        explanation TEXT NOT NULL DEFAULT '',
        case_id INTEGER REFERENCES cases (case_id),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT
    """,
    "CREATE INDEX campaign_questions_campaign ON campaign_questions (campaign_id, position)",
    # One row per try: the questions drawn for it (a JSON list of question ids, fixed when
    # the attempt starts, so a resumed attempt shows the same questions).
    """
    CREATE TABLE campaign_attempts (
        attempt_id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns (campaign_id),
        user_id INTEGER NOT NULL REFERENCES users (user_id),
        number INTEGER NOT NULL,
        question_ids TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        score INTEGER,
        passed INTEGER CHECK (passed IS NULL OR passed IN (0, 1)),
        on_paper INTEGER NOT NULL DEFAULT 0 CHECK (on_paper IN (0, 1)),
        keyed_in_by INTEGER REFERENCES users (user_id),
        UNIQUE (campaign_id, user_id, number)
    ) STRICT
    """,
    "CREATE INDEX campaign_attempts_user ON campaign_attempts (user_id, campaign_id)",
    # The primary key is what makes a double click or a second tab record one answer.
    """
    CREATE TABLE campaign_answers (
        attempt_id INTEGER NOT NULL REFERENCES campaign_attempts (attempt_id),
        question_id INTEGER NOT NULL REFERENCES campaign_questions (question_id),
        answer INTEGER NOT NULL CHECK (answer IN (0, 1)),
        correct INTEGER NOT NULL CHECK (correct IN (0, 1)),
        answered_at TEXT NOT NULL,
        PRIMARY KEY (attempt_id, question_id)
    ) STRICT
    """,
    """
    CREATE TABLE campaign_exclusions (
        campaign_id INTEGER NOT NULL REFERENCES campaigns (campaign_id),
        user_id INTEGER NOT NULL REFERENCES users (user_id),
        reason TEXT NOT NULL CHECK (length(trim(reason)) > 0),
        excluded_by INTEGER REFERENCES users (user_id),
        excluded_at TEXT NOT NULL,
        PRIMARY KEY (campaign_id, user_id)
    ) STRICT
    """,
    # Who was addressed and why each other person was not: written when the campaign
    # opens (invitations, the banner), kept up to date by exclusions, and written for the
    # last time when it closes (frozen_at), so closed figures never move.
    """
    CREATE TABLE campaign_eligibility (
        campaign_id INTEGER NOT NULL REFERENCES campaigns (campaign_id),
        user_id INTEGER NOT NULL REFERENCES users (user_id),
        department_id INTEGER NOT NULL REFERENCES departments (department_id),
        eligible INTEGER NOT NULL CHECK (eligible IN (0, 1)),
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (campaign_id, user_id)
    ) STRICT
    """,
    "CREATE INDEX campaign_eligibility_user ON campaign_eligibility (user_id, eligible, campaign_id)",
    "CREATE INDEX campaign_eligibility_department ON campaign_eligibility (campaign_id, department_id)",
)

MAIL_OUTBOX = (
    # Every mail is written here in the transaction of the event that causes it, then sent
    # by kb/mail.py's sender. dedupe_key ("invite:<campaign>:<user>") makes queueing the
    # same mail twice a no-op. 'sending' is the sender's claim, taken in its own short
    # transaction before the SMTP call, so no row is ever sent twice (kb/mail.py).
    """
    CREATE TABLE outbox (
        mail_id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        dedupe_key TEXT NOT NULL UNIQUE,
        to_address TEXT NOT NULL,
        to_name TEXT NOT NULL DEFAULT '',
        to_user_id INTEGER REFERENCES users (user_id),
        subject TEXT NOT NULL,
        body_text TEXT NOT NULL,
        body_html TEXT,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at TEXT NOT NULL,
        claimed_at TEXT,
        last_error TEXT NOT NULL DEFAULT '',
        sent_at TEXT
    ) STRICT
    """,
    # The sender's query: queued rows whose time has come, oldest first.
    "CREATE INDEX outbox_due ON outbox (next_attempt_at, mail_id) WHERE status = 'queued'",
    # Claims a crash left behind.
    "CREATE INDEX outbox_sending ON outbox (claimed_at) WHERE status = 'sending'",
    # The outbox page: newest first, by status or kind; a person's own mails.
    "CREATE INDEX outbox_status ON outbox (status, mail_id)",
    "CREATE INDEX outbox_kind ON outbox (kind, mail_id)",
    "CREATE INDEX outbox_user ON outbox (to_user_id, mail_id)",
)

SEARCH_VOCABULARY = (
    # The office's vocabulary for search (kb/vocabulary.py): groups of words that mean the
    # same for searching. A member word marked narrower also finds the group's other words;
    # the others do not find it. Words are compared folded by kb.analysis when they are
    # checked and loaded, not stored folded: a change of the folding table needs no migration.
    """
    CREATE TABLE vocabulary_groups (
        group_id INTEGER PRIMARY KEY,
        note TEXT NOT NULL DEFAULT '',
        version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE vocabulary_words (
        group_id INTEGER NOT NULL REFERENCES vocabulary_groups (group_id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        word TEXT NOT NULL CHECK (length(word) BETWEEN 1 AND 30),
        narrower INTEGER NOT NULL DEFAULT 0 CHECK (narrower IN (0, 1)),
        PRIMARY KEY (group_id, position)
    ) STRICT
    """,
    # One row per change: its id is the vocabulary's version after it (searches and their
    # cache name the version they used), and before/after are what the history page shows.
    """
    CREATE TABLE vocabulary_changes (
        change_id INTEGER PRIMARY KEY,
        changed_at TEXT NOT NULL,
        user_id INTEGER REFERENCES users (user_id),
        actor TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('seed', 'create', 'update', 'delete', 'upload')),
        group_id INTEGER,
        before TEXT NOT NULL DEFAULT '',
        after TEXT NOT NULL DEFAULT ''
    ) STRICT
    """,
)

QUERY_LOG = (
    # What search failed to find, per ISO week and normalised query (kb/querylog.py). No
    # user, session, address or time finer than the week, and WITHOUT ROWID so that not
    # even the order in which queries were first typed is kept.
    """
    CREATE TABLE query_log (
        week TEXT NOT NULL CHECK (week GLOB '[0-9][0-9][0-9][0-9]-W[0-5][0-9]'),
        query_key TEXT NOT NULL CHECK (query_key <> ''),
        display TEXT NOT NULL,
        searches INTEGER NOT NULL DEFAULT 0 CHECK (searches >= 0),
        no_results INTEGER NOT NULL DEFAULT 0 CHECK (no_results >= 0 AND no_results <= searches),
        opens INTEGER NOT NULL DEFAULT 0 CHECK (opens >= 0),
        PRIMARY KEY (week, query_key)
    ) STRICT, WITHOUT ROWID
    """,
)

SHARED_CASES = (
    # The 公表 as the public saw it, exported to other municipalities (kb/sharing.py): the
    # address of the office's announcement and the day it was made (the import format's
    # 出典 and 公表日, which nothing else recorded).
    "ALTER TABLE cases ADD COLUMN disclosure_url TEXT CHECK (disclosure_url IS NULL OR ("
    "length(disclosure_url) <= 500"
    " AND (disclosure_url LIKE 'http://%' OR disclosure_url LIKE 'https://%')))",
    "ALTER TABLE cases ADD COLUMN disclosed_on TEXT",
)

MIGRATIONS = (
    (1, "initial schema", INITIAL_SCHEMA),
    (2, "report workflow", REPORT_WORKFLOW),
    (3, "workshops", WORKSHOPS),
    (4, "security review", SECURITY_REVIEW),
    (5, "staff roster", STAFF_ROSTER),
    (6, "sign-in slips", SIGN_IN_SLIPS),
    (7, "mail outbox", MAIL_OUTBOX),
    (8, "self-check campaigns", SELF_CHECK_CAMPAIGNS),
    (9, "search vocabulary", SEARCH_VOCABULARY),
    (10, "query log", QUERY_LOG),
    (11, "shared cases", SHARED_CASES),
)


def applied_migrations(db) -> list[int]:
    if not db["schema_migrations"].exists():
        return []
    return [row["migration_id"] for row in
            db.query("SELECT migration_id FROM schema_migrations ORDER BY migration_id")]


def migrate(db) -> list[str]:
    """Apply every migration not yet applied, in order; return the names applied."""
    with transaction(db):
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " migration_id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL"
            ") STRICT"
        )
    applied = []
    for migration_id, name, statements in MIGRATIONS:
        # Checked inside the write transaction, so two processes starting together
        # cannot both apply the same migration.
        with transaction(db):
            if migration_id in applied_migrations(db):
                continue
            for statement in statements:
                db.execute(statement)
            db["schema_migrations"].insert(
                {"migration_id": migration_id, "name": name, "applied_at": utcnow()}
            )
        applied.append(name)
    return applied
