"""hiyari-kb: a knowledge base of personal-information incidents and near-misses."""

from flask import Flask

from kb import cli, config, db, directory, indexer, rendering, search, security, views


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings, database, security, rendering, views, commands."""
    app = Flask(
        __name__,
        template_folder=str(config.PROJECT_DIR / "templates"),
        static_folder="static",
    )
    app.config.from_mapping(config.defaults())
    app.config.from_mapping(config.from_environment())
    app.config.from_mapping(test_config or {})

    db.init_app(app)
    indexer.init_app(app)
    security.init_app(app)
    directory.init_app(app)
    rendering.init_app(app)
    views.init_app(app)
    cli.init_app(app)
    _ensure_search_index(app)
    return app


def _ensure_search_index(app: Flask) -> None:
    """A missing or old-schema index is rebuilt from SQLite before the first request."""
    if search.is_current(app.config["DATA_DIR"]) \
            or not db.database_path(app.config["DATA_DIR"]).exists():
        return
    with app.app_context():
        search.ensure_index(app, db.get_db())
