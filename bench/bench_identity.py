"""Full identity rebuild: 10,000,000 identifiers into ~5,000,000 profiles (target <= 30 s).

The raw links (``identity_links``) are generated in DuckDB SQL, in a child process, into a fresh
analytic store: ~N/2 people with two identifiers each on average (anonymous visitors; members with
user_id + anonymous_id, some with a phone or an email; visitors with a device), each seen in 1-3
observations over two years, plus the usual trouble: ~0.1 % of people share a family tablet
(``device_id``) in groups of three, and one store phone is typed in for 10,000 different members.
Families with two signed-in members and the store phone's component break the ``user_id`` limit,
so they are replayed through the incremental resolver (the Python path).

Then ``identity_rebuild.rebuild`` runs on it in one transaction (BEGIN … COMMIT), timed with its own
per-step breakdown. Baseline, in this same process and on the same store: the connected-components
pass alone — the edge arrays fetched as ``rebuild`` fetches them, then ``scipy_components`` once —
the part of a rebuild the issue's hint says must dominate.

    .venv/bin/python bench/bench_identity.py [--identifiers 10000000] [--threads N] [--keep DIR] [--seed 1]
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from tessera.domain.identity import default_rules
from tessera.services.identity_rebuild import rebuild, scipy_components
from tessera.stores.analytic import migrate

TARGET_S = 30.0
NOW = datetime(2026, 1, 15)
STORE_PHONE = "+862161234567"
STORE_OBSERVATIONS = 10_000
#: Identifiers per person by kind: anonymous 25 % (1), member 35 % (2), member with phone 20 % (3),
#: visitor with device 15 % (2), member with email 5 % (3): 2.0 on average.
PER_PERSON = 2.0
FAMILY_SHARE = 1 / 1000
FAMILY_SIZE = 3

PEOPLE = """
CREATE TEMP TABLE people AS
SELECT p, kind, t0,
       'anonymous_id:' || substr(m, 1, 8) || '-' || substr(m, 9, 4) || '-' || substr(m, 13, 4) || '-'
           || substr(m, 17, 4) || '-' || substr(m, 21, 12) AS anon,
       'user_id:' || (100000000 + p)::VARCHAR AS uid,
       'phone:+86139' || lpad(p::VARCHAR, 8, '0') AS phone,
       'email:u' || p::VARCHAR || '@163.com' AS email,
       'device_id:' || substr(md5('d' || p::VARCHAR || '/' || $seed::VARCHAR), 1, 16) AS device,
       kind IN ('member', 'member_phone', 'member_email') AS signed_in
FROM (
    SELECT p, md5('a' || p::VARCHAR || '/' || $seed::VARCHAR) AS m,
           CASE WHEN r < 25 THEN 'anonymous' WHEN r < 60 THEN 'member' WHEN r < 80 THEN 'member_phone'
                WHEN r < 95 THEN 'visitor_device' ELSE 'member_email' END AS kind,
           -- first visit somewhere in the first 700 days of the two years
           TIMESTAMP '2024-01-01' + to_seconds((hash(p, $seed, 1) % (700 * 86400))::BIGINT) AS t0
    FROM (SELECT p, hash(p, $seed) % 100 AS r FROM range($people) t(p)))
"""
FAMILIES = """
CREATE TEMP TABLE families AS
SELECT p, anon, signed_in, t0, (row_number() OVER (ORDER BY p) - 1) // $size AS fam
FROM people WHERE hash(p, $seed, 3) % $every = 0
"""
STORE_USERS = """
CREATE TEMP TABLE store_users AS
SELECT p, uid, t0 FROM people WHERE signed_in ORDER BY hash(p, $seed, 7) LIMIT $n
"""
# Each observation: the identifiers seen together ('type:value') and when first seen.
OBSERVATIONS = """
CREATE TEMP TABLE obs AS
SELECT [anon] AS ids, t0 AS seen FROM people WHERE kind <> 'member_email'
UNION ALL
SELECT [uid, anon], t0 + to_seconds(60 + (hash(p, $seed, 4) % (3 * 86400))::BIGINT)
FROM people WHERE signed_in
UNION ALL
SELECT [uid], t0 + to_seconds(86400 + (hash(p, $seed, 5) % (20 * 86400))::BIGINT)
FROM people WHERE kind = 'member' AND p % 3 = 0
UNION ALL
SELECT [uid, phone], t0 + to_seconds(86400 + (hash(p, $seed, 5) % (20 * 86400))::BIGINT)
FROM people WHERE kind = 'member_phone'
UNION ALL
SELECT [uid, email], t0 + to_seconds(86400 + (hash(p, $seed, 5) % (20 * 86400))::BIGINT)
FROM people WHERE kind = 'member_email'
UNION ALL
SELECT [device, anon], t0 + to_seconds(60 + (hash(p, $seed, 4) % 86400)::BIGINT)
FROM people WHERE kind = 'visitor_device'
UNION ALL
SELECT ['device_id:tablet-' || fam::VARCHAR, anon], t0 + to_seconds((hash(p, $seed, 6) % (10 * 86400))::BIGINT)
FROM families
UNION ALL
SELECT [uid, 'phone:' || $store_phone], t0 + to_seconds((hash(p, $seed, 8) % (25 * 86400))::BIGINT)
FROM store_users
"""
# Appended in arrival order (≈ first seen), as the loader appends them; ids as the linker builds them.
INSERT_LINKS = """
INSERT INTO identity_links (obs_idx, key_hash, ids_key, ids, first_seen, source_id, origin, profile_idx)
SELECT obs_idx, md5_number(ids_key), ids_key,
       list_transform(string_split(ids_key, chr(31)),
           lambda x: {'id_type': split_part(x, ':', 1), 'id_value': x[length(split_part(x, ':', 1)) + 2:]}),
       seen, 1 + obs_idx % 3, 'm' || lpad(obs_idx::VARCHAR, 10, '0'), NULL
FROM (SELECT row_number() OVER (ORDER BY seen, ids_key) AS obs_idx, seen, ids_key
      FROM (SELECT seen, array_to_string(list_sort(ids), chr(31)) AS ids_key FROM obs))
"""
# Profiles a correct rebuild gives: one per person, except that a family's members without a user_id
# join the family tablet's profile (its signed-in members keep one profile each: user_id limit 1).
EXPECTED = """
SELECT (SELECT count(*) FROM people)
       - coalesce((SELECT sum(n - greatest(1, users)) FROM (
            SELECT count(*) AS n, count(*) FILTER (WHERE signed_in) AS users FROM families GROUP BY fam)), 0)
"""


def connect(path: Path, threads: int | None) -> duckdb.DuckDBPyConnection:
    # The analytic store's own settings (AnalyticStore): checkpoint at 256 MB, UTC.
    config: dict[str, Any] = {"checkpoint_threshold": "256MB"}
    if threads:
        config["threads"] = threads
    con = duckdb.connect(str(path), config=config)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def generate(path: Path, identifiers: int, seed: int, threads: int | None) -> dict[str, Any]:
    """Fill a fresh store's ``identity_links`` (in a child process: its memory is not the rebuild's)."""
    start = time.perf_counter()
    con = connect(path, threads)
    migrate(con)
    people = round((identifiers - 1) / (PER_PERSON + FAMILY_SHARE / FAMILY_SIZE))
    params = {"seed": seed, "people": people}
    con.execute(PEOPLE, params)
    con.execute(FAMILIES, {"seed": seed, "size": FAMILY_SIZE, "every": round(1 / FAMILY_SHARE)})
    con.execute(STORE_USERS, {"seed": seed, "n": STORE_OBSERVATIONS})
    con.execute(OBSERVATIONS, {"seed": seed, "store_phone": STORE_PHONE})
    con.execute("BEGIN TRANSACTION")
    con.execute(INSERT_LINKS)
    # Move the sequence past the generated obs_idx, as the linker does when it reserves a range.
    n_obs = int(con.execute("SELECT count(*) FROM identity_links").fetchall()[0][0])
    con.execute("SELECT max(nextval('identity_link_seq')) FROM range(?)", [n_obs]).fetchall()
    con.execute("COMMIT")
    con.execute("CHECKPOINT")
    info = {
        "people": people,
        "observations": n_obs,
        "family_people": int(con.execute("SELECT count(*) FROM families").fetchall()[0][0]),
        "families": int(con.execute("SELECT count(DISTINCT fam) FROM families").fetchall()[0][0]),
        "expected_profiles": int(con.execute(EXPECTED).fetchall()[0][0]),
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    con.close()
    info["file_mb"] = path.stat().st_size / 1e6
    return info


def fetch_edges(cur: duckdb.DuckDBPyConnection) -> tuple[int, np.ndarray, np.ndarray]:
    """The edge arrays exactly as ``rebuild`` builds them (its first SQL statements, same names prefixed)."""
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _bb_members AS
        WITH m AS (SELECT obs_idx, first_seen, ids_key, len(ids) AS n, unnest(ids, recursive := true) FROM identity_links)
        SELECT m.obs_idx, m.first_seen, m.ids_key, m.id_type, m.id_value FROM m
        WHERE m.n = 1 OR NOT EXISTS (SELECT 1 FROM identity_suppressions s
                                     WHERE s.id_type = m.id_type AND s.id_value = m.id_value)"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _bb_nodes AS
        SELECT id_type, id_value, (row_number() OVER () - 1)::BIGINT AS node
        FROM (SELECT DISTINCT id_type, id_value FROM _bb_members)"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _bb_obs_nodes AS
        SELECT m.obs_idx, m.first_seen, m.ids_key, n.node, m.id_type, m.id_value
        FROM _bb_members m JOIN _bb_nodes n USING (id_type, id_value)"""
    )
    n_nodes = int(cur.execute("SELECT count(*) FROM _bb_nodes").fetchall()[0][0])
    edges = cur.execute(
        "SELECT min(node) OVER (PARTITION BY obs_idx) AS a, node AS b FROM _bb_obs_nodes QUALIFY a <> b"
    ).fetchnumpy()
    for name in ("_bb_members", "_bb_nodes", "_bb_obs_nodes"):
        cur.execute(f"DROP TABLE {name}")
    return n_nodes, np.asarray(edges["a"], dtype=np.int64), np.asarray(edges["b"], dtype=np.int64)


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    return con.execute(sql, params or []).fetchall()[0][0]


def checks(con: duckdb.DuckDBPyConnection, info: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """Sanity checks on the rebuilt profiles: (what, passed, detail)."""
    out = []
    profiles = one(con, "SELECT count(*) FROM profiles")
    expected = info["expected_profiles"]
    out.append(("profiles as expected", profiles == expected,
                f"{profiles:,} profiles; expected {expected:,} = {info['people']:,} people - "
                f"{info['people'] - expected:,} family members without a user_id joining a family tablet"))  # fmt: skip
    holders = one(con, "SELECT count(*) FROM profile_identifiers WHERE id_type = 'phone' AND id_value = ?",
                  [STORE_PHONE])  # fmt: skip
    out.append(("store phone in exactly one profile", holders == 1, f"{holders} profile(s)"))
    spread = con.execute(
        """SELECT count(*), count(DISTINCT pi.profile_idx) FROM (
            SELECT DISTINCT i.id_value FROM identity_links l, unnest(l.ids) u(i)
            WHERE contains(l.ids_key, 'phone:' || ?) AND i.id_type = 'user_id') s
        LEFT JOIN profile_identifiers pi ON pi.id_type = 'user_id' AND pi.id_value = s.id_value""",
        [STORE_PHONE],
    ).fetchall()[0]
    out.append((f"the store phone's {STORE_OBSERVATIONS:,} user_ids in as many profiles",
                spread[0] == spread[1] == STORE_OBSERVATIONS, f"{spread[0]:,} user_ids in {spread[1]:,} profiles"))  # fmt: skip
    multi = one(
        con,
        """SELECT count(*) FROM (SELECT profile_idx FROM profile_identifiers WHERE id_type = 'user_id'
           GROUP BY profile_idx HAVING count(*) > 1)""",
    )
    out.append(("no profile with more than one user_id", multi == 0, f"{multi:,} profiles with several"))
    rules = default_rules()
    over = one(
        con,
        f"""SELECT count(*) FROM (SELECT profile_idx, id_type, count(*) AS k FROM profile_identifiers
            GROUP BY ALL) WHERE k > CASE id_type {" ".join(f"WHEN '{t.name}' THEN {t.limit}" for t in rules.types)}
            ELSE {rules.custom_type_limit} END""",
    )
    out.append(("no profile over any limit", over == 0, f"{over:,} (profile, type) over"))
    unlinked = one(con, "SELECT count(*) FROM identity_links WHERE profile_idx IS NULL")
    orphans = one(con, "SELECT count(*) FROM identity_links ANTI JOIN profiles USING (profile_idx)")
    out.append(("every observation in a profile", unlinked == 0 and orphans == 0,
                f"{unlinked:,} without, {orphans:,} pointing nowhere"))  # fmt: skip
    return out


def load() -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identifiers", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: DuckDB's, all cores)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the store in this directory")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-identity-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "analytics.duckdb"
    if path.exists():
        raise SystemExit(f"{path} exists: give --keep an empty directory")
    try:
        print(f"{os.cpu_count()} cores, {load()}; DuckDB {duckdb.__version__}, threads {args.threads or 'default'}; "
              f"timing {inspect.getsourcefile(rebuild)}")  # fmt: skip
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            info = pool.apply(generate, (path, args.identifiers, args.seed, args.threads))
        print(
            f"generated {info['observations']:,} observations of {info['people']:,} people "
            f"({info['family_people']:,} sharing {info['families']:,} family tablets, 1 store phone on "
            f"{STORE_OBSERVATIONS:,} members) in {info['seconds']:.1f} s; store {info['file_mb']:,.0f} MB, "
            f"generator peak RSS {info['peak_rss_mb']:,.0f} MB"
        )

        con = connect(path, args.threads)
        print(f"rebuild starts: {load()}")
        cpu = time.process_time()
        start = time.perf_counter()
        con.execute("BEGIN TRANSACTION")
        report = rebuild(con, rules=default_rules(), now=NOW)
        done = time.perf_counter()
        con.execute("COMMIT")
        end = time.perf_counter()
        cpu = time.process_time() - cpu
        total = end - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        steps = ", ".join(f"{k} {v:.2f}" for k, v in report.seconds.items())
        print(
            f"rebuild: {total:.2f} s = rebuild() {done - start:.2f} s + COMMIT {end - done:.2f} s "
            f"(CPU {cpu:.1f} s, all threads); {load()}"
        )
        print(f"  steps (s): {steps}")
        print(
            f"  {report.identifiers:,} identifiers, {report.observations:,} observations -> {report.profiles:,} "
            f"profiles; {report.components_over_limit:,} components over a limit, "
            f"{report.replayed_observations:,} observations replayed, {report.decisions:,} decisions logged; "
            f"peak RSS {rss:,.0f} MB"
        )

        # Baseline: the connected-components pass alone, on the edge arrays rebuild fetches.
        t0 = time.perf_counter()
        n_nodes, src, dst = fetch_edges(con)
        t1 = time.perf_counter()
        labels = scipy_components(n_nodes, src, dst)
        base = time.perf_counter() - t1
        n_comp = len(np.unique(labels))
        print(
            f"baseline: scipy_components alone {base:.2f} s on {n_nodes:,} nodes and {len(src):,} edges "
            f"({n_comp:,} components); fetching those edges (SQL) took {t1 - t0:.2f} s more; {load()}"
        )

        for what, ok, detail in checks(con, info):
            print(f"  check: {what}: {'ok' if ok else 'FAILED'} ({detail})")
        con.close()

        verdict = "met" if total <= TARGET_S else f"MISSED by {total - TARGET_S:.1f} s ({total / TARGET_S:.1f}x)"
        print(
            f"full rebuild of {report.identifiers:,} identifiers into {report.profiles:,} profiles: {total:.1f} s "
            f"({report.identifiers / total:,.0f} identifiers/s); baseline components pass {base:.2f} s; "
            f"ratio rebuild / baseline {total / base:.1f}x; target <= {TARGET_S:.0f} s -> {verdict}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
