"""final submissions and host tools

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    # plain ADD COLUMNs (constant defaults): a batch copy of `competitions` would drop a table
    # that other tables' foreign keys point at
    op.add_column(
        "competitions",
        sa.Column("final_submissions", sa.Integer(), nullable=False, server_default="2"),
    )
    op.add_column(
        "competitions",
        sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "competitions",
        sa.Column("disqualified", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    )
    op.add_column(
        "competitions", sa.Column("revision", sa.Integer(), nullable=False, server_default="0")
    )
    # the private board is read from final submissions now, not kept as entries
    op.execute("DELETE FROM entries WHERE board = 'private'")
    op.create_table(
        "finals",
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("competition_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["competition_id"], ["competitions.id"]),
        sa.ForeignKeyConstraint(["participant_id"], ["participants.id"]),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"]),
        sa.PrimaryKeyConstraint("submission_id"),
    )
    with op.batch_alter_table("finals", schema=None) as batch_op:
        batch_op.create_index("ix_finals_owner", ["competition_id", "participant_id"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("finals", schema=None) as batch_op:
        batch_op.drop_index("ix_finals_owner")
    op.drop_table("finals")
    for column in ("revision", "disqualified", "archived", "final_submissions"):
        op.drop_column("competitions", column)
