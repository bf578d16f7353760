"""retention: the policy (fleet default and per-cluster overrides) and backup holds

Backups an expire run is deleting are marked ``expiring`` in backups.status (a string
column: no schema change). A later migration (the scheduler's) follows as 0006.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_policies",
        sa.Column("scope", sa.String(length=36), nullable=False),
        sa.Column("cluster_id", sa.String(length=36), nullable=True),
        sa.Column("keep_last", sa.Integer(), nullable=True),
        sa.Column("recovery_window_s", sa.BigInteger(), nullable=True),
        sa.Column("min_backups", sa.Integer(), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_retention_policies_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_retention_policies")),
    )
    op.create_table(
        "backup_holds",
        sa.Column("backup_id", sa.String(length=40), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["backup_id"], ["backups.id"], name=op.f("fk_backup_holds_backup_id_backups")
        ),
        sa.PrimaryKeyConstraint("backup_id", name=op.f("pk_backup_holds")),
    )


def downgrade() -> None:
    op.drop_table("backup_holds")
    op.drop_table("retention_policies")
