"""human review: review policy per classifier version, review status and decision on results,
examples from reviews, the example set a trained model was trained on

Revision ID: 0006_review
Revises: 0004_intake
Create Date: 2026-12-04 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006_review"
down_revision: str | None = "0009_vision"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("classifier_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_policy", sa.JSON(), nullable=True))
    with op.batch_alter_table("classification", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("review_status", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(sa.Column("review", sa.JSON(), nullable=True))
        batch_op.create_index("ix_classification_review_status", ["review_status"], unique=False)
    with op.batch_alter_table("example", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "source", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="api"
            )
        )
        batch_op.add_column(
            sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    with op.batch_alter_table("trained_model", schema=None) as batch_op:
        batch_op.add_column(sa.Column("example_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trained_model", schema=None) as batch_op:
        batch_op.drop_column("example_ids")
    with op.batch_alter_table("example", schema=None) as batch_op:
        batch_op.drop_column("request_id")
        batch_op.drop_column("source")
    with op.batch_alter_table("classification", schema=None) as batch_op:
        batch_op.drop_index("ix_classification_review_status")
        batch_op.drop_column("review")
        batch_op.drop_column("review_status")
    with op.batch_alter_table("classifier_version", schema=None) as batch_op:
        batch_op.drop_column("review_policy")
