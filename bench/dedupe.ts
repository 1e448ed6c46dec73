/**
 * Dedupe benchmarks, in three parts (results: bench/RESULTS-dedupe.md):
 * 1. MinHash signature throughput: in-thread against a 2-thread worker pool, on the FineWeb sample repeated.
 * 2. The exactDedupe and nearDedupe operators through the engine (memory source → operator(s) → counting
 *    sink), docs/s, on distinct documents made from the FineWeb sample (every third word replaced by a random
 *    word of the sample, so no two share a 5-shingle) with 5% exact and 5% near copies planted.
 * 3. Memory per million kept documents of each operator's index (their `bytes`, checked against the growth of
 *    process.memoryUsage().arrayBuffers), from 1M synthetic keys, signatures and FineWeb-style ids. Runs
 *    first, so no garbage of the other parts blurs the arrayBuffers figures.
 *
 *   node --expose-gc --import tsx bench/dedupe.ts [--docs 20000] [--batch 256] [--million 1000000] [--threads 2]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import { exactDedupe } from '../operators/dedupe/exact-dedupe.js';
import { IdStore } from '../operators/dedupe/id-store.js';
import { KeyTable } from '../operators/dedupe/key-table.js';
import { LshIndex } from '../operators/dedupe/lsh.js';
import { MinHasher } from '../operators/dedupe/minhash.js';
import type { MinHashResult } from '../operators/dedupe/minhash-worker.js';
import { createMinHashPool, nearDedupe } from '../operators/dedupe/near-dedupe.js';
import type { DropNote, DropNoteSink, Ledger, Ticket } from '../pipeline/ledger.js';
import type { BatchOperator, RecordOperator } from '../pipeline/operator.js';
import { packTexts, transferablesOf } from '../pipeline/pool/packed-texts.js';
import { pipeline, type RunReport } from '../pipeline/run.js';
import type { Envelope, Sink, Source } from '../pipeline/source.js';
import { seededRandom } from '../pipeline/random.js';
import { trueJaccard } from '../test/helpers/jaccard.js';

const FINEWEB = path.resolve(import.meta.dirname, '../../shared/data/web/fineweb-sample.snappy.parquet');
const { values } = parseArgs({
  options: {
    docs: { type: 'string' },
    batch: { type: 'string' },
    million: { type: 'string' },
    threads: { type: 'string' },
  },
});
const target = Number(values.docs ?? 20_000);
const batchSize = Number(values.batch ?? 256);
const million = Number(values.million ?? 1_000_000);
const threads = Number(values.threads ?? 2);
const options = { shingle: 5, numPerm: 128, seed: 1 };

const db = await DuckDBInstance.create(':memory:');
const sample = (await (await db.connect()).runAndReadAll(`SELECT id, text FROM '${FINEWEB}'`))
  .getRowsJS()
  .map((row) => ({ id: row[0] as string, text: row[1] as string }));

function rate(n: number, ms: number): string {
  return `${Math.round(n / (ms / 1000))
    .toLocaleString('en-US')
    .padStart(8)} docs/s  (${ms.toFixed(0)} ms)`;
}

// ---- 3. Memory per million kept documents --------------------------------------------------------------------

function arrayBuffers(): number {
  globalThis.gc?.();
  return process.memoryUsage().arrayBuffers;
}

{
  console.log(`## memory of the indexes at ${million.toLocaleString('en-US')} kept documents`);
  const random = seededRandom(3);
  const idOf = (i: number): string => `<urn:uuid:${i.toString(16).padStart(36, '0')}>`; // 47 bytes, as FineWeb
  let before = arrayBuffers();
  const ids = new IdStore();
  for (let i = 0; i < million; i++) ids.add(idOf(i));
  const idBytes = ids.bytes;
  console.log(
    `ids (47-byte)   ${(idBytes / million).toFixed(1)} B/doc  (arrayBuffers +${(arrayBuffers() - before) / 1e6} MB)`,
  );

  before = arrayBuffers();
  const table = new KeyTable();
  for (let i = 0; i < million; i++) table.add((random() * 2 ** 32) >>> 0, (random() * 2 ** 32) >>> 0, i);
  console.log(
    `exact table     ${(table.bytes / million).toFixed(1)} B/doc  (arrayBuffers +${(arrayBuffers() - before) / 1e6} MB)`,
  );

  before = arrayBuffers();
  const index = new LshIndex(128);
  const signature = new Uint32Array(128);
  let start = performance.now();
  for (let i = 0; i < million; i++) {
    for (let p = 0; p < 128; p++) signature[p] = (random() * 0x7fffffff) >>> 0;
    index.add(signature);
  }
  const addMs = performance.now() - start;
  console.log(
    `LSH 16x8        ${(index.bytes / million).toFixed(1)} B/doc  (arrayBuffers +${(arrayBuffers() - before) / 1e6} MB)` +
      `, ${rate(million, addMs).trim()} to insert`,
  );
  start = performance.now();
  let found = 0;
  for (let i = 0; i < 100_000; i++) {
    for (let p = 0; p < 128; p++) signature[p] = (random() * 0x7fffffff) >>> 0;
    if (index.findDuplicate(signature, 0.8) !== undefined) found++;
  }
  console.log(
    `LSH query (unrelated docs)  ${rate(100_000, performance.now() - start).trim()}, ${found} false hits`,
  );
  console.log(
    `per kept document: exact ${((table.bytes + idBytes) / million).toFixed(0)} B, ` +
      `near ${((index.bytes + idBytes) / million).toFixed(0)} B (with 47-byte ids)`,
  );
  // Keeps all three alive to here, so the collector frees none of them while later ones are measured.
  if (ids.size + table.size + index.size !== 3 * million) throw new Error('lost documents');
}

// ---- 1. Signatures: in-thread against the pool --------------------------------------------------------------

{
  const texts = Array.from({ length: target }, (_, i) => sample[i % sample.length]!.text);
  const batches: string[][] = [];
  for (let i = 0; i < texts.length; i += batchSize) batches.push(texts.slice(i, i + batchSize));
  const megabytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0) / 1e6;
  console.log(
    `## signatures: ${texts.length} docs, ${megabytes.toFixed(1)} MB of text, batches of ${batchSize}`,
  );
  // In-thread: packing is included, as the pool pays for it too.
  const hasher = new MinHasher(options);
  hasher.signPacked(packTexts(batches[0]!)); // warm up the JIT
  let start = performance.now();
  for (const batch of batches) hasher.signPacked(packTexts(batch));
  console.log(`in-thread              ${rate(texts.length, performance.now() - start)}`);
  const pool = createMinHashPool(threads);
  const runBatch = (batch: string[]): Promise<MinHashResult> => {
    const packed = packTexts(batch);
    return pool.run<MinHashResult>({ texts: packed, ...options }, { transferList: transferablesOf(packed) });
  };
  await Promise.all([runBatch(batches[0]!), runBatch(batches[1] ?? batches[0]!)]); // start and warm workers
  start = performance.now();
  await Promise.all(batches.map(runBatch));
  console.log(`pool, ${threads} threads        ${rate(texts.length, performance.now() - start)}`);
  await pool.close();
}

// ---- 2. The operators through the engine ---------------------------------------------------------------------

interface Doc {
  readonly id: string;
  readonly text: string;
}

/** Near copies planted by `corpus`: document index -> index of the document it copies. */
const nearCopies = new Map<number, number>();

function corpus(n: number): Doc[] {
  const random = seededRandom(17);
  const vocabulary = [...new Set(sample.flatMap((d) => d.text.split(/\s+/)))];
  const pick = (): string => vocabulary[Math.floor(random() * vocabulary.length)]!;
  const docs: Doc[] = [];
  for (let i = 0; i < n; i++) {
    const r = random();
    if (i > 100 && r < 0.05) {
      docs.push({ id: `exact-${i}`, text: docs[Math.floor(random() * i)]!.text.toUpperCase() });
    } else if (i > 100 && r < 0.1) {
      const of = Math.floor(random() * i);
      const words = docs[of]!.text.split(' ');
      for (let e = 0; e < 3; e++) words[Math.floor(random() * words.length)] = pick();
      nearCopies.set(i, of);
      docs.push({ id: `near-${i}`, text: words.join(' ') });
    } else {
      const words = sample[i % sample.length]!.text.split(/\s+/);
      for (let w = 0; w < words.length; w += 3) words[w] = pick();
      docs.push({ id: `<urn:uuid:${i.toString(16).padStart(36, '0')}>`, text: words.join(' ') });
    }
  }
  return docs;
}

class ArraySource implements Source<Doc> {
  readonly name = 'read';
  constructor(private readonly docs: readonly Doc[]) {}
  async expectedRows(): Promise<number> {
    return this.docs.length;
  }
  async *read(ledger: Ledger, signal: AbortSignal): AsyncIterable<Envelope<Doc>> {
    for (let i = 0; i < this.docs.length && !signal.aborted; i++) {
      yield { ticket: ledger.read('bench', i), value: this.docs[i]! };
    }
  }
}

class CountingSink implements Sink<Doc> {
  readonly name = 'write';
  private onCommit: (tickets: readonly Ticket[]) => void = () => {};
  async open(onCommit: (tickets: readonly Ticket[]) => void): Promise<void> {
    this.onCommit = onCommit;
  }
  async write(_value: Doc, ticket: Ticket): Promise<void> {
    this.onCommit([ticket]);
  }
  async close(): Promise<void> {}
}

type DocOperator = RecordOperator<Doc, Doc> | BatchOperator<Doc, Doc>;

async function throughEngine(docs: readonly Doc[], stages: DocOperator[]): Promise<RunReport> {
  let graph = pipeline(new ArraySource(docs));
  for (const stage of stages) graph = graph.pipe(stage);
  const report = await graph.into(new CountingSink(), { queueCapacity: 1024 }).run();
  if (report.status !== 'completed') throw new Error(`run ${report.status}: ${report.error}`);
  return report;
}

{
  const docs = corpus(target);
  const megabytes = docs.reduce((n, d) => n + Buffer.byteLength(d.text), 0) / 1e6;
  console.log(`\n## operators through the engine: ${docs.length} docs, ${megabytes.toFixed(1)} MB of text`);
  const pool = createMinHashPool(threads);
  const textOf = (d: Doc): string => d.text;
  const idOf = (d: Doc): string => d.id;
  const near = (concurrency: number) =>
    nearDedupe<Doc>({ textOf, idOf, pool, batchSize, concurrency, ...options });
  await throughEngine(docs.slice(0, 2_000), [exactDedupe({ textOf, idOf }), near(4)]); // warm up
  const runs: Array<[string, () => DocOperator[]]> = [
    ['exact_dedupe', () => [exactDedupe({ textOf, idOf })]],
    ['near_dedupe, concurrency 1', () => [near(1)]],
    ['near_dedupe, concurrency 4', () => [near(4)]],
    ['exact → near (concurrency 4)', () => [exactDedupe({ textOf, idOf }), near(4)]],
  ];
  for (const [label, make] of runs) {
    const start = performance.now();
    const report = await throughEngine(docs, make());
    const ms = performance.now() - start;
    const dropped = Object.entries(report.totals.dropped)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    console.log(`${label.padEnd(30)} ${rate(docs.length, ms)}  dropped: ${dropped}`);
  }

  // Quality of near_dedupe alone, against true Jaccard similarity computed on word 5-shingle strings.
  const notes: DropNote[] = [];
  const collect: DropNoteSink = { write: (note) => void notes.push(note), close: async () => {} };
  await pipeline(new ArraySource(docs))
    .pipe(near(4))
    .into(new CountingSink(), { queueCapacity: 1024, dropNotes: collect })
    .run();
  const indexOf = new Map(docs.map((d, i) => [d.id, i]));
  const dropped = new Set(notes.map((n) => n.row));
  const buckets = [0.9, 0.85, 0.8, 0.7, 0];
  const caught = buckets.map(() => [0, 0]);
  for (const [copy, of] of nearCopies) {
    const j = trueJaccard(docs[copy]!.text, docs[of]!.text);
    const b = buckets.findIndex((lower) => j >= lower);
    caught[b]![1]! += 1;
    if (dropped.has(copy)) caught[b]![0]! += 1;
  }
  buckets.forEach((lower, b) => {
    const upper = b === 0 ? 1 : buckets[b - 1]!;
    console.log(
      `near copies with true J in [${lower}, ${upper}${b === 0 ? ']' : ')'}: ${caught[b]![0]} of ${caught[b]![1]} dropped`,
    );
  });
  const similarities = notes.map((n) =>
    trueJaccard(docs[n.row]!.text, docs[indexOf.get(n.duplicateOf)!]!.text),
  );
  console.log(
    `drops: ${notes.length}; true J of a drop and its duplicateOf: min ${Math.min(...similarities).toFixed(3)}, ` +
      `${similarities.filter((j) => j < 0.8).length} below 0.8, ${similarities.filter((j) => j < 0.7).length} below 0.7`,
  );
  await pool.close();
}
