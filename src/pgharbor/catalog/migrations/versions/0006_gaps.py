"""WAL verification: gaps (pending, lost, resolved; acknowledged) and where the content
verification of each cluster got to. A backup whose own WAL has a lost segment is marked
``unusable`` in backups.status (a string column: no schema change), the reason in error.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wal_gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.String(length=36), nullable=False),
        sa.Column("timeline", sa.Integer(), nullable=False),
        sa.Column("first_segment", sa.String(length=24), nullable=False),
        sa.Column("last_segment", sa.String(length=24), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lost_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_by", sa.String(length=128), nullable=True),
        sa.Column("ack_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_wal_gaps_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wal_gaps")),
    )
    op.create_index(
        op.f("ix_wal_gaps_cluster_id_state"), "wal_gaps", ["cluster_id", "state"], unique=False
    )
    op.create_table(
        "verify_state",
        sa.Column("cluster_id", sa.String(length=36), nullable=False),
        sa.Column("cursor", sa.String(length=64), server_default="", nullable=False),
        sa.Column("backup_cursor", sa.String(length=40), server_default="", nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_verify_state_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("cluster_id", name=op.f("pk_verify_state")),
    )


def downgrade() -> None:
    op.drop_table("verify_state")
    op.drop_index(op.f("ix_wal_gaps_cluster_id_state"), table_name="wal_gaps")
    op.drop_table("wal_gaps")
