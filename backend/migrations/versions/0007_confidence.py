"""evaluation items: the expected label set of a multi-label evaluation

Revision ID: 0007_confidence
Revises: 0004_intake
Create Date: 2026-12-04 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_confidence"
down_revision: str | None = "0005_data_protection"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("evaluation_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expected_labels", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluation_item", schema=None) as batch_op:
        batch_op.drop_column("expected_labels")
