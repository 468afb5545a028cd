"""documents: a rendition (converted PDF or readable text) beside the uploaded file

Office files are read from the PDF LibreOffice makes of them, e-mails and HTML pages from their
readable text; the upload itself stays as it came.

Revision ID: 0004_intake
Revises: 0003
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004_intake"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rendition_path", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("rendition_type", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        # Conversions left unfinished are found by status at start-up.
        batch_op.create_index("ix_document_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.drop_index("ix_document_status")
        batch_op.drop_column("rendition_type")
        batch_op.drop_column("rendition_path")
