"""restore drills: one row per drill (backup, target, timings, checks, outcome)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.String(length=36), nullable=False),
        sa.Column("backup_id", sa.String(length=40), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("restore_s", sa.Float(), nullable=True),
        sa.Column("recovery_s", sa.Float(), nullable=True),
        sa.Column("total_s", sa.Float(), nullable=True),
        sa.Column("wal_segments", sa.Integer(), nullable=True),
        sa.Column("bytes_restored", sa.BigInteger(), nullable=True),
        sa.Column("reached_lsn", sa.String(length=24), nullable=True),
        sa.Column("checks", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("scratch", sa.Text(), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_drills_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drills")),
    )
    with op.batch_alter_table("drills", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drills_cluster_id_started_at"),
            ["cluster_id", "started_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_drills_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("drills", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drills_status"))
        batch_op.drop_index(batch_op.f("ix_drills_cluster_id_started_at"))
    op.drop_table("drills")
