"""data protection: scoped and expiring keys, retention days, purge records

Revision ID: 0005_data_protection
Revises: 0004_intake
Create Date: 2026-12-04 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import backend.models

revision: str = "0005_data_protection"
down_revision: str | None = "0004_intake"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("classifier_ids", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("expires_at", backend.models.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("classifier", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "purge_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("document_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("children", sa.Integer(), nullable=False),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("created_at", backend.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("purge_record", schema=None) as batch_op:
        batch_op.create_index("ix_purge_record_account_id", ["account_id"], unique=False)
        batch_op.create_index("ix_purge_record_document_id", ["document_id"], unique=False)
        batch_op.create_index("ix_purge_record_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_table("purge_record")
    with op.batch_alter_table("classifier", schema=None) as batch_op:
        batch_op.drop_column("retention_days")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("retention_days")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("classifier_ids")
        batch_op.drop_column("scopes")
