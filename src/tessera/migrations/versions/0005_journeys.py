"""Journeys and campaigns (营销活动 / 流程画布): definitions, versions, per-person state, outbox, channels.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("secret", sa.String(200), nullable=True),
        sa.Column("receipt_token", sa.String(64), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "channel_opt_outs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("profile_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("profile_id", "channel"),
    )
    op.create_table(
        "journeys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("name_en", sa.String(200), nullable=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("draft", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("next_run_at", _TS, nullable=True),
        sa.Column("last_run_at", _TS, nullable=True),
    )
    op.create_table(
        "journey_versions",
        sa.Column("journey_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("published_at", _TS, nullable=False),
    )
    op.create_table(
        "journey_runs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("scheduled_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("members", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("entered", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("skipped", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.UniqueConstraint("journey_id", "scheduled_at"),
    )
    op.create_table(
        "journey_instances",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("profile_id", sa.String(64), nullable=False),
        sa.Column("profile_idx", sa.Integer, nullable=False),
        sa.Column("entry_no", sa.Integer, nullable=False),
        sa.Column("trigger_ref", sa.String(100), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", _TS, nullable=True),
        sa.Column("wait_event", sa.String(200), nullable=True),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("entered_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("goal_until", _TS, nullable=True),
        sa.Column("converted_at", _TS, nullable=True),
        sa.UniqueConstraint("journey_id", "profile_id", "trigger_ref"),
    )
    op.create_index("ix_journey_instances_due", "journey_instances", ["status", "due_at"])
    op.create_index("ix_journey_instances_wait", "journey_instances", ["wait_event", "profile_id"])
    op.create_index("ix_journey_instances_goal", "journey_instances", ["profile_id", "goal_until"])
    op.create_table(
        "journey_visits",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("handle", sa.String(40), nullable=False),
        sa.Column("instance_id", sa.BigInteger, nullable=False),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_journey_visits_node", "journey_visits", ["journey_id", "node_id"])
    op.create_table(
        "journey_outbox",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.BigInteger, nullable=True),
        sa.Column("profile_id", sa.String(64), nullable=False),
        sa.Column("profile_idx", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(100), nullable=True),
        sa.Column("sent_kind", sa.String(20), nullable=True),
        sa.Column("address", sa.String(500), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(50), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("provider_id", sa.String(200), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("sent_at", _TS, nullable=True),
        sa.Column("delivered_at", _TS, nullable=True),
    )
    op.create_index("ix_journey_outbox_due", "journey_outbox", ["status", "next_attempt_at"])
    op.create_index("ix_journey_outbox_caps", "journey_outbox", ["profile_id", "kind", "sent_at"])
    op.create_index("ix_journey_outbox_node", "journey_outbox", ["journey_id", "node_id"])
    op.create_table(
        "journey_rewards",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.BigInteger, nullable=True),
        sa.Column("profile_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("template", sa.String(100), nullable=True),
        sa.Column("amount", sa.BigInteger, nullable=True),
        sa.Column("code", sa.String(64), nullable=True, unique=True),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("valid_until", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
    )


def downgrade() -> None:
    for name in ("journey_rewards", "journey_outbox", "journey_visits", "journey_instances", "journey_runs",
                 "journey_versions", "journeys", "channel_opt_outs", "channels"):  # fmt: skip
        op.drop_table(name)
