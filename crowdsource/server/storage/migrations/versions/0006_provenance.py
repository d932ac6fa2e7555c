"""provenance: each submission's function (name and code digest) and where it came from

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    # plain nullable ADD COLUMNs: submissions made before have no provenance
    op.add_column("submissions", sa.Column("function_name", sa.String(200), nullable=True))
    op.add_column("submissions", sa.Column("function_digest", sa.String(64), nullable=True))
    op.add_column("submissions", sa.Column("provenance", sa.JSON(), nullable=True))
    # the standings read a participant's functions, round by round
    op.create_index("ix_submissions_function", "submissions", ["participant_id", "function_name"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_submissions_function", table_name="submissions")
    with op.batch_alter_table("submissions") as batch:
        for column in ("provenance", "function_digest", "function_name"):
            batch.drop_column(column)
