// Shows that a DuckDB streaming read that hits an error (here: Out of Memory under a small memory_limit)
// ends like a finished stream: fetchChunk() returns an empty chunk, nothing is thrown, rows are missing.
// The same query materialised (an aggregate) throws the OOM error.
//
// Usage: node duckdb-stream-oom.mjs [FILE] [threads] [memory_limit]
//   default: ../data/shard-500m-rg1.parquet 1 256MB
import { DuckDBInstance } from '@duckdb/node-api';

const [file = new URL('../data/shard-500m-rg1.parquet', import.meta.url).pathname, threads = '1', mem = '256MB'] = process.argv.slice(2);
const db = await DuckDBInstance.create(':memory:', { threads, memory_limit: mem });
const con = await db.connect();
const expected = Number((await con.runAndReadAll(`SELECT num_rows FROM parquet_file_metadata('${file}')`)).getRows()[0][0]);

// 1. stream + fetchChunk; 2. the async iterator. An error while con.stream() starts the query is thrown,
// an error during a later fetch is not.
for (const mode of ['fetchChunk', 'async iterator']) {
  let rows = 0;
  let threw = null;
  try {
    const result = await con.stream(`SELECT text, id, url FROM read_parquet('${file}')`);
    if (mode === 'fetchChunk') {
      for (;;) {
        const chunk = await result.fetchChunk();
        if (!chunk || chunk.rowCount === 0) break;
        rows += chunk.rowCount;
      }
    } else {
      for await (const chunk of result) rows += chunk.rowCount;
    }
  } catch (e) {
    threw = e.message.split('\n')[0];
  }
  console.log(`threads=${threads} memory_limit=${mem} ${mode}: read ${rows} of ${expected} rows; ${threw ? `THREW: ${threw}` : rows === expected ? 'complete' : 'NO ERROR, ROWS MISSING'}`);
}

try {
  await con.runAndReadAll(`SELECT sum(strlen(text)) FROM read_parquet('${file}')`);
  console.log('materialised aggregate: ok');
} catch (e) {
  console.log(`materialised aggregate threw: ${e.message.split('\n')[0]}`);
}
