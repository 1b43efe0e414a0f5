// Reads the archive files a Go test wrote with DuckDB and checks each
// against what the test expects of it: the rows in order, column types,
// key-value metadata, and a filter on event_time (which DuckDB answers with
// the row groups' statistics); and that it reads each file of encode's as
// it reads the reference writer's file of the same rows. DuckDB drops a
// string's leading U+FEFF, from either writer's files: the check does too.
// Usage: node duckdb-check.cjs DIR; DIR holds
// cases.json. Needs the npm package @duckdb/node-api on NODE_PATH.
const fs = require('fs');
const path = require('path');
const { DuckDBInstance } = require('@duckdb/node-api');

function same(got, want) {
  if (typeof want === 'number') return Object.is(got, want);
  if (typeof want === 'string') return got === want.replace(/^\uFEFF/, '');
  return got === want;
}

const show = (rows) => JSON.stringify(rows, (k, v) => Object.is(v, -0) ? '-0' : v);

async function main() {
  const dir = process.argv[2];
  const cases = JSON.parse(fs.readFileSync(path.join(dir, 'cases.json'), 'utf8'));
  const db = await DuckDBInstance.create(':memory:', { threads: '1' });
  const conn = await db.connect();
  await conn.run("SET TimeZone = 'UTC'");
  let failed = 0;
  const read = {};
  const fail = (c, msg) => { failed++; console.log(`${c.file}: ${msg}`); };
  for (const c of cases) {
    c.fields = c.fields || [];
    const file = path.join(dir, c.file).replaceAll("'", "''");
    const q = (s) => '"' + s.replaceAll('"', '""') + '"';
    const cols = ['CAST(epoch_ms(event_time) AS VARCHAR)', 'CAST(epoch_ms(arrival) AS VARCHAR)', 'origin_stream', 'CAST(origin_offset AS VARCHAR)'];
    for (const f of c.fields) cols.push(f.type === 'int64' ? `CAST(${q(f.name)} AS VARCHAR)` : q(f.name));
    const rows = (await conn.runAndReadAll(`SELECT ${cols.join(', ')} FROM read_parquet('${file}')`)).getRowsJS();
    read[c.file] = show(rows);
    const twin = c.file.startsWith('ref-') ? 'new-' + c.file.slice(4) : null;
    if (twin && read[twin] !== read[c.file]) fail(c, `reads otherwise than ${twin}`);
    if (rows.length !== c.rows.length) { fail(c, `${rows.length} rows, want ${c.rows.length}`); continue; }
    for (let i = 0; i < rows.length; i++) {
      const g = rows[i], w = c.rows[i];
      if (g.length !== w.length || g.some((v, j) => !same(v, w[j]))) {
        fail(c, `row ${i}: got ${show(g)}, want ${show(w)}`);
        break;
      }
    }
    const types = Object.fromEntries((await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${file}')`)).getRowsJS().map(r => [r[0], r[1]]));
    const want = { event_time: 'TIMESTAMP WITH TIME ZONE', arrival: 'TIMESTAMP WITH TIME ZONE', origin_stream: 'VARCHAR', origin_offset: 'BIGINT' };
    const duck = { int64: 'BIGINT', float64: 'DOUBLE', string: 'VARCHAR', bool: 'BOOLEAN' };
    for (const f of c.fields) want[f.name] = duck[f.type];
    if (JSON.stringify(Object.entries(types).sort()) !== JSON.stringify(Object.entries(want).sort())) {
      fail(c, `types ${JSON.stringify(types)}, want ${JSON.stringify(want)}`);
    }
    const kv = (await conn.runAndReadAll(`SELECT decode(key), decode(value) FROM parquet_kv_metadata('${file}') ORDER BY 1`)).getRowsJS();
    if (JSON.stringify(kv) !== JSON.stringify([['kiln.archive.format', '1'], ['kiln.archive.source', c.source]])) {
      fail(c, `key-value metadata ${JSON.stringify(kv)}`);
    }
    const n = (await conn.runAndReadAll(`SELECT count(*)::VARCHAR FROM read_parquet('${file}') WHERE event_time >= epoch_ms(${c.from}::BIGINT)`)).getRowsJS()[0][0];
    if (n !== String(c.countFrom)) fail(c, `${n} rows from ${c.from}, want ${c.countFrom}`);
  }
  console.log(`${cases.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
main().catch((e) => { console.error(e); process.exit(2); });
