"""Tables of the operational store (SQLAlchemy 2). Changes go through Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class SourceRow(Base):
    """A source (数据源): one channel — app, web, mini-program, Tmall … — with its own write key."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(50))
    write_key: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiTokenRow(Base):
    """An admin / API token. Only its SHA-256 is kept; the token is shown once, at creation."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    token_sha256: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SettingDocRow(Base):
    """A named settings document (JSON) edited through the API, e.g. the identity rules."""

    __tablename__ = "setting_docs"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    body: Mapped[dict[str, object]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AudienceRow(Base):
    """An audience (群组 / 人群包): static, dynamic or imported; ``definition`` is a condition."""

    __tablename__ = "audiences"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    name_en: Mapped[str | None] = mapped_column(String(200), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    kind: Mapped[str] = mapped_column(String(20))
    definition: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    schedule: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    next_refresh_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    member_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DestinationRow(Base):
    """Where audiences are pushed: a webhook URL and its signing secret (``whsec_…``)."""

    __tablename__ = "destinations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PushRow(Base):
    """One push of an audience to a destination, in signed batches."""

    __tablename__ = "pushes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    audience_id: Mapped[str] = mapped_column(String(64), index=True)
    destination_id: Mapped[str] = mapped_column(String(64))
    columns: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    batches: Mapped[int] = mapped_column(Integer)
    batches_failed: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class DeliveryDeadLetterRow(Base):
    """An outbound payload given up on after its retries (or refused with a terminal 4xx)."""

    __tablename__ = "delivery_dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(20))
    reference: Mapped[str] = mapped_column(String(200), index=True)
    destination: Mapped[str] = mapped_column(String(2000))
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TagCategoryRow(Base):
    """A category of the tag catalogue tree (标签分类)."""

    __tablename__ = "tag_categories"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    parent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    position: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TagDefinitionRow(Base):
    """A tag's definition (``body`` = the validated TagDraft as JSON); the columns repeat what is queried."""

    __tablename__ = "tag_definitions"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[dict[str, object]] = mapped_column(JSON)
    category: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


_BigId = BigInteger().with_variant(Integer, "sqlite")


class ChannelRow(Base):
    """A configured channel (渠道): SMTP server, SMS provider, push / WeChat / webhook endpoint."""

    __tablename__ = "channels"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict[str, object]] = mapped_column(JSON)
    secret: Mapped[str | None] = mapped_column(String(200), nullable=True)
    receipt_token: Mapped[str] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChannelOptOutRow(Base):
    """A person's opt-out of a channel (退订): unsubscribe link, "回复TD退订", the API."""

    __tablename__ = "channel_opt_outs"
    __table_args__ = (UniqueConstraint("profile_id", "channel"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    profile_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JourneyRow(Base):
    """A journey (客户旅程) or single campaign (一次性活动); ``draft`` is the definition being edited."""

    __tablename__ = "journeys"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    name_en: Mapped[str | None] = mapped_column(String(200), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    draft: Mapped[dict[str, object]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JourneyVersionRow(Base):
    """A published version; people finish on the version they entered."""

    __tablename__ = "journey_versions"
    journey_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, object]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JourneyRunRow(Base):
    """One audience entry run (a scheduled or single send to an audience)."""

    __tablename__ = "journey_runs"
    __table_args__ = (UniqueConstraint("journey_id", "scheduled_at"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    journey_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    scheduled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    members: Mapped[int] = mapped_column(BigInteger, default=0)
    entered: Mapped[int] = mapped_column(BigInteger, default=0)
    skipped: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class JourneyInstanceRow(Base):
    """One person's way through one journey entry: where they are and what they wait for."""

    __tablename__ = "journey_instances"
    __table_args__ = (UniqueConstraint("journey_id", "profile_id", "trigger_ref"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    journey_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    profile_id: Mapped[str] = mapped_column(String(64))
    profile_idx: Mapped[int] = mapped_column(Integer)
    entry_no: Mapped[int] = mapped_column(Integer)
    trigger_ref: Mapped[str] = mapped_column(String(100))
    node_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    wait_event: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[dict[str, object]] = mapped_column(JSON)
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    goal_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    converted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JourneyVisitRow(Base):
    """A person left a node through a handle (the report's per-node and per-branch counts)."""

    __tablename__ = "journey_visits"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    journey_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str] = mapped_column(String(64))
    handle: Mapped[str] = mapped_column(String(40))
    instance_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JourneyOutboxRow(Base):
    """An effect to carry out (消息发件箱): a message, a webhook, a tag or attribute change.

    ``key`` is the idempotency key (journey, version, node, person, entry); the dispatcher moves
    ``status`` pending → sending → sent / delivered / failed / suppressed / dead."""

    __tablename__ = "journey_outbox"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    journey_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    profile_id: Mapped[str] = mapped_column(String(64))
    profile_idx: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: the channel kind it went out on (differs from ``kind`` after a fallback, 渠道降级)
    sent_kind: Mapped[str | None] = mapped_column(String(20), nullable=True)
    address: Mapped[str | None] = mapped_column(String(500), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(50), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    provider_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    context: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JourneyRewardRow(Base):
    """A coupon or points granted by a journey (the Loyalty step's ledger takes these over)."""

    __tablename__ = "journey_rewards"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    journey_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    profile_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    template: Mapped[str | None] = mapped_column(String(100), nullable=True)
    amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    code: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# --- loyalty (会员运营): migration 0006 -----------------------------------------------------------


class CouponTemplateRow(Base):
    """A coupon template (券模板): ``body`` is :class:`tessera.domain.coupons.CouponTemplate`."""

    __tablename__ = "coupon_templates"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[dict[str, object]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    campaign: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    stock: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    issued: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CouponRow(Base):
    """One issued coupon (优惠券): a unique code owned by one profile; money in minor units."""

    __tablename__ = "coupons"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    template: Mapped[str] = mapped_column(String(64))
    profile_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    source: Mapped[str] = mapped_column(String(20))
    source_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    campaign: Mapped[str | None] = mapped_column(String(100), nullable=True)
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    order_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    discount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    redeem_channel: Mapped[str | None] = mapped_column(String(50), nullable=True)
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    merged_from: Mapped[str | None] = mapped_column(String(64), nullable=True)


class PointsEntryRow(Base):
    """One entry of the append-only points ledger (积分流水): earn, spend, expire or adjust."""

    __tablename__ = "points_ledger"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    profile_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    points: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20))
    source_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    campaign: Mapped[str | None] = mapped_column(String(100), nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lot_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PointsAccountRow(Base):
    """A member's points balance (积分账户): the ledger's sum, kept in the entry's transaction."""

    __tablename__ = "points_accounts"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger)
    earned: Mapped[int] = mapped_column(BigInteger)
    spent: Mapped[int] = mapped_column(BigInteger)
    expired: Mapped[int] = mapped_column(BigInteger)
    adjusted: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoyaltyOrderRow(Base):
    """An order loyalty has processed (once per order id): spend for tiers, points, coupon used."""

    __tablename__ = "loyalty_orders"
    order_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str | None] = mapped_column(String(50), nullable=True)
    ordered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    coupon_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(10))
    message_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MemberTierRow(Base):
    """A member's current tier (会员等级)."""

    __tablename__ = "member_tiers"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str] = mapped_column(String(64), index=True)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    metric: Mapped[int] = mapped_column(BigInteger)
    evaluated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TierChangeRow(Base):
    """A tier change (升降级记录); each also becomes a ``Tier Changed`` event."""

    __tablename__ = "tier_changes"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    profile_id: Mapped[str] = mapped_column(String(64), index=True)
    from_tier: Mapped[str | None] = mapped_column(String(64), nullable=True)
    to_tier: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(200))
    metric: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoyaltyConfigRow(Base):
    """The points programme and the tier definitions (one row each, versioned)."""

    __tablename__ = "loyalty_config"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    config: Mapped[dict[str, object]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoyaltyEventRow(Base):
    """A loyalty event to publish (``Tier Changed``, ``Points Expiring`` …): written in the change's
    transaction; the publisher stores it as a system event (message id ``loyalty:<key>``)."""

    __tablename__ = "loyalty_events"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    profile_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    properties: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)


class LoyaltyCursorRow(Base):
    """How far a loyalty job has got (events rowid, orders imports, expiry checks)."""

    __tablename__ = "loyalty_cursors"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoyaltyRejectionRow(Base):
    """A coupon use or points operation refused while processing an order event (the order stands)."""

    __tablename__ = "loyalty_rejections"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    profile_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
