"""Every setting of the service, defined once with its default and help text.

Values come from `HASHDB_*` environment variables (for example `HASHDB_DATABASE_URL`)
and are validated when the service or CLI starts, so a typo fails at start-up, not
at the first request. The configuration table in README.md is generated from this
class (`hashdb settings --markdown`) and a test keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hashdb.errors import InvalidInput

DEFAULT_DB_FILENAME = "hashdb.sqlite3"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


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
    snapshot_after_build: bool = Field(
        default=True,
        description="Whether a process that built its indexes from the database (no sound "
        "snapshot in HASHDB_SNAPSHOT_DIR) saves them there at once. Turn it off where "
        "`hashdb worker` writes the snapshots: API workers then never write one; they "
        "serve what they built until the worker's snapshot appears, then map it.",
    )
    snapshot_poll_seconds: float = Field(
        default=5.0,
        ge=0.0,
        le=3600.0,
        description="How often, at most, a serving process checks HASHDB_SNAPSHOT_DIR for "
        "a snapshot newer than the one it mapped (one `stat` per index) and swaps to it "
        "in the background, so its private delta stays small.",
    )
    bind: str = Field(
        default="127.0.0.1:5000", description="Address `hashdb serve` listens on (host:port)."
    )
    workers: int = Field(default=2, ge=1, le=64, description="Gunicorn worker processes.")
    threads: int = Field(default=4, ge=1, le=256, description="Threads per worker.")
    db_pool_size: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="PostgreSQL connections one process keeps in its pool; unset means "
        "HASHDB_THREADS + 2 (a connection per serving thread, one for the match-count "
        "writer and one for an import or the index loader). Every database user of a "
        "process (requests, the heads read, imports, the count writer) draws from this "
        "one pool; a serving worker's listening connection (log-change notifications) "
        "and the readiness probe's short-lived one are its only others. "
        "Size the database for it: servers x HASHDB_WORKERS x (HASHDB_DB_POOL_SIZE + "
        "HASHDB_DB_MAX_OVERFLOW + 2) + the connections of `hashdb import`/CLI processes "
        "(each HASHDB_DB_POOL_SIZE + HASHDB_DB_MAX_OVERFLOW at most) + a reserve for "
        "administration must stay within PostgreSQL's max_connections (100 by default: "
        "3 servers x 4 workers x (4 + 2 + 0 + 2) = 96 is too many beside a worker and a "
        "reserve; with a pool of 4, 72).",
    )
    db_max_overflow: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="PostgreSQL connections a process may open beyond HASHDB_DB_POOL_SIZE "
        "under a burst, closed again when returned; counted in the budget above.",
    )
    db_pool_timeout: float = Field(
        default=10.0,
        gt=0.0,
        le=600.0,
        description="Seconds a request waits for a free pooled database connection; after "
        "that it is answered 503 with Retry-After (never 500).",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0.0,
        le=3600.0,
        description="Seconds a client has to send a request's head (request line and "
        "headers), from its first chance to; a request still incomplete then is answered "
        "408 and its connection closed. Requests are read whole before a thread serves them.",
    )
    body_timeout: float = Field(
        default=10.0,
        gt=0.0,
        le=3600.0,
        description="Seconds a client has to send a request's body once its head came, "
        "beyond the time its length takes at HASHDB_BODY_MIN_RATE; 408 after that.",
    )
    body_min_rate: int = Field(
        default=64 * 1024,
        ge=1,
        description="Slowest rate, in bytes per second, at which a request body is waited "
        "for (see HASHDB_BODY_TIMEOUT).",
    )
    request_buffer_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=64 * 1024,
        description="Most bytes of requests still arriving that one worker process holds, "
        "all connections together; a request that would need more is answered 503.",
    )
    sync_interval: float = Field(
        default=2.0,
        ge=0.0,
        le=3600.0,
        description="Seconds a matcher used on its own (library code, benchmarks) may "
        "go without replaying changes made elsewhere. Lookups through the API, the "
        "console and the CLI read the change log's head first, so a change is seen by "
        "the next request in every worker and on every server.",
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
    max_decoded_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Images whose pixels would take more bytes than this once decoded "
        "(width x height, after JPEG's reduced decode, x the bytes per pixel Pillow keeps: "
        "4 for RGB and RGBA) are refused (422) from their header, before decoding. The "
        "default, also the most allowed (the CLI and imports apply it), admits a "
        "64-megapixel photo and refuses a 10000 x 10000 RGBA picture.",
    )
    rate_limit_per_minute: int = Field(
        default=60_000,
        ge=0,
        description="Requests per minute allowed per API key, in each worker process (0 "
        "disables the limit): 1,000 a second, so a platform can look up each upload as it "
        "comes; the index work they cost is bounded by HASHDB_KEY_COST_PER_SECOND.",
    )
    rate_limit_burst: int = Field(
        default=1_000,
        ge=1,
        description="Requests a key may make at once before it is throttled.",
    )
    max_request_cost: int = Field(
        default=50_000,
        ge=1,
        description="Most index work one match request may cost, in query units (one plain "
        "query at the default threshold is 1; higher thresholds and dihedral forms cost more, "
        "see hashdb/budget.py); a request above it is refused with 413 before any index work.",
    )
    key_cost_per_second: float = Field(
        default=10_000.0,
        ge=0.0,
        description="Query units of index work per second allowed per API key, in each "
        "worker process (0 disables this limit); beyond it requests get 429.",
    )
    key_cost_burst: int | None = Field(
        default=None,
        ge=1,
        description="Query units a key may spend at once before it is throttled; unset means "
        "HASHDB_MAX_REQUEST_COST. At least HASHDB_MAX_REQUEST_COST, so that every admitted "
        "request can be served.",
    )
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error.")
    log_format: LogFormat = Field(
        default=LogFormat.TEXT,
        description="`text`: one readable line per record, for a terminal; `json`: one JSON "
        "object per line (time, level, logger, message, request_id inside a request, exc "
        "info), for a log collector. Applies to hashdb's and gunicorn's loggers and to the "
        "access log (one line per request: method, path, status, duration, bytes, request "
        "id, member, remote address). Keys, tokens and query strings are never logged.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated IP addresses or CIDR networks of the reverse proxies "
        "in front of the API. Only a request whose peer is one of them has its "
        "X-Forwarded-For / -Proto / -Host applied (one hop); any other peer keeps its own "
        "address, whatever it sends. Rate limits and logs use the resulting address. "
        "Empty: no proxy is trusted.",
    )
    pending_matches: bool = Field(
        default=True,
        description="Whether hashes awaiting vetting (`pending`) already match; results "
        "flag them `pending`. On by default so that a crisis is not slowed down by review.",
    )
    hma_compat: bool = Field(
        default=False,
        description="Serve HMA 2.0's lookup and hashing paths (`/m/raw_lookup`, `/m/lookup`, "
        "`/m/compare`, `/h/hash`, `/status`) with HMA's request and answer shapes and "
        "Bearer keys, so an HMA client works against hashdb. Off by default: HMA's answers "
        "cannot flag a pending or disputed hash, so an operator turns it on knowingly.",
    )
    dispute_threshold: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Distinct members disagreeing with an active hash (feedback `disagree` "
        "or `false_positive`) that move it to `disputed` for an admin to resolve.",
    )
    idempotency_hours: int = Field(
        default=24,
        ge=1,
        le=24 * 365,
        description="Hours an `Idempotency-Key` is kept after its first request: a retry "
        "with the same key within them gets the first answer and changes nothing; after "
        "them the key may be used again.",
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
    media_workers: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Sandbox processes per API worker that decode and hash uploads, one "
        "upload at a time each (the API worker never decodes itself); as many as its "
        "threads, so that no request waits for one.",
    )
    media_wait_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="Longest wait, in seconds, for a free sandbox process before an upload "
        "is answered 503.",
    )
    media_memory_mib: int = Field(
        default=1024,
        ge=64,
        le=1_048_576,
        description="Memory, in MiB, one upload's decoding and hashing may allocate in its "
        "sandbox process (beyond what the process holds idle); beyond it the upload is "
        "refused (422).",
    )
    media_image_cpu_seconds: float = Field(
        default=10.0,
        gt=0.0,
        le=3600.0,
        description="CPU time, in seconds, hashing one uploaded image may take (422 beyond).",
    )
    media_image_wall_seconds: float = Field(
        default=20.0,
        gt=0.0,
        le=3600.0,
        description="Wall-clock time, in seconds, hashing one uploaded image may take "
        "(422 beyond; its sandbox process is killed).",
    )
    media_video_cpu_seconds: float = Field(
        default=45.0,
        gt=0.0,
        le=3600.0,
        description="CPU time, in seconds, hashing one uploaded video may take (422 beyond). "
        "HASHDB_VIDEO_MAX_SECONDS stops hashing first, with a partial result.",
    )
    media_video_wall_seconds: float = Field(
        default=60.0,
        gt=0.0,
        le=3600.0,
        description="Wall-clock time, in seconds, hashing one uploaded video may take (422 "
        "beyond; its sandbox process is killed). Video hashing is cut short, with a "
        "partial result, at HASHDB_VIDEO_MAX_SECONDS or at 80% of this, whichever is first.",
    )
    import_root: Path | None = Field(
        default=None,
        description="Folder under which `POST /v1/imports` may import server-side paths; "
        "unset disables imports over HTTP (the CLI `hashdb import` still works).",
    )
    import_workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Hashing processes of an import run by `hashdb worker` (imports started "
        "over HTTP are queued for it).",
    )
    import_lease_seconds: float = Field(
        default=60.0,
        ge=1.0,
        le=3600.0,
        description="How long a worker's claim on an import job lasts without renewal. The "
        "holder's heartbeat renews it every fifth of this while the job runs, however "
        "slow a file is; a job whose holder died is claimable again this long after its "
        "last renewal, and the next worker resumes it, storing nothing twice.",
    )
    worker_poll_seconds: float = Field(
        default=2.0,
        ge=0.05,
        le=3600.0,
        description="How often an idle `hashdb worker` looks for a queued import job.",
    )
    worker_expiry_seconds: float = Field(
        default=60.0,
        ge=0.05,
        le=86400.0,
        description="How often `hashdb worker` retires hashes past their expiry (audited "
        "`hash.expire`). Until then an expired hash already neither matches nor is exported.",
    )
    worker_snapshot_changes: int = Field(
        default=10_000,
        ge=1,
        description="`hashdb worker` saves index snapshots to HASHDB_SNAPSHOT_DIR after "
        "this many change-log entries since its last save (or after "
        "HASHDB_WORKER_SNAPSHOT_SECONDS, whichever comes first).",
    )
    worker_snapshot_seconds: float = Field(
        default=600.0,
        ge=0.05,
        le=86400.0,
        description="Most seconds `hashdb worker` lets changes wait before it saves index "
        "snapshots to HASHDB_SNAPSHOT_DIR (nothing is saved while nothing changed).",
    )
    import_max_unpacked_bytes: int = Field(
        default=256 * 1024**3,
        ge=1,
        description="Most bytes one imported archive (HTTP or `hashdb import`) may unpack "
        "to, counted as they are written; 256 GiB holds a reference collection of about "
        "5,000 videos of 50 MB. Unpacking stops and the import is refused beyond it.",
    )
    import_max_compression_ratio: float = Field(
        default=100.0,
        ge=1.0,
        description="Most bytes an imported archive may unpack to per byte of its own "
        "size. Images and videos are already compressed (a ratio near 1); beyond this "
        "the archive is refused as a decompression bomb.",
    )
    import_max_entries: int = Field(
        default=100_000,
        ge=1,
        description="Most members (files and folders) in one imported archive.",
    )
    import_max_depth: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="Most folder levels of a member's path in an imported archive.",
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

    audit_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Key (at least 32 characters) signing audit-log checkpoints with "
        "HMAC-SHA256: `hashdb audit head` and `GET /v1/audit/head` print one to publish, "
        "`hashdb audit verify --head` checks the log against it. Unset: checkpoints are "
        "unsigned.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value.lower()

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if item:
                try:
                    ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(
                        f"{item!r} is not an IP address or CIDR network, for example "
                        "10.0.0.0/8 or 192.0.2.7"
                    ) from None
        return value

    @property
    def trusted_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """HASHDB_TRUSTED_PROXIES as networks (an address is a network of one)."""
        parts = (part.strip() for part in self.trusted_proxies.split(","))
        return tuple(ip_network(part, strict=False) for part in parts if part)

    @field_validator("bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, for example 127.0.0.1:5000")
        return value

    @model_validator(mode="after")
    def _burst_holds_a_request(self) -> Settings:
        if self.key_cost_burst is not None and self.key_cost_burst < self.max_request_cost:
            raise ValueError(
                f"HASHDB_KEY_COST_BURST ({self.key_cost_burst}) must be at least "
                f"HASHDB_MAX_REQUEST_COST ({self.max_request_cost})"
            )
        return self

    @property
    def key_cost_capacity(self) -> int:
        """Query units a key's bucket holds (`key_cost_burst`, default max_request_cost)."""
        return self.max_request_cost if self.key_cost_burst is None else self.key_cost_burst

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
