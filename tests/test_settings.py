"""Settings: one table, read from HASHDB_* variables, validated, documented in README."""

from __future__ import annotations

from pathlib import Path

import pytest

from hashdb.errors import InvalidInput
from hashdb.settings import load_settings, settings_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_settings_come_from_hashdb_environment_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HASHDB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HASHDB_SYNC_INTERVAL", "0.5")
    settings = load_settings()
    assert settings.sync_interval == 0.5
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'hashdb.sqlite3'}"


def test_an_explicit_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASHDB_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert load_settings().resolved_database_url() == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HASHDB_WORKERS", "0"),
        ("HASHDB_BIND", "nowhere"),
        ("HASHDB_LOG_LEVEL", "loud"),
        ("HASHDB_SYNC_INTERVAL", "soon"),
    ],
)
def test_a_bad_value_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput) as info:
        load_settings()
    assert info.value.field == name


def test_the_readme_configuration_table_is_generated_from_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_markdown() in readme, "run `hashdb settings --markdown` and paste into README"
