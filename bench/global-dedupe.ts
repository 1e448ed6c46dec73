/**
 * Global dedupe benchmark (results: bench/RESULTS-global-dedupe.md).
 *
 * 1. Key files written directly (no Parquet) for generated documents with planted exact copies, near copies,
 *    repeated ids and three clusters of near copies (big LSH buckets; see Generator): `--signed` documents
 *    (default 100k) with real texts signed in the MinHash worker pool, as the keys pass signs them, timed per
 *    million; and `--docs` (default 2M) with simulated signatures, which 2 shared cores could not sign in the
 *    time.
 * 2. The global step (findGlobalDuplicates) in a fresh process per memory budget, so its peak RSS (VmHWM) is its
 *    own: wall time per million documents, peak RSS, disk bytes per document.
 *    On the signed documents, the drop lists are checked against the streaming operators (unique_ids →
 *    exact_dedupe → near_dedupe through the engine, one process over all shards): they must be identical.
 * 3. The real keys pass (writeDedupeKeys: Parquet → filters → keys) on the FineWeb sample, six shards of it.
 *
 *   node --import tsx bench/global-dedupe.ts [--docs 2000000] [--signed 100000] [--shards 20] [--threads 2] [--memory 256,64]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseRunConfig } from '../job/config.js';
import {
  findGlobalDuplicates,
  writeDedupeKeys,
  type GlobalDedupeSummary,
} from '../job/global-dedupe/index.js';
import { KeyFileWriter, keysDir } from '../job/global-dedupe/key-file.js';
import { dedupeSettings, filterSettings } from '../job/global-dedupe/keys-pass.js';
import { bandKeysInto, sketchValue } from '../operators/dedupe/lsh.js';
import { signatureAt } from '../operators/dedupe/minhash.js';
import { createMinHashPool, signTexts } from '../operators/dedupe/near-dedupe.js';
import { exactKeyInto, hash64Into } from '../operators/dedupe/normalize.js';
import { exactDedupe } from '../operators/dedupe/exact-dedupe.js';
import { nearDedupe } from '../operators/dedupe/near-dedupe.js';
import { uniqueIds } from '../operators/dedupe/unique-ids.js';
import type { DropNote, Ledger } from '../pipeline/ledger.js';
import { peakRssMB } from '../pipeline/memory.js';
import { Rng } from '../pipeline/random.js';
import { pipeline } from '../pipeline/run.js';
import type { Envelope, Source } from '../pipeline/source.js';
import type { Document } from '../schemas/documents.js';
import { CollectingSink } from '../test/helpers/memory.js';

const { values } = parseArgs({
  options: {
    docs: { type: 'string' },
    shards: { type: 'string' },
    threads: { type: 'string' },
    memory: { type: 'string' },
    dir: { type: 'string' },
    step: { type: 'string' },
    signed: { type: 'string' },
  },
});

const config = parseRunConfig({ input: '.', output: '.', method: 'documents' });
const settings = dedupeSettings(config.dedupe);
const near = settings.near!;

if (values.step !== undefined) {
  // Child mode: the global step alone; prints its summary as JSON on the last line.
  const [root, shards] = values.step.split(':') as [string, string];
  const labels = Array.from({ length: Number(shards) }, (_, i) => `shard-${i}.parquet`);
  const baseline = peakRssMB();
  const summary = await findGlobalDuplicates(root, labels, {
    memoryMB: Number(values.memory ?? 256),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  console.log(JSON.stringify({ baselineRssMB: baseline, ...summary }));
  process.exit(0);
}

const docs = Number(values.docs ?? 2_000_000);
const shardCount = Number(values.shards ?? 20);
const threads = Number(values.threads ?? 2);
const budgets = (values.memory ?? '256,64').split(',').map(Number);
const dir = values.dir ?? mkdtempSync(path.join(os.tmpdir(), 'air-bench-gdd-'));
const signedDocs = Number(values.signed ?? 100_000);
const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

// ---- 1. key files ----
const rng = new Rng(42);
const hex = (n: number): string => {
  let s = '';
  for (let i = 0; i < n; i++) s += rng.int(0, 15).toString(16);
  return s;
};
const uuid = (): string => `<urn:uuid:${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}>`;

/** What the generator plants, and what a document is to it: text for real signatures, else its signature. */
interface Planted {
  exact: number;
  near: number;
  ids: number;
  cluster: number;
}
interface Doc {
  id: string;
  text: string;
  signature: Uint32Array | undefined;
  exact: Uint32Array | undefined;
}

/**
 * Documents with planted duplicates, each one of: 4% exact copies of an earlier document, 4% near copies, 0.5%
 * a repeated id on a new text, one in 1,000 a near copy of one of three cluster heads (big buckets), else new.
 * Earlier documents are drawn half from the last 50k, half from a 10k reservoir over all (across shards).
 * `real`: texts of 60-140 words from a 30k-word vocabulary (near copy: 2 words changed, J ~0.8-0.9), signed in
 * the pool. Simulated: no text; a new document's signature is 128 random values (what MinHash of an unrelated
 * set looks like) and a near copy keeps each value with probability J, J uniform in [0.75, 0.95] (0.95 for
 * cluster copies): per permutation, the minima of two sets agree with probability J, which is the statistic
 * LSH and the verification see.
 */
class Generator {
  readonly planted: Planted = { exact: 0, near: 0, ids: 0, cluster: 0 };
  private readonly recent: Doc[] = [];
  private recentAt = 0;
  private readonly reservoir: Doc[] = [];
  private readonly heads: Doc[] = [];
  private made = 0;
  private readonly vocabulary: string[];

  constructor(private readonly real: boolean) {
    this.vocabulary = Array.from({ length: 30_000 }, () => {
      let w = '';
      for (let i = rng.int(3, 9); i > 0; i--) w += String.fromCharCode(97 + rng.int(0, 25));
      return w;
    });
  }

  next(): Doc {
    const i = this.made++;
    const roll = rng.next();
    let doc: Doc;
    if (i % 1000 === 500 && this.heads.length === 3) {
      doc = this.nearCopy(this.heads[i % 3]!, 0.95, 1);
      this.planted.cluster++;
    } else if (roll < 0.04) {
      const of = this.earlier();
      doc = { id: uuid(), text: of.text.toUpperCase(), signature: of.signature, exact: of.exact };
      this.planted.exact++;
    } else if (roll < 0.08) {
      doc = this.nearCopy(this.earlier(), 0.75 + rng.next() * 0.2, 2);
      this.planted.near++;
    } else if (roll < 0.085) {
      doc = { ...this.fresh(), id: this.earlier().id };
      this.planted.ids++;
    } else {
      doc = this.fresh();
    }
    if (this.heads.length < 3) this.heads.push(doc);
    if (this.recent.length < 50_000) this.recent.push(doc);
    else this.recent[this.recentAt++ % 50_000] = doc;
    if (this.reservoir.length < 10_000) this.reservoir.push(doc);
    else if (rng.next() < 10_000 / (i + 1)) this.reservoir[rng.int(0, 9_999)] = doc;
    return doc;
  }

  private fresh(): Doc {
    if (!this.real) {
      const signature = new Uint32Array(near.numPerm);
      for (let k = 0; k < signature.length; k++) signature[k] = (rng.next() * 0x7fffffff) >>> 0;
      const exact = new Uint32Array([(rng.next() * 2 ** 32) >>> 0, (rng.next() * 2 ** 32) >>> 0]);
      return { id: uuid(), text: '', signature, exact };
    }
    const words: string[] = [];
    for (let n = rng.int(60, 140); n > 0; n--) words.push(this.vocabulary[rng.int(0, 29_999)]!);
    return { id: uuid(), text: words.join(' '), signature: undefined, exact: undefined };
  }

  private nearCopy(of: Doc, jaccard: number, changes: number): Doc {
    if (!this.real) {
      const signature = new Uint32Array(of.signature!);
      for (let k = 0; k < signature.length; k++) {
        if (rng.next() >= jaccard) signature[k] = (rng.next() * 0x7fffffff) >>> 0;
      }
      const exact = new Uint32Array([(rng.next() * 2 ** 32) >>> 0, (rng.next() * 2 ** 32) >>> 0]);
      return { id: uuid(), text: '', signature, exact };
    }
    const words = of.text.split(' ');
    for (let k = 0; k < changes; k++) words[rng.int(0, words.length - 1)] = `x${hex(6)}`;
    return { id: uuid(), text: words.join(' '), signature: undefined, exact: undefined };
  }

  private earlier(): Doc {
    if (this.recent.length === 0) return this.fresh();
    return rng.next() < 0.5 || this.reservoir.length === 0
      ? this.recent[rng.int(0, this.recent.length - 1)]!
      : this.reservoir[rng.int(0, this.reservoir.length - 1)]!;
  }
}

const TASK = 512;
const filters = filterSettings(config);
/** The signed run's documents, for the check against the operators. */
const signedList: Doc[] = [];

/** Writes key files for `count` generated documents in `shardCount` shards; returns ms and planted counts. */
async function writeKeys(
  keysRoot: string,
  count: number,
  real: boolean,
): Promise<{ ms: number; planted: Planted; bytes: number }> {
  mkdirSync(keysDir(keysRoot), { recursive: true });
  const start = performance.now();
  const generator = new Generator(real);
  const pool = real ? createMinHashPool(threads, threads * 4) : undefined;
  const signal = new AbortController().signal;
  const perShard = Math.ceil(count / shardCount);
  const idHash = new Uint32Array(2);
  const exactKey = new Uint32Array(2);
  const bandKeys = new Uint32Array(near.bands);
  const sketch = new Uint8Array(near.numPerm);
  let writer: KeyFileWriter | undefined;
  let written = 0;
  const write = (docs: readonly Doc[], signed: readonly Uint32Array[]): void => {
    docs.forEach((doc, i) => {
      const shard = Math.floor(written / perShard);
      if (writer === undefined || writer.index !== shard) {
        writer?.finish();
        writer = new KeyFileWriter(keysRoot, shard, `shard-${shard}.parquet`, settings, filters);
      }
      const signature = doc.signature ?? signatureAt(signed[Math.floor(i / TASK)]!, near.numPerm, i % TASK);
      hash64Into(doc.id, idHash);
      if (doc.exact !== undefined) exactKey.set(doc.exact);
      else exactKeyInto(doc.text, exactKey);
      bandKeysInto(signature, near.bands, near.numPerm / near.bands, bandKeys);
      for (let k = 0; k < near.numPerm; k++) sketch[k] = sketchValue(signature[k]!);
      writer.append(written - shard * perShard, doc.id, idHash, exactKey, bandKeys, sketch);
      written++;
    });
  };
  // Batches of 4,096 are signed (8 tasks) while the next one is generated.
  let pending: { docs: Doc[]; signed: Promise<Uint32Array[]> } | undefined;
  for (let done = 0; done < count;) {
    const docs: Doc[] = [];
    for (; docs.length < 4096 && done < count; done++) docs.push(generator.next());
    if (real) signedList.push(...docs);
    const tasks: Array<Promise<Uint32Array>> = [];
    for (let at = 0; pool !== undefined && at < docs.length; at += TASK) {
      const texts = docs.slice(at, at + TASK).map((d) => d.text);
      tasks.push(signTexts(pool, texts, near, signal));
    }
    if (pending !== undefined) write(pending.docs, await pending.signed);
    pending = { docs, signed: Promise.all(tasks) };
    if (done % 500_000 < 4096) process.stderr.write(`keys: ${fmt(done)} documents\n`);
  }
  if (pending !== undefined) write(pending.docs, await pending.signed);
  writer?.finish();
  for (let s = Math.floor((written - 1) / perShard) + 1; s < shardCount; s++) {
    new KeyFileWriter(keysRoot, s, `shard-${s}.parquet`, settings, filters).finish();
  }
  await pool?.close();
  let bytes = 0;
  for (let s = 0; s < shardCount; s++) {
    for (const ext of ['keys', 'sketch', 'ids', 'json']) {
      bytes += statSync(path.join(keysDir(keysRoot), `${s}.${ext}`)).size;
    }
  }
  return { ms: performance.now() - start, planted: generator.planted, bytes };
}

/** The global step in a fresh process (its own peak RSS), once per budget; one table row each. */
function globalStep(keysRoot: string, count: number, label: string): GlobalDedupeSummary {
  let first: GlobalDedupeSummary | undefined;
  for (const memory of budgets) {
    const out = execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        import.meta.filename,
        '--step',
        `${keysRoot}:${shardCount}`,
        '--memory',
        String(memory),
      ],
      { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const s = JSON.parse(out.trim().split('\n').pop()!) as GlobalDedupeSummary & { baselineRssMB: number };
    if (first !== undefined && JSON.stringify(first.drops) !== JSON.stringify(s.drops)) {
      throw new Error('budgets disagree on the drops');
    }
    first ??= s;
    const disk = s.disk.keys + s.disk.sketches + s.disk.ids;
    console.log(
      `| ${label} | ${memory} | ${fmt(s.wallMs / 1000, 1)} | ${fmt(s.wallMs / 1000 / (count / 1e6), 1)} | ` +
        `${fmt(s.peakRssMB)} (${fmt(s.baselineRssMB)}) | ${fmt(disk / count, 1)} | ` +
        `${fmt(s.disk.sortRuns / count, 1)} | ${fmt(s.candidates.pairs)} | ${fmt(s.candidates.bigBuckets)} | ` +
        `${fmt(s.drops.duplicate_id!)} / ${fmt(s.drops.exact_duplicate!)} / ${fmt(s.drops.near_duplicate!)} | ` +
        `${Object.entries(s.timings)
          .map(([k, v]) => `${k} ${fmt(v / 1000, 1)}`)
          .join(', ')} |`,
    );
  }
  return first!;
}

const plantedLine = (p: Planted): string =>
  `${fmt(p.exact)} exact, ${fmt(p.near)} near, ${fmt(p.ids)} repeated ids, ${fmt(p.cluster)} in 3 clusters`;

const realKeys = await writeKeys(path.join(dir, 'signed'), signedDocs, true);
const simKeys = await writeKeys(path.join(dir, 'simulated'), docs, false);
console.log(`\n## 1. Key files (${shardCount} shards each)\n`);
console.log('| documents | signatures | planted | s | s per million docs | key file bytes per doc |');
console.log('| --: | --- | --- | --: | --: | --: |');
for (const [n, k, how] of [
  [signedDocs, realKeys, `real (pool of ${threads})`],
  [docs, simKeys, 'simulated'],
] as const) {
  console.log(
    `| ${fmt(n)} | ${how} | ${plantedLine(k.planted)} | ${fmt(k.ms / 1000, 1)} | ` +
      `${fmt(k.ms / 1000 / (n / 1e6), 1)} | ${fmt(k.bytes / n, 1)} |`,
  );
}

console.log(`\n## 2. Global step (each run in its own process)\n`);
console.log(
  '| documents | sort memory MB | wall s | s per million docs | peak RSS MB (baseline) | key files bytes/doc | ' +
    'sort runs bytes/doc | candidate pairs | big buckets | dropped id / exact / near | phases s |',
);
console.log('| --: | --: | --: | --: | --: | --: | --: | --: | --: | --- | --- |');
globalStep(path.join(dir, 'signed'), signedDocs, `${fmt(signedDocs)} (real signatures)`);
const big = globalStep(path.join(dir, 'simulated'), docs, `${fmt(docs)} (simulated)`);

if (big.near) {
  console.log(
    `\nAt ${fmt(docs)}: ${fmt(big.near.queried)} documents had kept candidates, ${fmt(big.near.comparisons)} ` +
      `sketch comparisons, ${fmt(big.near.bigKept)} kept big-bucket members held (largest list ` +
      `${big.near.bigKeptMax}), ${fmt(big.candidates.bigMembers)} big-bucket memberships.`,
  );
}

/** The signed documents as the source would yield them: shard labels and rows as the key files have them. */
class SignedSource implements Source<Document> {
  readonly name = 'read';
  async expectedRows(): Promise<number> {
    return signedList.length;
  }
  async *read(ledger: Ledger): AsyncIterable<Envelope<Document>> {
    const perShard = Math.ceil(signedList.length / shardCount);
    for (let i = 0; i < signedList.length; i++) {
      const label = `shard-${Math.floor(i / perShard)}.parquet`;
      const row = i % perShard;
      const { id, text } = signedList[i]!;
      yield {
        ticket: ledger.read(label, row),
        value: { id, text, sourceFile: label, sourceRow: row, meta: {} },
      };
    }
  }
}
const checkPool = createMinHashPool(threads);
const notes: DropNote[] = [];
const checkStart = performance.now();
await pipeline(new SignedSource())
  .pipe(uniqueIds<Document>((d) => d.id))
  .pipe(exactDedupe<Document>({ textOf: (d) => d.text, idOf: (d) => d.id }))
  .pipe(nearDedupe<Document>({ textOf: (d) => d.text, idOf: (d) => d.id, pool: checkPool }))
  .into(new CollectingSink<Document>(1000), {
    dropNotes: { write: (n) => notes.push(n), close: async () => {} },
  })
  .run();
await checkPool.close();
const line = (n: DropNote): string => `${n.shard}#${n.row} ${n.stage} ${n.reason} ${n.duplicateOf}`;
const listed: string[] = [];
for (let i = 0; i < shardCount; i++) {
  const text = readFileSync(path.join(dir, 'signed', 'dedupe', 'drops', `${i}.jsonl`), 'utf8');
  for (const l of text.split('\n')) if (l) listed.push(line(JSON.parse(l) as DropNote));
}
const expected = notes.map(line).sort();
listed.sort();
const same = expected.length === listed.length && expected.every((l, i) => l === listed[i]);
console.log(
  `\nCheck on the ${fmt(signedDocs)} signed documents: the streaming operators in one process (` +
    `${fmt((performance.now() - checkStart) / 1000, 1)} s) drop ${fmt(expected.length)} rows, the drop lists ` +
    `${fmt(listed.length)}: ${same ? 'identical (rows, stages, reasons, duplicateOf)' : 'DIFFERENT'}.`,
);
if (!same) throw new Error('the global step disagrees with the streaming operators');

// ---- 3. the real keys pass on Parquet ----
const FINEWEB = path.resolve(import.meta.dirname, '../../shared/data/web/fineweb-sample.snappy.parquet');
const realRoot = path.join(dir, 'real');
const size = statSync(FINEWEB).size;
const shards = Array.from({ length: 6 }, (_, index) => ({
  index,
  shard: { path: FINEWEB, label: `fineweb-${index}.parquet`, size },
}));
const realConfig = parseRunConfig({
  input: '.',
  output: '.',
  method: 'documents',
  engine: { workerThreads: threads },
});
const realStart = performance.now();
const result = await writeDedupeKeys({ root: realRoot, shards, config: realConfig });
const realMs = performance.now() - realStart;
const rows = result.report.totals.read;
const kept = result.shards.reduce((n, s) => n + s.records, 0);
console.log(
  `\n## 3. Keys pass on Parquet (writeDedupeKeys): FineWeb sample x6, ${fmt(rows)} rows, ${fmt(kept)} pass the ` +
    `filters\n\n${fmt(realMs / 1000, 1)} s: ${fmt(rows / (realMs / 1000))} rows/s, ` +
    `${fmt(realMs / 1000 / (rows / 1e6))} s per million rows (2 DuckDB threads, ${threads} MinHash workers)`,
);
if (values.dir === undefined) rmSync(dir, { recursive: true, force: true });
