"""psycopg 3 through the pooler: connect, simple and parameterized
queries, transactions, server-side prepared statements (prepare=True) on
two connections whose statement names collide, and a pipeline.

usage: psycopg_driver.py HOST PORT USER PASSWORD DB
"""
import os
import sys

try:
    import psycopg
except ImportError as e:
    sys.exit(f"psycopg is not installed ({e}): pip install 'psycopg[binary]'")


def main():
    host, port, user, password, db = sys.argv[1:6]
    params = dict(host=host, port=int(port), user=user, password=password,
                  dbname=db, sslmode="disable", connect_timeout=10)
    table = f"drv_psycopg_{os.getpid()}_{db}"
    with psycopg.connect(**params, autocommit=True) as c1, \
            psycopg.connect(**params, autocommit=True) as c2:
        assert c1.execute("SELECT 1").fetchone()[0] == 1
        assert c1.execute("SELECT %s::int + %s::int", (2, 3)).fetchone()[0] == 5
        assert c2.execute("SELECT %s || %s", ("a", "b")).fetchone()[0] == "ab"

        c1.execute(f"DROP TABLE IF EXISTS {table}")
        c1.execute(f"CREATE TABLE {table} (id int, note text)")
        try:
            with c1.transaction():
                c1.execute(f"INSERT INTO {table} VALUES (%s, %s)", (1, "kept"))
            try:
                with c1.transaction():
                    c1.execute(f"INSERT INTO {table} VALUES (%s, %s)", (2, "lost"))
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
            rows = c2.execute(f"SELECT id, note FROM {table} ORDER BY id").fetchall()
            assert rows == [(1, "kept")], rows

            # Both connections name their statements _pg3_0, _pg3_1, ...
            for i in range(30):
                r1 = c1.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone()[0]
                r2 = c2.execute("SELECT %s::text || '!'", (str(i),), prepare=True).fetchone()[0]
                r3 = c1.execute(f"SELECT count(*) + %s FROM {table}", (i,), prepare=True).fetchone()[0]
                assert (r1, r2, r3) == (i * 2, f"{i}!", i + 1), (i, r1, r2, r3)

            with c1.pipeline():
                curs = [c1.execute("SELECT %s::int + 100", (i,)) for i in range(10)]
                c1.execute(f"INSERT INTO {table} VALUES (%s, %s)", (3, "piped"))
            assert [cur.fetchone()[0] for cur in curs] == [i + 100 for i in range(10)]
            assert c2.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 2
        finally:
            c1.execute(f"DROP TABLE IF EXISTS {table}")
    print(f"psycopg {psycopg.__version__} ok against {db}")


if __name__ == "__main__":
    main()
