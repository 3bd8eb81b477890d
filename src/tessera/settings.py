"""Settings, read from the environment as ``TESSERA_<AREA>_<KEY>`` (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseModel):
    """Limits and tuning of the Segment-compatible collection path."""

    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_batch_messages: int = 2500
    #: Unloaded write-ahead-log bytes above which /v1/* answers 429 + Retry-After.
    max_backlog_bytes: int = 256 * 1024 * 1024
    #: Requests waiting for the log writer above which /v1/* answers 429.
    max_pending_writes: int = 2000
    retry_after_seconds: int = 2
    #: fsync the write-ahead log before answering 200 (turn off only for throwaway demos).
    fsync: bool = True
    #: How long a messageId is remembered for de-duplication (Segment's window is 24 h).
    dedup_window_hours: int = 24
    #: At most this many recent messageIds are remembered.
    dedup_max_ids: int = 5_000_000
    #: The loader moves the log into the analytic store at least this often.
    load_interval_ms: int = 200
    #: Write-ahead-log segment size before rolling to a new file.
    wal_segment_bytes: int = 64 * 1024 * 1024


class StoreSettings(BaseModel):
    """Where state lives. Defaults are embedded files under the data dir."""

    #: SQLAlchemy URL of the operational store; empty = SQLite file in the data dir.
    operational_url: str = ""
    duckdb_threads: int = 0
    duckdb_memory_limit: str = ""


class DeliverySettings(BaseModel):
    """Outbound webhooks (audience pushes, later journeys): retries with backoff, then a dead letter."""

    max_attempts: int = 5
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0
    timeout_seconds: float = 10.0


class AudienceSettings(BaseModel):
    """Audiences: how often the server looks for scheduled refreshes; the memory for count columns."""

    scheduler_interval_seconds: float = 30.0
    columns_memory_mb: int = 2048


class TagSettings(BaseModel):
    """Tags: SQL-tag limits, the default coverage flag, the event-driven re-evaluation delay."""

    sql_timeout_seconds: float = 120.0
    sql_max_rows: int = 50_000_000
    #: tags held by fewer profiles than this share are flagged (a tag's min_coverage overrides it)
    min_coverage: float = 0.01
    #: how long the event-driven re-evaluation gathers newly loaded profiles before a run
    reactor_interval_seconds: float = 2.0


class JourneySettings(BaseModel):
    """Journeys: the worker's pace and the guards on every send (overridable per journey)."""

    #: run the worker inside the server (turn off to drive journeys by hand, as the tests do)
    worker: bool = True
    #: how often the worker looks for due timers when nothing wakes it
    worker_interval_seconds: float = 1.0
    #: people stepped per batch (one transaction each)
    batch_size: int = 5000
    #: outbox rows handled per dispatch round
    dispatch_batch: int = 2000
    #: quiet hours (免打扰) in each person's local time; empty = none
    quiet_hours: str = "21:00-08:00"
    #: frequency caps (频次控制) per channel: "per_day/per_week", empty = none
    cap_email: str = "3/10"
    cap_sms: str = "2/5"
    cap_push: str = "5/20"
    cap_wechat: str = "3/10"
    #: messages per second across all channels (0 = unlimited)
    rate_per_second: float = 5000.0
    #: a channel needs an explicit opt-in (consent trait true) rather than no opt-out
    require_opt_in: bool = False
    #: attempts per message before it is dead-lettered; backoff doubles from base_delay
    max_attempts: int = 6
    base_delay_seconds: float = 30.0
    max_delay_seconds: float = 3600.0
    #: public base URL of this server, for unsubscribe links and SMS receipt callbacks
    public_url: str = "http://127.0.0.1:8600"


class LoyaltySettings(BaseModel):
    """Loyalty (会员运营): the worker that turns orders into points, redemptions and tier changes."""

    #: run the loyalty worker inside the server (off: drive it with ``tessera loyalty run``)
    worker: bool = True
    #: how often it looks for new orders and due jobs when nothing wakes it
    worker_interval_seconds: float = 5.0
    #: the local hour (workspace time zone) from which the daily jobs run: expiry notices, birthdays
    daily_hour: int = Field(default=3, ge=0, le=23)
    #: days ahead of a coupon's end that ``Coupon Expiring`` is sent (0 = never)
    coupon_notice_days: int = Field(default=3, ge=0, le=365)
    #: orders per batch (one operational transaction each). A back-fill of many orders holds the
    #: operational store's write lock per batch (~10 s for 200,000 on SQLite); lower it to keep API
    #: writes (redemptions, spends) quicker during back-fills, raise it for throughput.
    batch_size: int = 200_000


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8600


class Settings(BaseSettings):
    """All settings. ``TESSERA_DATA_DIR`` picks the data dir; nested areas use one ``_``."""

    model_config = SettingsConfigDict(
        env_prefix="TESSERA_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    data: Path = Field(default=Path("tessera-data"), description="data dir (TESSERA_DATA)")
    ingest: IngestSettings = IngestSettings()
    store: StoreSettings = StoreSettings()
    server: ServerSettings = ServerSettings()
    delivery: DeliverySettings = DeliverySettings()
    audiences: AudienceSettings = AudienceSettings()
    tags: TagSettings = TagSettings()
    journeys: JourneySettings = JourneySettings()
    loyalty: LoyaltySettings = LoyaltySettings()
    default_region: str = "CN"
    #: The workspace time zone: dates in conditions, "this month", schedules and quiet hours use it.
    timezone: str = "Asia/Shanghai"


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
