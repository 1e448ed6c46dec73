// Generates synthetic, NOT trivially compressible web-crawl shards in the FineWeb column layout,
// built from the real documents of the shared FineWeb sample.
//
// Every generated row starts from one real document (picked with a seeded hash) and replaces a
// seeded-hash-chosen share of its words (default 8 %) with words drawn from the whole sample's
// token stream (synth.mjs). Word order, line breaks and document lengths stay realistic, and
// repeated source documents no longer give long zstd matches. Calibrated so the text column
// compresses like the real sample (real sample with DuckDB: zstd 2.61x, snappy 1.71x; replace 0 % -> 3.44x,
// 5 % -> 2.77x, 10 % -> 2.55x, 20 % -> 2.33x, 50 % -> 2.07x zstd; see RESULTS-raw.md).
//
// Usage: node gen-shards.mjs [--scale 1] [--replace 8] [--seed 1] [--out DIR]
//   --scale 1    -> bench/data/{shard-1g-rg128, shard-500m-rg1, shard-500m.zstd}.parquet
//   --scale 0.01 -> bench/data/scale-0.01/ with every size (text and row groups) x 0.01
import { DuckDBInstance } from '@duckdb/node-api';
import { SAMPLE, hex8, makeSynth } from './synth.mjs';
import { mkdirSync, statSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const scale = Number(args.scale ?? 1);
const replacePct = Number(args.replace ?? 8);
const seed = Number(args.seed ?? 1) >>> 0;
const outDir = resolve(args.out ?? (scale === 1 ? join(here, '../data') : join(here, `../data/scale-${scale}`)));

const MiB = 1024 * 1024;
const TOTAL_TEXT = Math.round(1024 * MiB * scale); // >= 1 GiB of text for shard-1g
const HALF_TEXT = Math.round(500 * MiB * scale); // ~500 MiB of text for the two 500m shards
const RG_1G = 128 * MiB * scale; // row groups of ~128 MiB of text
const RG_500M_ZSTD = 64 * MiB * scale; // "several" row groups (~8) for the comparison file

const t0 = performance.now();
mkdirSync(outDir, { recursive: true });
const db = await DuckDBInstance.create(':memory:', { threads: '2' });
const con = await db.connect();

// 1. real documents
const src = (await con.runAndReadAll(`SELECT text, url, date FROM '${SAMPLE}'`)).getRowObjects();
const synth = makeSynth(src.map((r) => r.text), { replacePct, seed });
console.log(`sample: ${src.length} docs; scale=${scale} replace=${replacePct}% seed=${seed}`);

// 2. generate rows into an in-memory DuckDB table with the FineWeb column layout
await con.run(`CREATE TABLE gen (text VARCHAR, id VARCHAR, dump VARCHAR, url VARCHAR, date VARCHAR,
  file_path VARCHAR, language VARCHAR, language_score DOUBLE, token_count BIGINT)`);
const app = await con.createAppender('gen');
const dumps = ['CC-MAIN-2019-18', 'CC-MAIN-2021-04', 'CC-MAIN-2023-06', 'CC-MAIN-2024-10'];
let textBytes = 0;
let halfRows = 0;
let rows = 0;
while (textBytes < TOTAL_TEXT) {
  const { text, d, h, h2 } = synth(rows);
  const bytes = Buffer.byteLength(text);
  const dump = dumps[h2 & 3];
  app.appendVarchar(text);
  app.appendVarchar(hex8(h) + hex8(h2));
  app.appendVarchar(dump);
  const u = src[d].url ?? 'https://unknown.example.org/'; // 10 sample rows have a null url/date
  app.appendVarchar(`${u}${u.endsWith('/') ? '' : '/'}${rows.toString(36)}`);
  app.appendVarchar(src[d].date ?? '2019-04-20T00:00:00Z');
  app.appendVarchar(
    `s3://commoncrawl/crawl-data/${dump}/segments/1555578${(h2 >>> 8) % 1000000}.${h2 % 100}/warc/${dump}-${String(h2 % 640).padStart(5, '0')}.warc.gz`,
  );
  app.appendVarchar('en');
  app.appendDouble(0.65 + (h2 % 35000) / 100000);
  app.appendBigInt(BigInt(Math.round(bytes / 4.4)));
  app.endRow();
  rows++;
  textBytes += bytes;
  if (!halfRows && textBytes >= HALF_TEXT) halfRows = rows;
}
app.closeSync();
const avg = textBytes / rows;
const tGen = performance.now();
console.log(`generated ${rows} rows, ${(textBytes / 1e6).toFixed(1)} MB text (avg ${avg.toFixed(0)} B/row) in ${((tGen - t0) / 1000).toFixed(1)} s; first ${halfRows} rows = ${(HALF_TEXT / 1e6).toFixed(1)}+ MB`);

// 3. write the shards. ROW_GROUP_SIZE is in rows, derived from the measured average text size; DuckDB
// flushes a row group once it holds >= ROW_GROUP_SIZE rows, counted in 2,048-row vectors, so round down
// to a multiple of 2,048 to get the intended size instead of up to one vector more.
const rg = (bytes) => Math.max(2048, Math.floor(bytes / avg / 2048) * 2048);
const shards = [
  { name: 'shard-1g-rg128.parquet', where: '', comp: 'zstd', rgRows: rg(RG_1G) },
  { name: 'shard-500m-rg1.parquet', where: `WHERE rowid < ${halfRows}`, comp: 'snappy', rgRows: halfRows + 1 },
  { name: 'shard-500m.zstd.parquet', where: `WHERE rowid < ${halfRows}`, comp: 'zstd', rgRows: rg(RG_500M_ZSTD) },
];
for (const s of shards) {
  const path = join(outDir, s.name);
  rmSync(path, { force: true });
  const t = performance.now();
  await con.run(
    `COPY (SELECT * FROM gen ${s.where} ORDER BY rowid) TO '${path}' (FORMAT parquet, COMPRESSION ${s.comp}, ROW_GROUP_SIZE ${s.rgRows})`,
  );
  const meta = (
    await con.runAndReadAll(`SELECT count(DISTINCT row_group_id) AS row_groups, max(row_group_num_rows) AS max_rg_rows,
      sum(total_uncompressed_size) FILTER (WHERE path_in_schema = 'text') AS text_uncompressed,
      sum(total_compressed_size) FILTER (WHERE path_in_schema = 'text') AS text_compressed,
      sum(total_compressed_size) AS all_compressed
      FROM parquet_metadata('${path}')`)
  ).getRowObjects()[0];
  const rowsInFile = (await con.runAndReadAll(`SELECT num_rows FROM parquet_file_metadata('${path}')`)).getRows()[0][0];
  const rgSizes = (
    await con.runAndReadAll(`SELECT row_group_id, any_value(row_group_num_rows) AS n,
      sum(total_uncompressed_size) FILTER (WHERE path_in_schema = 'text') AS text_u
      FROM parquet_metadata('${path}') GROUP BY row_group_id ORDER BY row_group_id`)
  ).getRows();
  console.log(
    `${s.name}: ${(statSync(path).size / 1e6).toFixed(1)} MB on disk, ${rowsInFile} rows, ${meta.row_groups} row groups ` +
      `(${s.comp}, ROW_GROUP_SIZE ${s.rgRows} rows), text column ${(Number(meta.text_uncompressed) / 1e6).toFixed(1)} MB uncompressed -> ` +
      `${(Number(meta.text_compressed) / 1e6).toFixed(1)} MB (${(Number(meta.text_uncompressed) / Number(meta.text_compressed)).toFixed(2)}x); ` +
      `written in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
  console.log(`  row groups (rows, text MB uncompressed): ${rgSizes.map(([, n, u]) => `${n}/${(Number(u) / 1e6).toFixed(0)}`).join(' ')}`);
}
console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s, maxRSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
