// node-postgres through the pooler: simple and parameterized queries, a
// transaction, and named prepared statements whose names collide across
// the two connections with different SQL.
//
// usage: node pg_driver.js HOST PORT USER PASSWORD DB
'use strict';

let pg;
try {
  pg = require('pg');
} catch (e) {
  console.error(`node-postgres is not installed (${e.message}): cd tests/drivers && npm install`);
  process.exit(1);
}

const assert = require('assert');

async function main() {
  const [host, port, user, password, database] = process.argv.slice(2, 7);
  const table = `drv_nodepg_${process.pid}_${database}`;
  const connect = async () => {
    const c = new pg.Client({ host, port: Number(port), user, password, database,
      ssl: false, connectionTimeoutMillis: 10000 });
    await c.connect();
    return c;
  };
  const c1 = await connect();
  const c2 = await connect();
  try {
    assert.strictEqual((await c1.query('SELECT 1 AS v')).rows[0].v, 1);
    assert.strictEqual((await c1.query('SELECT $1::int + $2::int AS v', [2, 3])).rows[0].v, 5);
    assert.strictEqual((await c2.query('SELECT $1::text || $2::text AS v', ['a', 'b'])).rows[0].v, 'ab');

    await c1.query(`DROP TABLE IF EXISTS ${table}`);
    await c1.query(`CREATE TABLE ${table} (id int, note text)`);
    await c1.query('BEGIN');
    await c1.query(`INSERT INTO ${table} VALUES ($1, $2)`, [1, 'kept']);
    await c1.query('COMMIT');
    await c1.query('BEGIN');
    await c1.query(`INSERT INTO ${table} VALUES ($1, $2)`, [2, 'lost']);
    await c1.query('ROLLBACK');
    const rows = (await c2.query(`SELECT id, note FROM ${table} ORDER BY id`)).rows;
    assert.deepStrictEqual(rows, [{ id: 1, note: 'kept' }]);

    // Same statement name on both connections, different SQL.
    for (let i = 0; i < 30; i++) {
      const r1 = await c1.query({ name: 'shared_name', text: 'SELECT $1::int * 2 AS v', values: [i] });
      const r2 = await c2.query({ name: 'shared_name', text: 'SELECT $1::int * 3 AS v', values: [i] });
      const r3 = await c1.query({ name: 'counter', text: `SELECT count(*)::int + $1::int AS v FROM ${table}`, values: [i] });
      assert.strictEqual(r1.rows[0].v, i * 2);
      assert.strictEqual(r2.rows[0].v, i * 3);
      assert.strictEqual(r3.rows[0].v, i + 1);
    }
    // Queries issued without awaiting each other: pipelined by the driver.
    const all = await Promise.all([...Array(10).keys()].map(
      (i) => c1.query({ name: 'piped', text: 'SELECT $1::int + 100 AS v', values: [i] })));
    assert.deepStrictEqual(all.map((r) => r.rows[0].v), [...Array(10).keys()].map((i) => i + 100));
    await c1.query(`DROP TABLE IF EXISTS ${table}`);
  } finally {
    await c1.end();
    await c2.end();
  }
  console.log(`node-postgres ok against ${database}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
