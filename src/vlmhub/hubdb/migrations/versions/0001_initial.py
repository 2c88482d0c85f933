"""The first hub schema: catalog, submissions, label jobs and artifacts, graphs, accounts, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


_PG_APPEND_ONLY = """
CREATE FUNCTION vlmhub_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION vlmhub_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION vlmhub_audit_append_only();
"""


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", _enum("role", "reader", "submitter", "admin"), nullable=False),
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.Column("note", sa.String(200), nullable=False),
    )
    op.create_index("ix_tokens_user_id", "tokens", ["user_id"])
    op.create_table(
        "models",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("source", sa.String(2000), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("architecture", sa.String(200), nullable=True),
        sa.Column("params_m", sa.Float(), nullable=True),
        sa.Column("gflops", sa.Float(), nullable=True),
        sa.Column("licence", sa.String(200), nullable=True),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("state", _enum("model_state", "submitted", "checking", "queued", "labeling", "ready", "rejected"),
                  nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index("ix_models_owner_id", "models", ["owner_id"])
    op.create_index("ix_models_state", "models", ["state"])
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.String(100), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("submitter_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("package_sha256", sa.String(64), nullable=False),
        sa.Column("package_path", sa.String(1000), nullable=True),
        sa.Column("package_bytes", sa.BigInteger(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("status", _enum("submission_status", "open", "withdrawn"), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("withdrawn_at", _TS, nullable=True),
    )
    op.create_index("ix_submissions_model_id", "submissions", ["model_id"])
    op.create_index("ix_submissions_submitter_id", "submissions", ["submitter_id"])
    op.create_index("ix_submissions_package_sha256", "submissions", ["package_sha256"])
    op.create_table(
        "label_artifacts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.String(100), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("dtype", sa.String(32), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("graph_version", sa.String(64), nullable=True),
        sa.Column("label_set_version", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_label_artifacts_model_id", "label_artifacts", ["model_id"])
    op.create_index("ix_label_artifacts_path", "label_artifacts", ["path"])
    op.create_index("ix_label_artifacts_sha256", "label_artifacts", ["sha256"])
    op.create_table(
        "label_jobs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.String(100), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("graph_version", sa.String(64), nullable=False),
        sa.Column("label_set_version", sa.String(64), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("shard_key", sa.String(64), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=False),
        sa.Column("status", _enum("job_status", "queued", "leased", "done", "failed"), nullable=False),
        sa.Column("lease_holder", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", _TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("artifact_id", sa.Integer(), sa.ForeignKey("label_artifacts.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.UniqueConstraint("model_id", "graph_version", "label_set_version", "shard_key", name="uq_label_jobs_shard"),
    )
    op.create_index("ix_label_jobs_model_id", "label_jobs", ["model_id"])
    op.create_index("ix_label_jobs_claim", "label_jobs", ["status", "lease_expires_at"])
    op.create_table(
        "graph_versions",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(100), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "hub_meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_APPEND_ONLY)
    else:
        for what in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{what.lower()} BEFORE {what} ON audit_log "
                       f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {what} refused'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS vlmhub_audit_append_only()")
    for table in ("hub_meta", "audit_log", "graph_versions", "label_jobs", "label_artifacts", "submissions", "models",
                  "tokens", "users"):
        op.drop_table(table)
