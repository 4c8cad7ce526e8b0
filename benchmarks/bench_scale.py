"""How cost grows with the number of stored sessions.

1. Read latency (median and p99 of ``store.read`` of random live keys) with
   1,000 and with 1,000,000 sessions stored, in Redis and in PostgreSQL: it
   must stay flat (a hash lookup; a primary-key index lookup).
2. ``clear_expired`` on PostgreSQL with 1,000,000 expired rows (and 1,000
   live ones that must survive): total time, and that it deletes in bounded
   batches so the table is never locked for long.

Records are ~200 bytes, inserted in bulk straight into the backend, keyed
like real ones (64 hex chars). Needs Redis on 6379 and PostgreSQL on 5432;
uses its own key prefix and table and removes them afterwards. Run by hand:
``python benchmarks/bench_scale.py`` (a few minutes; ``--sizes 1000 100000``
for a quick look).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from typing import Any

REDIS_URL = os.environ.get("ASGI_SESSIONS_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "ASGI_SESSIONS_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
PAYLOAD = secrets.token_bytes(200)
SAMPLES = 2000


def keys(count: int) -> list[str]:
    return [secrets.token_hex(32) for _ in range(count)]


async def timed_reads(store: object, sample: list[str]) -> tuple[float, float]:
    latencies = []
    for key in sample:
        start = time.perf_counter_ns()
        assert await store.read(key) is not None  # type: ignore[attr-defined]
        latencies.append((time.perf_counter_ns() - start) / 1000)
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99)]


async def redis_scale(sizes: list[int]) -> None:
    from redis.asyncio import Redis

    from asgi_sessions.stores import RedisStore

    prefix = f"bench:scale:{secrets.token_hex(4)}:"
    client = Redis.from_url(REDIS_URL)
    store = RedisStore(client, prefix=prefix)
    stored: list[str] = []
    try:
        for size in sizes:
            new = keys(size - len(stored))
            for start in range(0, len(new), 10_000):
                pipe = client.pipeline(transaction=False)
                for key in new[start : start + 10_000]:
                    pipe.set(prefix + key, PAYLOAD, ex=3600)
                await pipe.execute()
            stored += new
            import random

            # Let Redis finish growing its hash table (incremental rehash)
            # before timing: steady state is what an app sees.
            await asyncio.sleep(5)
            median, p99 = await timed_reads(store, random.sample(stored, min(SAMPLES, len(stored))))
            print(f"redis     {size:>9,} sessions: read median {median:7.1f} µs, p99 {p99:7.1f} µs")
    finally:
        cursor = 0
        while True:
            cursor, found = await client.scan(cursor, match=prefix + "*", count=10_000)
            if found:
                await client.delete(*found)
            if cursor == 0:
                break
        await client.aclose()


async def postgres_scale(sizes: list[int]) -> None:
    import random

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from asgi_sessions.stores import SQLStore

    table = f"bench_scale_{secrets.token_hex(4)}"
    store = SQLStore(POSTGRES_URL, table_name=table)
    engine = create_async_engine(POSTGRES_URL)
    await store.read("0" * 64)  # creates the table
    stored: list[str] = []
    now = int(time.time() * 1000)  # SQLStore keeps expires_at in milliseconds

    async def bulk(new: list[str], expires_at: int) -> None:
        async with engine.begin() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection  # asyncpg's connection: COPY
            await driver.copy_records_to_table(
                table,
                records=[(key, PAYLOAD, expires_at) for key in new],
                columns=["key", "data", "expires_at"],
            )

    try:
        for size in sizes:
            new = keys(size - len(stored))
            for start in range(0, len(new), 100_000):
                await bulk(new[start : start + 100_000], now + 3_600_000)
            stored += new
            async with engine.begin() as connection:
                await connection.execute(text(f"ANALYZE {table}"))
            median, p99 = await timed_reads(store, random.sample(stored, min(SAMPLES, len(stored))))
            print(f"postgres  {size:>9,} sessions: read median {median:7.1f} µs, p99 {p99:7.1f} µs")

        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {table}"))
        expired = max(sizes)
        for start in range(0, expired, 100_000):
            await bulk(keys(min(100_000, expired - start)), now - 10_000)
        live = keys(1000)
        await bulk(live, now + 3_600_000)
        start_time = time.perf_counter()
        removed = await store.clear_expired()
        elapsed = time.perf_counter() - start_time
        assert removed == expired, removed
        assert all([await store.read(key) is not None for key in live[:50]])
        print(
            f"postgres  clear_expired: {removed:,} expired rows removed in {elapsed:.1f} s "
            f"({removed / elapsed:,.0f} rows/s), 1,000 live rows kept"
        )
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await engine.dispose()
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 1_000_000])
    parser.add_argument("--only", choices=["redis", "postgres"])
    args = parser.parse_args(argv)
    if args.only in (None, "redis"):
        asyncio.run(redis_scale(args.sizes))
    if args.only in (None, "postgres"):
        asyncio.run(postgres_scale(args.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
