/**
 * How often DuckDB's streaming result ends without an error where it should report one: a shard whose row
 * group 1 holds invalid UTF-8, read whole with 1 and 2 threads, and row group 1 read alone with 2 threads.
 * This is why the Parquet source reads a row group again alone after a short stream (parquet-source.ts).
 *
 *   npx tsx bench/duckdb-silent-stop.ts [reads per case, default 300]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { openDuckDB } from '../pipeline/io/duckdb.js';

const reads = Number(process.argv[2] ?? 300);
const dir = mkdtempSync(path.join(os.tmpdir(), 'air-silent-'));
const file = path.join(dir, 'utf8.parquet');
const texts = Array.from({ length: 250 }, (_, i) => new TextEncoder().encode(`row ${i} `.repeat(40)));
texts[120] = new Uint8Array([...texts[120]!.subarray(0, 5), 0xff, ...texts[120]!.subarray(5)]);
writeFileSync(
  file,
  new Uint8Array(
    parquetWriteBuffer({ columnData: [{ name: 'text', data: texts, type: 'STRING' }], rowGroupSize: 100 }),
  ),
);

async function tally(threads: number, where: string): Promise<{ error: number; silent: number }> {
  const db = await openDuckDB({ threads });
  const counts = { error: 0, silent: 0 };
  for (let n = 0; n < reads; n++) {
    const conn = await db.connect();
    await conn.run(`SET streaming_buffer_size = '1KB'`);
    try {
      const result = await conn.stream(
        `SELECT text, file_row_number FROM read_parquet('${file}', file_row_number=true) ${where}`,
      );
      for (;;) {
        const chunk = await result.fetchChunk();
        if (chunk === null || chunk.rowCount === 0) break;
        chunk.getColumns();
      }
      counts.silent++;
    } catch {
      counts.error++;
    } finally {
      conn.closeSync();
    }
  }
  db.closeSync();
  return counts;
}

const cases: Array<[string, number, string]> = [
  ['whole file, 1 thread', 1, ''],
  ['whole file, 2 threads', 2, ''],
  ['row group 1 alone, 2 threads', 2, 'WHERE file_row_number >= 100 AND file_row_number < 200'],
];
console.log(`| case | reads | UTF-8 error reported | stream ended without error or row |`);
console.log(`| --- | ---: | ---: | ---: |`);
for (const [name, threads, where] of cases) {
  const { error, silent } = await tally(threads, where);
  console.log(`| ${name} | ${reads} | ${error} | ${silent} |`);
}
rmSync(dir, { recursive: true, force: true });
