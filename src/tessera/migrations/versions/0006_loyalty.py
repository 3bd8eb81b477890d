"""Loyalty (会员运营 / CLM): coupon templates and coupons, the points ledger, member tiers.

Money is stored in minor units (分, cents) as integers: exact on every store. The points ledger is
append-only; a balance is the sum of its entries (``points_accounts`` caches it, updated in the
same transaction as each entry, with a conditional update that refuses an overdraft).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "coupon_templates",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("campaign", sa.String(100), nullable=True, index=True),
        sa.Column("stock", sa.BigInteger, nullable=True),
        sa.Column("issued", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "coupons",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(40), nullable=False, unique=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("profile_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("valid_from", _TS, nullable=False),
        sa.Column("valid_until", _TS, nullable=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("source_ref", sa.String(200), nullable=True),
        sa.Column("campaign", sa.String(100), nullable=True),
        sa.Column("redeemed_at", _TS, nullable=True),
        sa.Column("order_id", sa.String(200), nullable=True),
        sa.Column("order_amount", sa.BigInteger, nullable=True),
        sa.Column("discount", sa.BigInteger, nullable=True),
        sa.Column("redeem_channel", sa.String(50), nullable=True),
        sa.Column("expired_at", _TS, nullable=True),
        sa.Column("merged_from", sa.String(64), nullable=True),
    )
    op.create_index("ix_coupons_owner", "coupons", ["profile_id", "template"])
    op.create_index("ix_coupons_template", "coupons", ["template", "status"])
    op.create_index("ix_coupons_expiry", "coupons", ["status", "valid_until"])
    op.create_table(
        "points_ledger",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("profile_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("source_ref", sa.String(200), nullable=True),
        sa.Column("campaign", sa.String(100), nullable=True),
        sa.Column("order_id", sa.String(200), nullable=True),
        sa.Column("lot_id", sa.BigInteger, nullable=True),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    # No index on expires_at: the expiry job runs once a day and reads the ledger once; an index
    # would cost every order's accrual (~12 % of 1M orders' processing, measured).
    op.create_table(
        "points_accounts",
        sa.Column("profile_id", sa.String(64), primary_key=True),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.Column("earned", sa.BigInteger, nullable=False),
        sa.Column("spent", sa.BigInteger, nullable=False),
        sa.Column("expired", sa.BigInteger, nullable=False),
        sa.Column("adjusted", sa.BigInteger, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "loyalty_orders",
        sa.Column("order_id", sa.String(200), primary_key=True),
        sa.Column("profile_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("channel", sa.String(50), nullable=True),
        sa.Column("ordered_at", _TS, nullable=False),
        sa.Column("coupon_code", sa.String(40), nullable=True),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    # a member's orders in a window (tier spend): one index serves both the member and the window
    op.create_index("ix_loyalty_orders_member", "loyalty_orders", ["profile_id", "ordered_at"])
    op.create_table(
        "member_tiers",
        sa.Column("profile_id", sa.String(64), primary_key=True),
        sa.Column("tier", sa.String(64), nullable=False, index=True),
        sa.Column("since", _TS, nullable=False),
        sa.Column("metric", sa.BigInteger, nullable=False),
        sa.Column("evaluated_at", _TS, nullable=False),
    )
    op.create_table(
        "tier_changes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("profile_id", sa.String(64), nullable=False, index=True),
        sa.Column("from_tier", sa.String(64), nullable=True),
        sa.Column("to_tier", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("metric", sa.BigInteger, nullable=False),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_table(
        "loyalty_config",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "loyalty_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("profile_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("properties", sa.JSON, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("published_at", _TS, nullable=True, index=True),
    )
    op.create_table(
        "loyalty_cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("at", _TS, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "loyalty_rejections",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("profile_id", sa.String(64), nullable=True),
        sa.Column("code", sa.String(40), nullable=True),
        sa.Column("order_id", sa.String(200), nullable=True),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("at", _TS, nullable=False),
    )


def downgrade() -> None:
    for name in ("loyalty_rejections", "loyalty_cursors", "loyalty_events", "loyalty_config", "tier_changes",
                 "member_tiers", "loyalty_orders", "points_accounts", "points_ledger", "coupons",
                 "coupon_templates"):  # fmt: skip
        op.drop_table(name)
