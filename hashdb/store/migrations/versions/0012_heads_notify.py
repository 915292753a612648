"""PostgreSQL tells serving workers when a log head moves, so they need not ask.

Every API worker used to read the heads of the hash and auth change logs and the
feed epoch on every request (hashdb/store/heads.py). On PostgreSQL, statement-level
triggers now send a notification on the channel `hashdb_heads` whenever
`changes`, `auth_changes` or `feed_epoch` is written (insert, update, delete or
truncate); notifications are
delivered at commit, so a listener learns of a change no earlier than it is
visible. A worker that listens reads the heads only after a notification (or when
its listening connection is down), see `hashdb.store.heads`. SQLite has no such
channel and keeps reading the heads per request: nothing changes there.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

CHANNEL = "hashdb_heads"
# Any write, not only appends: a log cut back (a restore in place, a repair) must
# reach the workers as surely as a new entry.
_WATCHED = ("changes", "auth_changes", "feed_epoch")


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION hashdb_heads_notify() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$"
    )
    for table in _WATCHED:
        op.execute(
            f"CREATE TRIGGER {table}_heads_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION hashdb_heads_notify()"
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in _WATCHED:
        op.execute(f"DROP TRIGGER {table}_heads_notify ON {table}")
    op.execute("DROP FUNCTION hashdb_heads_notify()")
