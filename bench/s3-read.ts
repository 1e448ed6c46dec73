/**
 * How to read a Parquet shard that lives in S3-compatible storage, measured against the same shard on disk, in
 * one run on one machine: a real S3 server (s3rver) on 127.0.0.1 serves the object.
 *
 *   npm run build && npx tsx bench/s3-read.ts [rows=100000] [rowGroupRows=10000]
 *
 * Every path reads the text column of every row into JS strings, as air's source does (DuckDB paths with a
 * file_row_number filter, as the source queries):
 *   disk         DuckDB over the local file (air's reader for local shards)
 *   staged-rg    a sparse local stand-in per row group (footer + that row group's byte range, fetched with
 *                one ranged GET each), read by DuckDB; the next row group is fetched while one is read
 *   staged-32mb  the same with consecutive row groups of up to 32 MB in one stand-in (air's source)
 *   whole-copy   the whole object downloaded to a local file first, then DuckDB
 *   hyparquet    hyparquet over ranged GETs, one row group at a time (text column only)
 * and DuckDB's own httpfs, which is tried and fails here (not bundled; it is downloaded at run time).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { parquetMetadataAsync, parquetRead, type AsyncBuffer } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { StagedShard } from '../pipeline/io/object-store/staged-shard.js';
import { stageSpans, type StageSpan } from '../pipeline/io/parquet-source.js';
import { s3Client, startS3Server } from '../test/helpers/s3-server.js';

const rows = Number(process.argv[2] ?? 100_000);
const groupRows = Number(process.argv[3] ?? 10_000);

/** Text of real-looking statistics: words drawn from a 20k vocabulary, 150-350 words a document. */
function makeShard(): Uint8Array {
  let seed = 42;
  const rand = (): number => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const vocab = Array.from({ length: 20_000 }, (_, i) => (i * 2654435761).toString(36).slice(0, 3 + (i % 8)));
  const ids: string[] = [];
  const texts: string[] = [];
  for (let r = 0; r < rows; r++) {
    const n = 150 + Math.floor(rand() * 200);
    const words: string[] = [];
    for (let w = 0; w < n; w++) words.push(vocab[Math.floor(rand() ** 2 * vocab.length)]!);
    ids.push(`doc-${r}`);
    texts.push(words.join(' '));
  }
  return new Uint8Array(
    parquetWriteBuffer({
      columnData: [
        { name: 'id', data: ids, type: 'STRING' },
        { name: 'text', data: texts, type: 'STRING' },
      ],
      rowGroupSize: groupRows,
    }),
  );
}

async function drain(conn: DuckDBConnection, sql: string): Promise<{ rows: number; chars: number }> {
  const result = await conn.stream(sql);
  let n = 0;
  let chars = 0;
  for (;;) {
    const chunk = await result.fetchChunk();
    if (chunk === null || chunk.rowCount === 0) return { rows: n, chars };
    for (const text of chunk.getColumns()[0]!) chars += String(text).length;
    n += chunk.rowCount;
  }
}

const scratch = await mkdtemp(path.join(os.tmpdir(), 'air-s3-bench-'));
const file = path.join(scratch, 'shard.parquet');
await writeFile(file, makeShard());
const size = (await stat(file)).size;
const server = await startS3Server(['bench']);
const store = s3Client(server, 64);
const url = { bucket: 'bench', key: 'web/shard.parquet' };
await store.upload(file, url);
const object = await store.head(url);
const db = await DuckDBInstance.create(':memory:', { threads: '2' });
const conn = await db.connect();
await conn.run(`SET streaming_buffer_size = '1KB'`);

const ROUNDS = 3;
const results: Array<{ path: string; seconds: number; rows: number }> = [];
const paths: Array<[string, () => Promise<number>]> = [];
function time(name: string, fn: () => Promise<number>): void {
  paths.push([name, fn]);
}

time(
  'disk',
  async () =>
    (
      await drain(
        conn,
        `SELECT text FROM read_parquet('${file}', file_row_number=true) WHERE file_row_number >= 0`,
      )
    ).rows,
);

let peakStaged = 0;
/** The staged path as air's source takes it: `spans` cuts row groups into fetches (one each, or up to 32 MB). */
function staged(name: string, spansOf: (staged: StagedShard) => StageSpan[]): void {
  time(name, async () => {
    const shard = await StagedShard.open(store, object, scratch, name);
    const spans = spansOf(shard);
    let n = 0;
    const fetch = (k: number): Promise<string> | undefined =>
      k < spans.length ? shard.rowGroupFile(spans[k]!.first, spans[k]!.last) : undefined;
    let next = fetch(0);
    for (let k = 0; k < spans.length; k++) {
      const local = await next!;
      next = fetch(k + 1);
      peakStaged = Math.max(peakStaged, (await stat(local)).blocks * 512);
      const start = spans[k]!.first * groupRows;
      const end = spans[k]!.last * groupRows;
      n += (
        await drain(
          conn,
          `SELECT text FROM read_parquet('${local}', file_row_number=true) ` +
            `WHERE file_row_number >= ${start} AND file_row_number < ${end}`,
        )
      ).rows;
      await shard.remove(local);
    }
    return n;
  });
}
staged('staged-rg', (shard) => shard.rowGroups.map((_, g) => ({ first: g, last: g + 1, needed: true })));
staged('staged-32mb', (shard) =>
  stageSpans(
    shard.rowGroups.length,
    () => true,
    (g) => shard.rowGroups[g]![1] - shard.rowGroups[g]![0],
  ),
);

time('whole-copy', async () => {
  const copy = path.join(scratch, 'copy.parquet');
  await writeFile(copy, '');
  const { truncate } = await import('node:fs/promises');
  await truncate(copy, object.size);
  await store.download(url, copy, 0, object.size, object.etag);
  const n = (
    await drain(
      conn,
      `SELECT text FROM read_parquet('${copy}', file_row_number=true) WHERE file_row_number >= 0`,
    )
  ).rows;
  await rm(copy);
  return n;
});

time('hyparquet', async () => {
  const buffer: AsyncBuffer = {
    byteLength: object.size,
    slice: async (start, end) => {
      const bytes = await store.read(url, start, end ?? object.size, object.etag);
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    },
  };
  const metadata = await parquetMetadataAsync(buffer);
  let n = 0;
  for (let start = 0; start < rows; start += groupRows) {
    await parquetRead({
      file: buffer,
      metadata,
      columns: ['text'],
      rowStart: start,
      rowEnd: start + groupRows,
      onComplete: (data: unknown[][]) => {
        n += data.length;
      },
    });
  }
  return n;
});

// Rounds, each path once per round in turn, so that load from other processes spreads over all of them.
const seconds = new Map<string, number[]>();
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, fn] of paths) {
    const t0 = performance.now();
    const n = await fn();
    seconds.set(name, [...(seconds.get(name) ?? []), (performance.now() - t0) / 1000]);
    if (round === ROUNDS - 1) {
      const all = seconds.get(name)!.sort((a, b) => a - b);
      results.push({ path: name, seconds: all[Math.floor(all.length / 2)]!, rows: n });
    }
  }
}

// The whole job (air run, documents method: read, length filter, write) on the shard from disk and from the
// bucket, each in its own process: wall time and peak RSS (the ledger's, VmHWM of that process).
const AIR = path.resolve(import.meta.dirname, '../dist/cli/air.js');
const run = promisify(execFile);
const jobs: Array<{ input: string; seconds: number; peakRssMB: number; rows: number }> = [];
for (const input of [file, 's3://bench/web/shard.parquet']) {
  const out = path.join(scratch, `job-${jobs.length}`);
  const t0 = performance.now();
  // Not spawnSync: the S3 server runs in this process and must go on answering.
  await run(
    process.execPath,
    [AIR, 'run', '--input', input, '--output', out, '--method', 'documents', '--no-dedupe'].concat([
      '--min-words',
      '0',
      '--progress',
      'off',
      '--s3-endpoint',
      server.endpoint,
    ]),
    { env: process.env },
  );
  const ledger = JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as {
    resources: { peakRssMB: number };
    totals: { read: number };
  };
  jobs.push({
    input: input.startsWith('s3://') ? 's3' : 'disk',
    seconds: (performance.now() - t0) / 1000,
    peakRssMB: ledger.resources.peakRssMB,
    rows: ledger.totals.read,
  });
}

let httpfs = 'loaded';
try {
  await conn.run('LOAD httpfs');
} catch (error) {
  httpfs = String(error instanceof Error ? error.message : error)
    .split('\n')[0]!
    .slice(0, 160);
}

const disk = results[0]!.seconds;
console.log(`shard: ${rows} rows, ${groupRows} rows per row group, ${(size / 1e6).toFixed(1)} MB (snappy)`);
console.log(`| path | s (median of ${ROUNDS}) | MB/s of file | rows/s | vs disk |`);
console.log('|---|---|---|---|---|');
for (const r of results) {
  console.log(
    `| ${r.path} | ${r.seconds.toFixed(2)} | ${(size / 1e6 / r.seconds).toFixed(0)} | ` +
      `${Math.round(r.rows / r.seconds).toLocaleString('en-US')} | ${(disk / r.seconds).toFixed(2)}x |` +
      (r.rows !== rows ? ` ROWS ${r.rows}` : ''),
  );
}
console.log('\n| air run --method documents | s | peak RSS MB | rows read |');
console.log('|---|---|---|---|');
for (const j of jobs) console.log(`| ${j.input} | ${j.seconds.toFixed(2)} | ${j.peakRssMB} | ${j.rows} |`);
console.log(`staged: largest stand-in on disk ${(peakStaged / 1e6).toFixed(1)} MB`);
console.log(`DuckDB LOAD httpfs: ${httpfs}`);
db.closeSync();
store.close();
await server.close();
await rm(scratch, { recursive: true, force: true });
