"""the Ladder: a competition's public scoring and its step

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
    """Apply this revision."""
    # plain ADD COLUMNs, as in 0002: existing competitions keep the plain board
    op.add_column(
        "competitions",
        sa.Column("public_scoring", sa.String(16), nullable=False, server_default="plain"),
    )
    op.add_column(
        "competitions", sa.Column("ladder_step", sa.Float(), nullable=False, server_default="0.01")
    )


def downgrade() -> None:
    """Revert this revision."""
    for column in ("ladder_step", "public_scoring"):
        op.drop_column("competitions", column)
