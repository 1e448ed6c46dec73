/**
 * MinHash signature throughput: in-thread against a 2-thread worker pool, on the FineWeb sample repeated to
 * ~20k documents (~3 KB each).
 *
 *   npx tsx bench/dedupe.ts [--docs 20000] [--batch 500]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import { MinHasher } from '../operators/dedupe/minhash.js';
import type { MinHashResult } from '../operators/dedupe/minhash-worker.js';
import { packTexts, transferablesOf } from '../pipeline/pool/packed-texts.js';
import { WorkerPool } from '../pipeline/pool/worker-pool.js';

const FINEWEB = path.resolve(import.meta.dirname, '../../shared/data/web/fineweb-sample.snappy.parquet');
const { values } = parseArgs({ options: { docs: { type: 'string' }, batch: { type: 'string' } } });
const target = Number(values.docs ?? 20_000);
const batchSize = Number(values.batch ?? 500);
const options = { shingle: 5, numPerm: 128, seed: 1 };

const db = await DuckDBInstance.create(':memory:');
const sample = (await (await db.connect()).runAndReadAll(`SELECT text FROM '${FINEWEB}'`))
  .getRowsJS()
  .map((row) => row[0] as string);
const texts = Array.from({ length: target }, (_, i) => sample[i % sample.length]!);
const batches: string[][] = [];
for (let i = 0; i < texts.length; i += batchSize) batches.push(texts.slice(i, i + batchSize));
const megabytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0) / 1e6;
console.log(`${texts.length} docs, ${megabytes.toFixed(1)} MB of text, batches of ${batchSize}`);

function report(label: string, ms: number): void {
  const docsPerSecond = Math.round(texts.length / (ms / 1000));
  console.log(
    `${label.padEnd(22)} ${docsPerSecond.toLocaleString('en-US').padStart(8)} docs/s  (${ms.toFixed(0)} ms)`,
  );
}

// In-thread: packing is included, as the pool pays for it too.
const hasher = new MinHasher(options);
hasher.signPacked(packTexts(batches[0]!)); // warm up the JIT
let start = performance.now();
for (const batch of batches) hasher.signPacked(packTexts(batch));
report('in-thread', performance.now() - start);

const extension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const pool = new WorkerPool({
  filename: new URL(`../operators/dedupe/minhash-worker${extension}`, import.meta.url),
  threads: 2,
  maxQueue: 2,
});
const runBatch = (batch: string[]): Promise<MinHashResult> => {
  const packed = packTexts(batch);
  return pool.run<MinHashResult>({ texts: packed, ...options }, { transferList: transferablesOf(packed) });
};
await Promise.all([runBatch(batches[0]!), runBatch(batches[1] ?? batches[0]!)]); // start and warm both workers
start = performance.now();
await Promise.all(batches.map(runBatch));
report('pool, 2 threads', performance.now() - start);
await pool.close();
