"""vision input: pages whose OCR waits for a text request, image tokens of a result

Revision ID: 0009_vision
Revises: 0004_intake
Create Date: 2026-12-04 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_vision"
down_revision: str | None = "0007_confidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("page", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ocr_pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("classification", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("image_tokens", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("image_pages", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("classification", schema=None) as batch_op:
        batch_op.drop_column("image_pages")
        batch_op.drop_column("image_tokens")
    with op.batch_alter_table("page", schema=None) as batch_op:
        batch_op.drop_column("ocr_pending")
