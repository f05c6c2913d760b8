"""asyncpg through the pooler: asyncpg prepares every query as a named
statement and caches it, so this exercises prepared statements across
servers on two connections whose statement names collide.

usage: asyncpg_driver.py HOST PORT USER PASSWORD DB
"""
import asyncio
import os
import sys

try:
    import asyncpg
except ImportError as e:
    sys.exit(f"asyncpg is not installed ({e}): pip install asyncpg")


async def main():
    host, port, user, password, db = sys.argv[1:6]
    table = f"drv_asyncpg_{os.getpid()}_{db}"

    async def connect():
        return await asyncpg.connect(host=host, port=int(port), user=user,
                                     password=password, database=db, ssl=False,
                                     timeout=10)

    c1 = await connect()
    c2 = await connect()
    try:
        assert await c1.fetchval("SELECT 1") == 1
        assert await c1.fetchval("SELECT $1::int + $2::int", 2, 3) == 5
        assert await c2.fetchval("SELECT $1::text || $2::text", "a", "b") == "ab"

        await c1.execute(f"DROP TABLE IF EXISTS {table}")
        await c1.execute(f"CREATE TABLE {table} (id int, note text)")
        async with c1.transaction():
            await c1.execute(f"INSERT INTO {table} VALUES ($1, $2)", 1, "kept")
        try:
            async with c1.transaction():
                await c1.execute(f"INSERT INTO {table} VALUES ($1, $2)", 2, "lost")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        rows = await c2.fetch(f"SELECT id, note FROM {table} ORDER BY id")
        assert [tuple(r) for r in rows] == [(1, "kept")], rows

        s1 = await c1.prepare("SELECT $1::int * 2")
        s2 = await c2.prepare("SELECT $1::text || '!'")
        for i in range(30):
            assert await s1.fetchval(i) == i * 2
            assert await s2.fetchval(str(i)) == f"{i}!"
            # The statement cache: the same text again reuses its statement.
            assert await c1.fetchval(f"SELECT count(*) + $1 FROM {table}", i) == i + 1
            assert await c2.fetchval("SELECT $1::int - 1", i) == i - 1

        await c1.executemany(f"INSERT INTO {table} VALUES ($1, $2)",
                             [(10 + i, "many") for i in range(5)])
        assert await c2.fetchval(f"SELECT count(*) FROM {table}") == 6
        await c1.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        await c1.close()
        await c2.close()
    print(f"asyncpg {asyncpg.__version__} ok against {db}")


if __name__ == "__main__":
    asyncio.run(main())
