"""DDL of the analytic store (DuckDB). Documented in docs/schema.md; each entry is one version.

Times are UTC ``TIMESTAMP``; money is ``DECIMAL(18,2)``; free-form data is ``JSON``.
Append a new version to evolve the schema; never edit a released one.
"""

from __future__ import annotations

MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")

#: profile_identifiers since v3: no primary key, so that a rebuild can drop, reload and index it in bulk.
PROFILE_IDENTIFIERS_DDL = (
    """CREATE TABLE profile_identifiers (
        id_type VARCHAR NOT NULL,
        id_value VARCHAR NOT NULL,
        profile_idx INTEGER NOT NULL,
        source_id INTEGER,
        first_seen TIMESTAMP,
        last_seen TIMESTAMP,
        linked_at TIMESTAMP
    )""",
    "CREATE UNIQUE INDEX profile_identifiers_key ON profile_identifiers (id_type, id_value)",
)

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
    (
        3,
        [
            # OneID. The Foundation's one-profile-per-primary-identifier rows are dropped: run
            # `tessera identity rebuild --reextract` after upgrading a v2 store (docs/identity.md).
            "DROP TABLE profile_identifiers",
            "DELETE FROM profiles",
            # No primary key: a rebuild reloads millions of rows, then builds the unique index in bulk.
            *PROFILE_IDENTIFIERS_DDL,
            "ALTER TABLE profiles ADD COLUMN anchor_type VARCHAR",
            "ALTER TABLE profiles ADD COLUMN anchor_value VARCHAR",
            "ALTER TABLE profiles ADD COLUMN created_seen TIMESTAMP",
            "ALTER TABLE profiles ADD COLUMN created_key VARCHAR",
            # Which observation (identity_links.obs_idx) a row's identifiers form; its profile follows.
            "ALTER TABLE events ADD COLUMN identity_idx BIGINT",
            "ALTER TABLE orders ADD COLUMN identity_idx BIGINT",
            "ALTER TABLE customers ADD COLUMN identity_idx BIGINT",
            # The raw links: one row per distinct set of identifiers seen together (an observation);
            # key_hash = md5_number(ids_key); first_seen = event time of its earliest row.
            "CREATE SEQUENCE identity_link_seq START 1",
            """CREATE TABLE identity_links (
                obs_idx BIGINT NOT NULL,
                key_hash UHUGEINT NOT NULL,
                ids_key VARCHAR NOT NULL,
                ids STRUCT(id_type VARCHAR, id_value VARCHAR)[] NOT NULL,
                first_seen TIMESTAMP NOT NULL,
                source_id INTEGER,
                origin VARCHAR,
                profile_idx INTEGER
            )""",
            # The append-only merge log: merges, dropped identifiers, unmerges, rebuilds.
            "CREATE SEQUENCE identity_log_seq START 1",
            """CREATE TABLE identity_log (
                seq BIGINT NOT NULL DEFAULT nextval('identity_log_seq'),
                logged_at TIMESTAMP NOT NULL,
                event_time TIMESTAMP,
                action VARCHAR NOT NULL,
                profile_id VARCHAR,
                other_ids VARCHAR[],
                id_type VARCHAR,
                id_value VARCHAR,
                reason VARCHAR NOT NULL,
                origin VARCHAR,
                run VARCHAR NOT NULL
            )""",
            # Values that failed normalisation or are blocked: never linked; why, and how often.
            """CREATE TABLE identifier_rejections (
                id_type VARCHAR NOT NULL,
                raw_value VARCHAR NOT NULL,
                reason VARCHAR NOT NULL,
                first_seen TIMESTAMP NOT NULL,
                last_seen TIMESTAMP NOT NULL,
                seen_count BIGINT NOT NULL,
                origin VARCHAR,
                PRIMARY KEY (id_type, raw_value)
            )""",
            # Identifiers unmerged by hand: they link to nothing else (kept by rebuilds).
            """CREATE TABLE identity_suppressions (
                id_type VARCHAR NOT NULL,
                id_value VARCHAR NOT NULL,
                reason VARCHAR,
                created_at TIMESTAMP NOT NULL,
                origin VARCHAR,
                PRIMARY KEY (id_type, id_value)
            )""",
            # A merged-away profile id resolves to whichever profile now holds its anchor identifier.
            """CREATE TABLE profile_redirects (
                profile_id VARCHAR PRIMARY KEY,
                anchor_type VARCHAR NOT NULL,
                anchor_value VARCHAR NOT NULL,
                merged_at TIMESTAMP NOT NULL,
                merged_into VARCHAR
            )""",
            # Profile attributes: traits after the merge policies, and computed basics.
            """CREATE TABLE profile_attributes (
                profile_idx INTEGER PRIMARY KEY,
                traits JSON,
                first_seen TIMESTAMP,
                last_seen TIMESTAMP,
                channels VARCHAR[],
                event_count BIGINT,
                order_count BIGINT,
                total_spend DECIMAL(18,2),
                first_order_at TIMESTAMP,
                last_order_at TIMESTAMP,
                updated_at TIMESTAMP NOT NULL
            )""",
            """CREATE OR REPLACE VIEW events_named AS
                SELECT e.*, n.name AS event, l.profile_idx
                FROM events e LEFT JOIN event_names n USING (event_id)
                LEFT JOIN identity_links l ON l.obs_idx = e.identity_idx""",
        ],
    ),
    (
        4,
        [
            # Current tag values per profile (标签值): the condition language's tag leaves read this;
            # the Tags step writes it. Multi-valued tags have one row per value.
            """CREATE TABLE profile_tags (
                profile_idx INTEGER NOT NULL,
                tag_key VARCHAR NOT NULL,
                value VARCHAR NOT NULL,
                value_num DOUBLE,
                updated_at TIMESTAMP NOT NULL
            )""",
            # Stored members of static, imported and refreshed dynamic audiences (群组成员).
            """CREATE TABLE audience_members (
                audience_id VARCHAR NOT NULL,
                profile_idx INTEGER NOT NULL,
                profile_id VARCHAR NOT NULL,
                since TIMESTAMP NOT NULL
            )""",
            # Stored members as the profiles they are now: a member merged into another profile since
            # counts as that profile (through its redirect's anchor identifier).
            """CREATE VIEW audience_members_current AS
                SELECT m.audience_id, m.profile_idx
                FROM audience_members m JOIN profiles p ON p.profile_idx = m.profile_idx AND p.profile_id = m.profile_id
                UNION
                SELECT m.audience_id, i.profile_idx
                FROM audience_members m
                JOIN profile_redirects r ON r.profile_id = m.profile_id
                JOIN profile_identifiers i ON i.id_type = r.anchor_type AND i.id_value = r.anchor_value
                WHERE NOT EXISTS (
                    SELECT 1 FROM profiles p WHERE p.profile_idx = m.profile_idx AND p.profile_id = m.profile_id
                )""",
            # Every computation of an audience's members, written with the members it produced.
            """CREATE TABLE audience_runs (
                run_id VARCHAR PRIMARY KEY,
                audience_id VARCHAR NOT NULL,
                trigger VARCHAR NOT NULL,
                started_at TIMESTAMP NOT NULL,
                finished_at TIMESTAMP NOT NULL,
                members BIGINT NOT NULL,
                entered BIGINT NOT NULL,
                exited BIGINT NOT NULL
            )""",
            # Membership changes: who entered or left an audience, and when (also emitted as events).
            """CREATE TABLE audience_changes (
                audience_id VARCHAR NOT NULL,
                run_id VARCHAR NOT NULL,
                profile_idx INTEGER NOT NULL,
                profile_id VARCHAR NOT NULL,
                change VARCHAR NOT NULL,
                changed_at TIMESTAMP NOT NULL
            )""",
            # The rows of an imported audience's file and how each matched (the unmatched report).
            """CREATE TABLE audience_import_rows (
                audience_id VARCHAR NOT NULL,
                line BIGINT NOT NULL,
                id_type VARCHAR,
                raw_value VARCHAR,
                id_value VARCHAR,
                profile_idx INTEGER,
                status VARCHAR NOT NULL,
                reason VARCHAR
            )""",
        ],
    ),
    (
        5,
        [
            # Every computation or bulk change of a tag's values (标签运行): one row per tag per run;
            # tags computed in one pass share batch_id. run_no orders runs (the clock may stand still).
            "CREATE SEQUENCE tag_run_seq START 1",
            """CREATE TABLE tag_runs (
                run_id VARCHAR PRIMARY KEY,
                run_no BIGINT NOT NULL,
                batch_id VARCHAR NOT NULL,
                tag_key VARCHAR NOT NULL,
                tag_version INTEGER NOT NULL,
                kind VARCHAR NOT NULL,
                trigger VARCHAR NOT NULL,
                status VARCHAR NOT NULL,
                started_at TIMESTAMP NOT NULL,
                finished_at TIMESTAMP NOT NULL,
                rows BIGINT NOT NULL,
                profiles BIGINT NOT NULL,
                added BIGINT NOT NULL,
                removed BIGINT NOT NULL,
                error VARCHAR,
                details JSON
            )""",
            # The history of tag values (标签历史): every value a profile gained (added) or lost, by
            # which run. "Who had X = V at T" is the profiles whose latest change of (X, V) before T
            # is an addition; a value's trend is the running sum of +1 / -1 per day.
            """CREATE TABLE tag_changes (
                tag_key VARCHAR NOT NULL,
                profile_idx INTEGER NOT NULL,
                value VARCHAR NOT NULL,
                value_num DOUBLE,
                added BOOLEAN NOT NULL,
                changed_at TIMESTAMP NOT NULL,
                run_no BIGINT NOT NULL
            )""",
            # The values of every tag as swapped last, one roaring bitmap of profile_idx per value
            # (serialised): the next run diffs against these instead of reading profile_tags back.
            # A tag without a tag_state row has no stored bitmaps (read profile_tags instead).
            """CREATE TABLE tag_state (
                tag_key VARCHAR PRIMARY KEY,
                run_no BIGINT NOT NULL,
                stored_at TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE tag_bitmaps (
                tag_key VARCHAR NOT NULL,
                value VARCHAR NOT NULL,
                profiles BLOB NOT NULL
            )""",
            # -- model tag state (tessera.tagmodels) below this line --
            # Review sentiment scores by (language, scorer, md5 of the text): a text is scored once,
            # not on every run (snownlp takes milliseconds per review).
            """CREATE TABLE tag_sentiment_scores (
                language VARCHAR NOT NULL,
                scorer VARCHAR NOT NULL,
                text_md5 VARCHAR NOT NULL,
                score DOUBLE NOT NULL
            )""",
            # Value and lifecycle models (tagmodels/purchases.py): every purchase — a qualifying order
            # (the orders table decides its order_id) or an Order Completed event (the earliest per
            # order_id; each without one) — by observation, so that merges move it with its profile.
            """CREATE TABLE tag_purchases (
                order_id VARCHAR,
                obs_idx BIGINT NOT NULL,
                bought_at TIMESTAMP NOT NULL,
                amount DECIMAL(18,2) NOT NULL,
                from_orders BOOLEAN NOT NULL
            )""",
            # The latest non-system event per observation (events since `since` of tag_model_state);
            # incremental folds append a row per observation seen: readers take the latest.
            "CREATE TABLE tag_activity (obs_idx BIGINT NOT NULL, last_seen TIMESTAMP NOT NULL)",
            # The order imports folded into tag_purchases (an import re-stamps the rows it changes).
            "CREATE TABLE tag_purchase_imports (import_id VARCHAR NOT NULL)",
            # How far each part (purchases, activity) has got: events up to events_rowid (events_rows
            # of them), orders_rows orders, the identity rebuilds seen, the last rebuild and whether
            # the last change was one; activity covers events from `since` on.
            """CREATE TABLE tag_model_state (
                part VARCHAR PRIMARY KEY,
                built_at TIMESTAMP NOT NULL,
                updated_at TIMESTAMP NOT NULL,
                events_rowid BIGINT NOT NULL,
                events_rows BIGINT NOT NULL,
                orders_rows BIGINT NOT NULL,
                rebuild_seq BIGINT NOT NULL,
                since TIMESTAMP,
                rebuilt BOOLEAN NOT NULL
            )""",
        ],
    ),
    (
        6,
        [
            # Event names some live journey reacts to (a trigger, a wait for an event, a goal).
            "CREATE TABLE journey_watch (name VARCHAR PRIMARY KEY)",
            # Events of watched names, written in the same transaction as the events themselves (the
            # loader, system events); the journey worker consumes them in seq order and deletes them.
            "CREATE SEQUENCE journey_inbox_seq START 1",
            """CREATE TABLE journey_inbox (
                seq BIGINT NOT NULL DEFAULT nextval('journey_inbox_seq'),
                message_id VARCHAR NOT NULL,
                event_id INTEGER NOT NULL,
                obs_idx BIGINT,
                "timestamp" TIMESTAMP NOT NULL,
                received_at TIMESTAMP NOT NULL,
                properties JSON
            )""",
        ],
    ),
]

#: Tables whose row counts ``tessera stats`` reports.
COUNTED_TABLES = (
    "events",
    "dead_letters",
    "profiles",
    "profile_identifiers",
    "identity_links",
    "customers",
    "orders",
    "order_items",
    "products",
    "reviews",
    "profile_tags",
    "tag_changes",
    "audience_members",
)
