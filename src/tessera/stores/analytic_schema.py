"""DDL of the analytic store (DuckDB). Documented in docs/schema.md; each entry is one version.

Times are UTC ``TIMESTAMP``; money is ``DECIMAL(18,2)``; free-form data is ``JSON``.
Append a new version to evolve the schema; never edit a released one.
"""

from __future__ import annotations

MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")

SCHEMA_VERSIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            f"CREATE TYPE message_type AS ENUM {MESSAGE_TYPES!r}",
            # Dictionary of event names (track event / page or screen name): events keep the integer.
            "CREATE SEQUENCE event_name_seq START 1",
            """CREATE TABLE event_names (
                event_id INTEGER PRIMARY KEY DEFAULT nextval('event_name_seq'),
                name VARCHAR NOT NULL UNIQUE
            )""",
            """CREATE TABLE events (
                message_id VARCHAR NOT NULL,
                source_id INTEGER NOT NULL,
                type message_type NOT NULL,
                event_id INTEGER,
                user_id VARCHAR,
                anonymous_id VARCHAR,
                group_id VARCHAR,
                previous_id VARCHAR,
                "timestamp" TIMESTAMP NOT NULL,
                original_timestamp TIMESTAMP,
                sent_at TIMESTAMP,
                received_at TIMESTAMP NOT NULL,
                revenue DECIMAL(18,2),
                currency VARCHAR,
                order_id VARCHAR,
                product_id VARCHAR,
                category VARCHAR,
                channel VARCHAR,
                device_id VARCHAR,
                ip VARCHAR,
                utm_source VARCHAR,
                utm_medium VARCHAR,
                utm_campaign VARCHAR,
                utm_term VARCHAR,
                utm_content VARCHAR,
                properties JSON,
                traits JSON,
                context JSON
            )""",
            """CREATE TABLE dead_letters (
                received_at TIMESTAMP NOT NULL,
                source_id INTEGER,
                message_id VARCHAR,
                batch_index INTEGER,
                field VARCHAR,
                reason VARCHAR NOT NULL,
                payload JSON
            )""",
            # Where the loader has got to in the write-ahead log (moved in the same transaction).
            """CREATE TABLE ingest_checkpoint (
                id INTEGER PRIMARY KEY,
                segment BIGINT NOT NULL,
                "offset" BIGINT NOT NULL,
                updated_at TIMESTAMP NOT NULL
            )""",
            # Profiles: a stable string id and a dense integer index (for bitmaps and set operations).
            "CREATE SEQUENCE profile_idx_seq START 1",
            """CREATE TABLE profiles (
                profile_idx INTEGER PRIMARY KEY,
                profile_id VARCHAR NOT NULL UNIQUE,
                created_at TIMESTAMP NOT NULL,
                first_seen TIMESTAMP,
                last_seen TIMESTAMP,
                traits JSON
            )""",
            """CREATE TABLE profile_identifiers (
                id_type VARCHAR NOT NULL,
                id_value VARCHAR NOT NULL,
                profile_idx INTEGER NOT NULL,
                source_id INTEGER,
                first_seen TIMESTAMP,
                last_seen TIMESTAMP,
                PRIMARY KEY (id_type, id_value)
            )""",
            """CREATE TABLE customers (
                customer_id VARCHAR PRIMARY KEY,
                source_id INTEGER,
                member_id VARCHAR,
                name VARCHAR,
                gender VARCHAR,
                birthday DATE,
                phone VARCHAR,
                email VARCHAR,
                wechat_unionid VARCHAR,
                wechat_openid VARCHAR,
                tmall_id VARCHAR,
                jd_id VARCHAR,
                douyin_id VARCHAR,
                province VARCHAR,
                city VARCHAR,
                member_level VARCHAR,
                points INTEGER,
                registered_at TIMESTAMP,
                channel VARCHAR,
                attributes JSON,
                import_id VARCHAR,
                updated_at TIMESTAMP
            )""",
            """CREATE TABLE products (
                product_id VARCHAR PRIMARY KEY,
                name VARCHAR,
                name_en VARCHAR,
                category VARCHAR,
                subcategory VARCHAR,
                brand VARCHAR,
                colour VARCHAR,
                size VARCHAR,
                price DECIMAL(18,2),
                currency VARCHAR,
                attributes JSON,
                import_id VARCHAR,
                updated_at TIMESTAMP
            )""",
            """CREATE TABLE orders (
                order_id VARCHAR PRIMARY KEY,
                customer_id VARCHAR,
                source_id INTEGER,
                channel VARCHAR,
                store_id VARCHAR,
                status VARCHAR,
                ordered_at TIMESTAMP NOT NULL,
                total DECIMAL(18,2) NOT NULL,
                discount DECIMAL(18,2),
                shipping DECIMAL(18,2),
                currency VARCHAR,
                coupon_code VARCHAR,
                member_id VARCHAR,
                phone VARCHAR,
                email VARCHAR,
                wechat_unionid VARCHAR,
                tmall_id VARCHAR,
                jd_id VARCHAR,
                attributes JSON,
                import_id VARCHAR
            )""",
            """CREATE TABLE order_items (
                order_id VARCHAR NOT NULL,
                line_no INTEGER NOT NULL,
                product_id VARCHAR NOT NULL,
                quantity INTEGER NOT NULL,
                unit_price DECIMAL(18,2),
                amount DECIMAL(18,2),
                attributes JSON,
                import_id VARCHAR,
                PRIMARY KEY (order_id, line_no)
            )""",
            """CREATE TABLE reviews (
                review_id VARCHAR PRIMARY KEY,
                order_id VARCHAR,
                product_id VARCHAR,
                customer_id VARCHAR,
                rating TINYINT,
                title VARCHAR,
                body VARCHAR,
                language VARCHAR,
                created_at TIMESTAMP,
                attributes JSON,
                import_id VARCHAR
            )""",
            # One row per file import, written in the same transaction as its rows.
            """CREATE TABLE import_runs (
                import_id VARCHAR PRIMARY KEY,
                kind VARCHAR NOT NULL,
                file_name VARCHAR NOT NULL,
                file_sha256 VARCHAR NOT NULL,
                file_format VARCHAR NOT NULL,
                source_id INTEGER,
                started_at TIMESTAMP NOT NULL,
                finished_at TIMESTAMP,
                rows_read BIGINT,
                rows_stored BIGINT,
                rows_duplicate BIGINT,
                rows_rejected BIGINT,
                status VARCHAR NOT NULL
            )""",
            # Event names joined back in: the view most people (and SQL tags) read.
            """CREATE VIEW events_named AS
                SELECT e.*, n.name AS event FROM events e LEFT JOIN event_names n USING (event_id)""",
        ],
    ),
    (
        2,
        [
            "ALTER TABLE import_runs ADD COLUMN rows_updated BIGINT",
            "ALTER TABLE import_runs ADD COLUMN rejects_path VARCHAR",
            "ALTER TABLE import_runs ADD COLUMN error VARCHAR",
        ],
    ),
]

#: Tables whose row counts ``tessera stats`` reports.
COUNTED_TABLES = (
    "events",
    "dead_letters",
    "profiles",
    "customers",
    "orders",
    "order_items",
    "products",
    "reviews",
)
