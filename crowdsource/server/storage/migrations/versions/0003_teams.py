"""teams: a team per competition, its members, and the host's team size limit

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import crowdsource.server.storage.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    # a plain ADD COLUMN (constant default): a batch copy of `competitions` would drop a
    # table that other tables' foreign keys point at
    op.add_column(
        "competitions",
        sa.Column("max_team_size", sa.Integer(), nullable=False, server_default="5"),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("competition_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("captain_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("created_at", crowdsource.server.storage.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["captain_id"], ["participants.id"]),
        sa.ForeignKeyConstraint(["competition_id"], ["competitions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
        sa.UniqueConstraint("competition_id", "captain_id"),
        sa.UniqueConstraint("competition_id", "name"),
    )
    op.create_table(
        "team_members",
        sa.Column("competition_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("joined_at", crowdsource.server.storage.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["competition_id"], ["competitions.id"]),
        sa.ForeignKeyConstraint(["participant_id"], ["participants.id"]),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.PrimaryKeyConstraint("competition_id", "participant_id"),
    )
    op.create_index("ix_team_members_team_id", "team_members", ["team_id"])


def downgrade() -> None:
    """Undo this revision."""
    op.drop_index("ix_team_members_team_id", table_name="team_members")
    op.drop_table("team_members")
    op.drop_table("teams")
    with op.batch_alter_table("competitions") as batch:
        batch.drop_column("max_team_size")
