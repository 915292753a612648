"""Databases at an older schema revision than this code's, for migration and restore
tests: `previous_revision()` is the one just before head, so the tests keep
meaning "one migration behind" as migrations are added."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from hashdb.store.engine import MIGRATIONS


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def previous_revision() -> str:
    """The revision just before this code's head."""
    scripts = ScriptDirectory.from_config(_config())
    (head,) = scripts.get_heads()
    down = scripts.get_revision(head).down_revision
    assert isinstance(down, str)
    return down


def at_revision(url: str, revision: str) -> str:
    """Create hashdb's schema at `revision` in the database at `url`; returns `url`."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    return url
