"""Every setting of the service, defined once with its default and help text.

Values come from `HASHDB_*` environment variables (for example `HASHDB_DATABASE_URL`)
and are validated when the service or CLI starts, so a typo fails at start-up, not
at the first request. The configuration table in README.md is generated from this
class (`hashdb settings --markdown`) and a test keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hashdb.errors import InvalidInput

DEFAULT_DB_FILENAME = "hashdb.sqlite3"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HASHDB_", extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database; unset means a SQLite file "
        f"`{DEFAULT_DB_FILENAME}` in the data directory. PostgreSQL: "
        "`postgresql+psycopg://user@host/db`.",
    )
    data_dir: Path = Field(
        default=Path(),
        description="Directory for the embedded SQLite database and index snapshots.",
    )
    snapshot_dir: Path | None = Field(
        default=None,
        description="Directory for index snapshots, so a restart loads the built index "
        "and replays only newer changes; unset rebuilds from the database at every start.",
    )
    bind: str = Field(
        default="127.0.0.1:5000", description="Address `hashdb serve` listens on (host:port)."
    )
    workers: int = Field(default=2, ge=1, le=64, description="Gunicorn worker processes.")
    threads: int = Field(default=4, ge=1, le=256, description="Threads per worker.")
    sync_interval: float = Field(
        default=2.0,
        ge=0.0,
        le=3600.0,
        description="Longest delay, in seconds, before a matcher replays changes made "
        "elsewhere. API workers also check the change log's head on every request, so "
        "a change is seen by the next request in every worker and on every server.",
    )
    count_flush_seconds: float = Field(
        default=5.0,
        ge=0.0,
        le=60.0,
        description="How often, in seconds, a process writes the match counts it "
        "accumulated (for the transparency reports); 0 writes them with every request.",
    )
    max_batch: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most queries or hashes in one request."
    )
    max_threshold_pdq: int = Field(
        default=63,
        ge=0,
        le=128,
        description="Largest PDQ threshold a query may ask for (bits of 256).",
    )
    max_threshold_phash: int = Field(
        default=16, ge=0, le=32, description="Largest pHash threshold a query may ask for."
    )
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1024,
        description="Largest accepted request body, in bytes (413 beyond it).",
    )
    max_image_pixels: int = Field(
        default=100_000_000,
        ge=1,
        description="Images declaring more pixels than this are refused as decompression bombs.",
    )
    rate_limit_per_minute: int = Field(
        default=6000,
        ge=0,
        description="Requests per minute allowed per API key (0 disables the limit).",
    )
    rate_limit_burst: int = Field(
        default=600, ge=1, description="Requests a key may make at once before it is throttled."
    )
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error.")
    pending_matches: bool = Field(
        default=True,
        description="Whether hashes awaiting vetting (`pending`) already match; results "
        "flag them `pending`. On by default so that a crisis is not slowed down by review.",
    )
    dispute_threshold: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Distinct members disagreeing with an active hash (feedback `disagree` "
        "or `false_positive`) that move it to `disputed` for an admin to resolve.",
    )
    video_max_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="Longest time, in seconds, spent hashing one video uploaded to the API "
        "(matching hashes every frame, contributing 1 per second); a query video is matched "
        "on the frames hashed so far, a contribution cut short is refused.",
    )
    video_max_frames: int = Field(
        default=9000,
        ge=1,
        le=1_000_000,
        description="Most frames hashed from one video uploaded to the API (9,000 is five "
        "minutes at 30 fps, every frame), and most frames in one vpdq query.",
    )
    import_root: Path | None = Field(
        default=None,
        description="Folder under which `POST /v1/imports` may import server-side paths; "
        "unset disables imports over HTTP (the CLI `hashdb import` still works).",
    )
    import_workers: int = Field(
        default=2, ge=1, le=256, description="Hashing processes of an import started over HTTP."
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="Dask scheduler address (tcp://HOST:PORT) that imports hash on instead "
        "of local processes; its workers must see the same paths.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Key signing the web console's session cookies (at least 32 "
        "characters). Unset: one is generated on first use and kept in "
        "`console-secret-key` in the data directory; set it when several servers "
        "share the database, so that a login on one is valid on all.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value.lower()

    @field_validator("bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, for example 127.0.0.1:5000")
        return value

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / DEFAULT_DB_FILENAME).resolve()}"

    def max_threshold(self, signal_name: str) -> int:
        return {"pdq": self.max_threshold_pdq, "phash": self.max_threshold_phash}.get(
            signal_name, 0
        )


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings from the environment; bad values raise InvalidInput."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "HASHDB_" + str(first["loc"][0]).upper() if first["loc"] else "HASHDB_*"
        raise InvalidInput(f"setting {name}: {first['msg']}", field=name) from None


def settings_markdown() -> str:
    """The configuration table for README.md, straight from the Settings class."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None else f"`{default}`"
        rows.append(f"| `HASHDB_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows) + "\n"
