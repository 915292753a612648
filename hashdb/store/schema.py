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
