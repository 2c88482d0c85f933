"""Graph growth: a graph version may name the version it grew from (``graph_versions.base_version``).

A grown graph is labeled only where it differs from its base (new nodes, nodes whose sample images changed);
label jobs of a version with a base embed only the images and captions the base lacks. The version becomes
current once every ready model is labeled on it (docs/hub.md, "Growing the graph").

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("graph_versions") as batch:
        batch.add_column(sa.Column("base_version", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("graph_versions") as batch:
        batch.drop_column("base_version")
