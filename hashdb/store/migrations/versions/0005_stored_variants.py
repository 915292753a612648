"""Stored variants: PDQ rows derived from a contributed image's own PDQ row.

A contributed image stores, besides its own hashes, the PDQ of its content region
and of crop windows (hashdb/variants.py), each as a `hashes` row pointing at the
image's PDQ row (`derived_from`) and naming what it is (`variant`). Existing rows
are parents (both columns NULL).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with a REFERENCES clause in place (its default being
        # NULL), but Alembic would only add the constraint by copying the table.
        op.execute("ALTER TABLE hashes ADD COLUMN derived_from BIGINT REFERENCES hashes (id)")
    else:
        op.add_column(
            "hashes",
            sa.Column(
                "derived_from",
                sa.BigInteger,
                sa.ForeignKey("hashes.id", name="fk_hashes_derived_from"),
                nullable=True,
            ),
        )
    op.add_column("hashes", sa.Column("variant", sa.String(32), nullable=True))
    op.create_index("ix_hashes_derived_from", "hashes", ["derived_from"])


def downgrade() -> None:
    op.drop_index("ix_hashes_derived_from", table_name="hashes")
    with op.batch_alter_table("hashes") as batch:
        batch.drop_column("variant")
        batch.drop_column("derived_from")
