"""The tables, as SQLAlchemy Core objects shared by SQLite and PostgreSQL.

The database is the single source of truth; the in-memory index is derived from
it. Hash values are raw bytes (`LargeBinary`), never hex. Alembic migrations in
`migrations/versions` create these tables; a test checks that the migrated
database and this module agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# BIGINT primary keys autoincrement on PostgreSQL; SQLite only does so for INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

members = Table(
    "members",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("trusted", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("member_id", BigInteger, ForeignKey("members.id"), nullable=False, index=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# One row per change to who may call: a key revoked, a member disabled, keys set
# to expire by a rotation. API workers cache authenticated keys and drop the cache
# when this log moves, which they check on every request (hashdb/store/heads.py).
auth_changes = Table(
    "auth_changes",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("member_id", BigInteger, ForeignKey("members.id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Console logins. The signed session cookie carries a random token; this row (keyed
# by the token's SHA-256) is what makes it valid, so logging out, in any worker or on
# any server, ends it by deleting the row, and a copied cookie is worthless after.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("member_id", BigInteger, ForeignKey("members.id"), nullable=False),
    Column("key_id", BigInteger, ForeignKey("api_keys.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

hashes = Table(
    "hashes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("signal_type", String(16), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("quality", SmallInteger, nullable=True),
    Column("labels", JSON, nullable=False),
    Column("contributor_id", BigInteger, ForeignKey("members.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reference", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("signal_type", "value", "contributor_id", name="uq_hash_per_contributor"),
    Index("ix_hashes_signal_status", "signal_type", "status"),
    Index("ix_hashes_value", "signal_type", "value"),
)

# Monotonic log of every change to a hash's matchability. The index replays it to
# stay current; the export feed (later) serves it to members who match locally.
changes = Table(
    "changes",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("hash_id", BigInteger, nullable=False, index=True),
    Column("op", String(8), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# A video is one `hashes` row of signal type `vpdq` (its value identifies the frame
# list); these tables hold what only a video has: its shape and its sampled frames.
videos = Table(
    "videos",
    metadata,
    Column("hash_id", BigInteger, ForeignKey("hashes.id"), primary_key=True),
    Column("duration", Float, nullable=False),
    Column("fps", Float, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("low_quality_frames", Integer, nullable=False),
)

video_frames = Table(
    "video_frames",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("hash_id", BigInteger, ForeignKey("hashes.id"), nullable=False, index=True),
    Column("idx", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("quality", SmallInteger, nullable=False),
)

# Keyframes (migration 0014): the keypoint set (wire form, hashdb/keypoints/codec.py)
# of a stored video's frame every few seconds, written with the video, never changed.
video_keyframes = Table(
    "video_keyframes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("hash_id", BigInteger, ForeignKey("hashes.id"), nullable=False, index=True),
    Column("ts", Float, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# Bulk imports: a job per run over a folder or archive, a row per file, so that a
# killed import resumes where it stopped and never adds a file twice.
import_jobs = Table(
    "import_jobs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("member_id", BigInteger, ForeignKey("members.id"), nullable=False),
    Column("source", Text, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # migration 0010: the worker that holds the job, and until when (hashdb.worker)
    Column("claimed_by", String(200), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Index("ix_import_jobs_status", "status", "lease_until"),
)

import_files = Table(
    "import_files",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("job_id", BigInteger, ForeignKey("import_jobs.id"), nullable=False),
    Column("path", Text, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("reference", Text, nullable=True),
    Column("notes", Text, nullable=True),
    Column("sha256", LargeBinary, nullable=True),
    Column("status", String(16), nullable=False),
    Column("kind", String(8), nullable=True),
    Column("error", Text, nullable=True),
    Column("hash_ids", JSON, nullable=True),
    Column("frames", Integer, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("job_id", "path", name="uq_import_file_path"),
    Index("ix_import_files_job_status", "job_id", "status"),
)

# ---- consortium workflow (migration 0002): labels, vetting history, incidents,
# feedback, outcomes, match counts, the audit chain and sync state. The rules that
# use these tables live in hashdb/consortium/; hashes gained `expires_at` (never
# matched after it) and `incident_id` (contributed under a crisis incident).
hashes.append_column(Column("expires_at", DateTime(timezone=True), nullable=True))
hashes.append_column(Column("incident_id", BigInteger, nullable=True))

# Stored variants (migration 0007; 0005 kept them as `hashes` rows): the PDQ of a
# contributed image's content region and crop windows (hashdb/variants.py), so that
# a re-upload showing less than the stored picture still lands near one of them. A
# variant is part of its image, never a hash of its own: it has no id, no status
# and no history, so it cannot be addressed, listed, exported, counted or given
# feedback; it matches exactly when its image does (the index adds and drops it
# with the image's own change-log entries). One row per image and kind.
hash_variants = Table(
    "hash_variants",
    metadata,
    Column("hash_id", BigInteger, ForeignKey("hashes.id"), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("quality", SmallInteger, nullable=True),
)

# Keypoint sets (migration 0013): the wire form (hashdb/keypoints/codec.py) of a
# `keypoints` row, whose `value` is its SHA-256 (a set is too large for the value
# indexes). Written with the row, never changed: a different set is another row.
keypoint_sets = Table(
    "keypoint_sets",
    metadata,
    Column("hash_id", BigInteger, ForeignKey("hashes.id"), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# The label taxonomy; `value_kind` says whether a label takes a `:value` suffix
# ("none", "optional", "required"), e.g. `terrorist_entity:<name>`.
labels = Table(
    "labels",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False),
    Column("value_kind", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("deprecated_at", DateTime(timezone=True), nullable=True),
)

# Every status change of a hash: who, when, why. `from_status` is NULL on creation.
hash_transitions = Table(
    "hash_transitions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("hash_id", BigInteger, ForeignKey("hashes.id"), nullable=False, index=True),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("actor_id", BigInteger, ForeignKey("members.id"), nullable=True),
    Column("reason", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_hash_transitions_to_at", "to_status", "at"),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("opened_by", BigInteger, ForeignKey("members.id"), nullable=False),
    Column("closed_by", BigInteger, ForeignKey("members.id"), nullable=True),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("hash_id", BigInteger, ForeignKey("hashes.id"), nullable=False, index=True),
    Column("member_id", BigInteger, ForeignKey("members.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("reason", String(32), nullable=True),
    Column("content_signal_type", String(16), nullable=True),
    Column("content_value", LargeBinary, nullable=True),
    Column("note", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("hash_id", BigInteger, ForeignKey("hashes.id"), nullable=False, index=True),
    Column("member_id", BigInteger, ForeignKey("members.id"), nullable=False),
    Column("action", String(32), nullable=False),
    Column("uploaded_at", DateTime(timezone=True), nullable=False),
    Column("matched_at", DateTime(timezone=True), nullable=False),
    Column("actioned_at", DateTime(timezone=True), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Matches answered, counted per hour, member and hash (never the members' content).
match_counts = Table(
    "match_counts",
    metadata,
    Column("bucket", DateTime(timezone=True), primary_key=True),
    Column("member_id", BigInteger, primary_key=True),
    Column("hash_id", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# Append-only, hash-chained (see hashdb/consortium/audit.py for the chain format).
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor_id", BigInteger, nullable=True),
    Column("key_id", BigInteger, nullable=True),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=False),
    Column("request_id", String(100), nullable=True),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# A local copy following a central hashdb: its cursor, and which local row each
# remote hash became (several remote rows may share one local row).
sync_sources = Table(
    "sync_sources",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("url", String(500), nullable=False, unique=True),
    Column("member_id", BigInteger, ForeignKey("members.id"), nullable=False),
    Column("cursor", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

synced_hashes = Table(
    "synced_hashes",
    metadata,
    Column("source_id", BigInteger, ForeignKey("sync_sources.id"), primary_key=True),
    Column("remote_id", BigInteger, primary_key=True),
    Column("hash_id", BigInteger, ForeignKey("hashes.id"), nullable=False, index=True),
    Column("live", Boolean, nullable=False),
)

# The feed epoch (migration 0008): one row, a random id of this database's history,
# made when the schema is created. A feed cursor (a change-log `seq`) means something
# only within one history: a restored backup or a promoted standby reuses sequence
# numbers, and gets a new epoch (`consortium.feed.new_epoch`), so followers whose
# cursor belongs to another epoch resync from zero. `sync_sources.epoch` is the
# epoch of the central a local copy's cursor was read in.
feed_epoch = Table(
    "feed_epoch",
    metadata,
    Column("epoch", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
sync_sources.append_column(Column("epoch", String(36), nullable=True))
# Migration 0011: the central's status of each synced hash (`active` or `disputed`
# while live; null for mappings synced before it, read as `active`).
synced_hashes.append_column(Column("status", String(16), nullable=True))

# Idempotency keys (migration 0009): the first answer to each (API key, Idempotency-Key)
# with its request's fingerprint (method, path, SHA-256 of the body), so that a retry
# is answered from here and changes nothing (hashdb/consortium/idempotency.py). A row
# with no `status` is a request still running (its claim is `token`); rows are purged
# once past `expires_at` (HASHDB_IDEMPOTENCY_HOURS after the first request).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key_id", BigInteger, ForeignKey("api_keys.id"), primary_key=True),
    Column("idempotency_key", String(200), primary_key=True),
    Column("method", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("body_sha256", LargeBinary, nullable=False),
    Column("token", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("status", SmallInteger, nullable=True),
    Column("body", Text, nullable=True),
    Column("headers", JSON, nullable=True),
)
