"""restore points and how far archived WAL was scanned for them

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "restore_points",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("lsn", sa.String(length=24), nullable=False),
        sa.Column("timeline", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_restore_points_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restore_points")),
        sa.UniqueConstraint(
            "cluster_id", "timeline", "lsn", name=op.f("uq_restore_points_cluster_id_timeline_lsn")
        ),
    )
    with op.batch_alter_table("restore_points", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_restore_points_cluster_id_name"), ["cluster_id", "name"], unique=False
        )
    op.create_table(
        "wal_scans",
        sa.Column("cluster_id", sa.String(length=36), nullable=False),
        sa.Column("timeline", sa.Integer(), nullable=False),
        sa.Column("scanned_to", sa.String(length=64), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_wal_scans_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("cluster_id", "timeline", name=op.f("pk_wal_scans")),
    )


def downgrade() -> None:
    op.drop_table("wal_scans")
    with op.batch_alter_table("restore_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_restore_points_cluster_id_name"))
    op.drop_table("restore_points")
