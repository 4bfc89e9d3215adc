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

MIGRATIONS = (
    (1, "initial schema", INITIAL_SCHEMA),
    (2, "report workflow", REPORT_WORKFLOW),
    (3, "workshops", WORKSHOPS),
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
