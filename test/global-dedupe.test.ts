import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig, type RunConfig } from '../job/config.js';
import { ExternalSorter } from '../job/global-dedupe/external-sort.js';
import {
  findGlobalDuplicates,
  globalDedupeStages,
  globalDuplicateDrop,
  readRankDropLists,
  writeDedupeKeys,
  type GlobalDedupeSummary,
  type GlobalDrop,
} from '../job/global-dedupe/index.js';
import { GlobalDedupeError } from '../job/global-dedupe/errors.js';
import { findGlobalDuplicatesInThread } from '../job/global-dedupe/step-thread.js';
import { exactDedupe } from '../operators/dedupe/exact-dedupe.js';
import { bandKeysInto, sketchSimilarity } from '../operators/dedupe/lsh.js';
import { MinHasher } from '../operators/dedupe/minhash.js';
import { createMinHashPool, nearDedupe } from '../operators/dedupe/near-dedupe.js';
import { uniqueIds } from '../operators/dedupe/unique-ids.js';
import { lengthFilter } from '../operators/length-filter.js';
import { qualityFilter } from '../operators/sample/quality-filters.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { ParquetSource } from '../pipeline/io/parquet-source.js';
import { resolveShards, type Shard } from '../pipeline/io/shards.js';
import type { DropNote, DropNoteSink } from '../pipeline/ledger.js';
import type { RecordOperator } from '../pipeline/operator.js';
import type { WorkerPool } from '../pipeline/pool/worker-pool.js';
import { Rng } from '../pipeline/random.js';
import { pipeline, type Pipeline } from '../pipeline/run.js';
import type { Document } from '../schemas/documents.js';
import { DOLMA, FINEWEB, SAMPLE, tempDir } from './helpers/duckdb.js';
import { trueJaccard } from './helpers/jaccard.js';
import { CollectingSink } from './helpers/memory.js';
import { nearCopy, reformat, rowsOf, writeShard, type Row } from './helpers/dup-shards.js';

class NotesSink implements DropNoteSink {
  readonly notes: DropNote[] = [];
  write(note: DropNote): void {
    this.notes.push(note);
  }
  async close(): Promise<void> {}
}

/** Replaces `count` words spread evenly from `offset` on. */
function spreadEdit(text: string, count: number, offset: number, tag: string): string {
  const words = text.split(' ');
  for (let k = 0; k < count; k++) {
    words[Math.floor(((k + offset) * words.length) / (count + 1))] = `chain${tag}${k}`;
  }
  return words.join(' ');
}

/** Replaces the words at `positions` (fractions of the length) with tagged words. */
function editAt(text: string, positions: readonly number[], tag: string): string {
  const words = text.split(' ');
  for (const p of positions) words[Math.floor(p * words.length)] = `${tag}${Math.round(p * 1000)}`;
  return words.join(' ');
}

/**
 * A text whose estimated similarity to `x` and to `y` is the same (both at or above 0.8, sharing a band key
 * with each): a tie, which the index breaks for the earlier of the two. Found by trying subsets of y's edits.
 */
function tieWith(x: string, y: string, spots: readonly number[], rng: Rng): string {
  const hasher = new MinHasher();
  const sx = hasher.sign(x);
  const sy = hasher.sign(y);
  const bands = (sig: Uint32Array): Uint32Array => {
    const out = new Uint32Array(16);
    bandKeysInto(sig, 16, 8, out);
    return out;
  };
  const equal = (a: Uint32Array, b: Uint32Array): number =>
    a.filter((v, i) => (v & 0xff) === (b[i]! & 0xff)).length;
  const shares = (a: Uint32Array, b: Uint32Array): boolean => a.some((v, i) => v === b[i]);
  for (let attempt = 0; attempt < 2000; attempt++) {
    const z = editAt(
      x,
      spots.filter(() => rng.next() < 0.5),
      'y',
    );
    const sz = hasher.sign(z);
    const ex = equal(sz, sx);
    if (ex !== equal(sz, sy) || sketchSimilarity(ex, 128) < 0.8) continue;
    if (shares(bands(sz), bands(sx)) && shares(bands(sz), bands(sy))) return z;
  }
  throw new Error('no tie found');
}

function syntheticText(rng: Rng, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(`w${rng.int(0, 50_000).toString(36)}`);
  return out.join(' ');
}

const key = (shard: string, row: number): string => `${shard}#${row}`;
const noteKey = (n: DropNote): string => `${n.shard}#${n.row} ${n.stage} ${n.reason} ${n.duplicateOf}`;

let db: DuckDBInstance;
let pool: WorkerPool;
let dir: string;
let cleanup: () => Promise<void>;
let config: RunConfig;
/** The plan: shards in the order a single process reads them (deliberately not sorted by label). */
let plan: Shard[];
const chain = { a: '', b: '', c: '' };
const pair = { x: '', y: '', zy: '' };

interface Oracle {
  kept: Set<string>;
  notes: DropNote[];
}
let oracle: Oracle;

function stage0(shards: readonly Shard[]): Pipeline<Document> {
  const source = new ParquetSource(db, { shards, textColumn: 'text', metaColumns: [] });
  return pipeline(source)
    .pipe(lengthFilter<Document>(config.filter))
    .pipe(qualityFilter<Document>(config.sample.quality));
}

/** One process over every shard in plan order: the streaming operators' decisions. */
async function runOracle(): Promise<Oracle> {
  const sink = new CollectingSink<Document>(100);
  const notes = new NotesSink();
  const { threshold, shingle, numPerm, bands } = config.dedupe.near;
  const report = await stage0(plan)
    .pipe(uniqueIds<Document>((d) => d.id))
    .pipe(exactDedupe<Document>({ textOf: (d) => d.text, idOf: (d) => d.id }))
    .pipe(
      nearDedupe<Document>({
        textOf: (d) => d.text,
        idOf: (d) => d.id,
        pool,
        threshold,
        shingle,
        numPerm,
        bands,
      }),
    )
    .into(sink, { dropNotes: notes })
    .run();
  expect(report.status).toBe('completed');
  return { kept: new Set(sink.committed.map((d) => key(d.sourceFile, d.sourceRow))), notes: notes.notes };
}

/** Rank r's shards: plan indices i with i % ranks === r (interleaved, as a planner balancing sizes might). */
function rankShards(ranks: number, r: number): Array<{ index: number; shard: Shard }> {
  return plan.map((shard, index) => ({ index, shard })).filter(({ index }) => index % ranks === r);
}

async function keysPass(root: string, ranks: number): Promise<void> {
  for (let r = 0; r < ranks; r++) {
    await writeDedupeKeys({ root, shards: rankShards(ranks, r), config, db, pool });
  }
}

/** Each rank reads its shards through stage 0 with the global drop operators; outputs merged. */
async function runRanks(
  root: string,
  ranks: number,
  stagesOf: (
    lists: Awaited<ReturnType<typeof readRankDropLists>>,
  ) => Array<RecordOperator<Document, Document>>,
): Promise<Oracle> {
  const kept = new Set<string>();
  const notes: DropNote[] = [];
  for (let r = 0; r < ranks; r++) {
    const shards = rankShards(ranks, r);
    const lists = await readRankDropLists(
      root,
      shards.map(({ index, shard }) => ({ index, label: shard.label })),
    );
    let p = stage0(shards.map((s) => s.shard));
    for (const op of stagesOf(lists)) p = p.pipe(op);
    const sink = new CollectingSink<Document>(100);
    const sinkNotes = new NotesSink();
    const report = await p.into(sink, { dropNotes: sinkNotes }).run();
    expect(report.status).toBe('completed');
    for (const d of sink.committed) kept.add(key(d.sourceFile, d.sourceRow));
    notes.push(...sinkNotes.notes);
  }
  return { kept, notes };
}

async function dropLists(root: string): Promise<GlobalDrop[]> {
  const out: GlobalDrop[] = [];
  for (let i = 0; i < plan.length; i++) {
    const text = await readFile(path.join(root, 'dedupe', 'drops', `${i}.jsonl`), 'utf8');
    for (const line of text.split('\n')) if (line) out.push(JSON.parse(line) as GlobalDrop);
  }
  return out;
}

beforeAll(async () => {
  db = await openDuckDB({ threads: 2 });
  pool = createMinHashPool(2);
  ({ dir, cleanup } = await tempDir('air-global-dedupe-'));
  config = parseRunConfig({ input: dir, output: path.join(dir, 'out'), method: 'documents' });

  const fineweb = await rowsOf(FINEWEB);
  const dolma = await rowsOf(DOLMA);
  const long = (r: Row): boolean => {
    const n = r.text.split(/\s+/).length;
    return n >= 300 && n <= 1500;
  };
  const fwLong = fineweb.filter(long);
  const dolmaLong = dolma.filter(long);
  const rng = new Rng(13);
  const a: Row[] = [];
  const b: Row[] = [];
  const c: Row[] = [];
  // gen-a comes before the FineWeb shard: its copies become the originals, and FineWeb's rows the duplicates.
  for (let i = 0; i < 20; i++) a.push({ id: `a-near-${i}`, text: nearCopy(fwLong[i]!.text, `a${i}`) });
  for (let i = 20; i < 35; i++) a.push({ id: `a-exact-${i}`, text: reformat(fwLong[i]!.text) });
  for (let i = 0; i < 30; i++) a.push({ id: `a-own-${i}`, text: syntheticText(rng, 200 + i) });
  // A chain A ~ B ~ C across three shards: B is dropped as a copy of A, so C (close to B, not to A) is kept.
  chain.a = syntheticText(rng, 400);
  chain.b = spreadEdit(chain.a, 6, 1, 'b');
  chain.c = spreadEdit(chain.b, 6, 0.5, 'c');
  a.push({ id: 'chain-A', text: chain.a });
  // Repeated ids: a FineWeb id on a different text, read before FineWeb's own row.
  a.push({ id: fineweb[50]!.id, text: syntheticText(rng, 120) });

  b.push({ id: 'chain-B', text: chain.b });
  for (let i = 0; i < 10; i++) b.push({ id: `b-copy-${i}`, text: a[40 + i]!.text }); // exact, across gen shards
  for (let i = 0; i < 10; i++) b.push({ id: `b-near-${i}`, text: nearCopy(fwLong[40 + i]!.text, `b${i}`) });
  b.push({ id: 'a-own-3', text: syntheticText(rng, 150) }); // id repeated across generated shards
  b.push({ id: 'a-own-3', text: syntheticText(rng, 150) }); // and within one
  for (let i = 0; i < 10; i++) b.push({ id: `b-dolma-${i}`, text: nearCopy(dolmaLong[i]!.text, `bd${i}`) });

  // Two kept documents X ~ Y (J ~0.74, below the threshold) and later documents close to both: the most
  // similar candidate must win, not the earliest; half-way ones may tie, where the earliest wins.
  const spots = Array.from({ length: 12 }, (_, k) => (k + 0.5) / 12);
  const x = (pair.x = syntheticText(rng, 400));
  a.push({ id: 'pair-X', text: x });
  b.push({ id: 'pair-Y', text: (pair.y = editAt(x, spots, 'y')) });
  for (let v = 0; v < 8; v++) {
    const taken = spots.filter((_, k) => (k * 7 + v) % 12 < 5 + (v % 3));
    c.push({ id: `pair-Z${v}`, text: editAt(x, taken, 'y') });
  }
  c.push({ id: 'pair-Zy', text: (pair.zy = editAt(x, spots.slice(0, 8), 'y')) });
  c.push({ id: 'chain-C', text: chain.c });
  c.push({ id: 'pair-tie', text: tieWith(pair.x, pair.y, spots, rng) });
  for (let i = 0; i < 8; i++) c.push({ id: `c-many-${i}`, text: nearCopy(a[50]!.text, `c${i}`) }); // a big bucket
  for (let i = 0; i < 10; i++) c.push({ id: `c-fw-${i}`, text: reformat(fwLong[60 + i]!.text) });
  for (let i = 0; i < 10; i++) c.push({ id: `c-own-${i}`, text: syntheticText(rng, 90) });

  await writeShard(path.join(dir, 'gen-a.parquet'), a);
  await writeShard(path.join(dir, 'gen-b.parquet'), b);
  await writeShard(path.join(dir, 'gen-c.parquet'), c);
  const [ga, gb, gc, fw, dm, sm] = await Promise.all(
    ['gen-a.parquet', 'gen-b.parquet', 'gen-c.parquet']
      .map((f) => resolveShards([path.join(dir, f)]))
      .concat([FINEWEB, DOLMA, SAMPLE].map((f) => resolveShards([f]))),
  );
  plan = [ga![0]!, fw![0]!, gb![0]!, dm![0]!, sm![0]!, gc![0]!];
  oracle = await runOracle();
});

afterAll(async () => {
  await pool?.close();
  db?.closeSync();
  await cleanup?.();
});

describe('the planted corpus', () => {
  it('plants every kind of duplicate, across shards, and the chain resolves as a single process does', () => {
    const reasons = new Map<string, number>();
    for (const n of oracle.notes) reasons.set(n.reason, (reasons.get(n.reason) ?? 0) + 1);
    expect(reasons.get('duplicate_id')).toBeGreaterThanOrEqual(600); // Dolma repeats FineWeb ids
    expect(reasons.get('exact_duplicate')).toBeGreaterThanOrEqual(30);
    expect(reasons.get('near_duplicate')).toBeGreaterThanOrEqual(30);
    const crossShard = oracle.notes.filter(
      (n) => n.reason === 'near_duplicate' && n.shard !== 'gen-a.parquet',
    );
    expect(crossShard.length).toBeGreaterThanOrEqual(20);
    // A ~ B and B ~ C above the threshold, A and C below it: B is dropped as A's copy, C is kept.
    expect(trueJaccard(chain.a, chain.b)).toBeGreaterThan(0.8);
    expect(trueJaccard(chain.b, chain.c)).toBeGreaterThan(0.8);
    expect(trueJaccard(chain.a, chain.c)).toBeLessThan(0.8);
    const chainB = oracle.notes.find((n) => n.shard === 'gen-b.parquet' && n.row === 0);
    expect(chainB).toMatchObject({ stage: 'near_dedupe', duplicateOf: 'chain-A' });
    const chainC = oracle.notes.find(
      (n) => n.duplicateOf === 'chain-B' || (n.shard === 'gen-c.parquet' && n.row === 9),
    );
    expect(chainC).toBeUndefined();
    expect(oracle.kept.has('gen-c.parquet#9')).toBe(true);
    // Z with 8 of Y's 12 edits is closer to the later Y than to the earlier X, both above the threshold.
    expect(trueJaccard(pair.zy, pair.y)).toBeGreaterThan(trueJaccard(pair.zy, pair.x));
    expect(trueJaccard(pair.zy, pair.x)).toBeGreaterThan(0.8);
    expect(trueJaccard(pair.x, pair.y)).toBeLessThan(0.8);
    const zy = oracle.notes.find((n) => n.shard === 'gen-c.parquet' && n.row === 8);
    expect(zy).toMatchObject({ stage: 'near_dedupe', duplicateOf: 'pair-Y' });
    const byX = oracle.notes.filter((n) => n.duplicateOf === 'pair-X').length;
    const byY = oracle.notes.filter((n) => n.duplicateOf === 'pair-Y').length;
    expect(byX).toBeGreaterThan(0);
    expect(oracle.notes.find((n) => n.shard === 'gen-c.parquet' && n.row === 10)).toMatchObject({
      stage: 'near_dedupe',
      duplicateOf: 'pair-X',
    });
    expect(byY).toBeGreaterThan(1);
  });
});

describe('global dedupe over ranks', () => {
  let root: string;
  let summary: GlobalDedupeSummary;

  beforeAll(async () => {
    root = path.join(dir, 'root-3');
    await keysPass(root, 3);
    // A tiny sort budget: every sorter writes several runs, so the merges are exercised.
    summary = await findGlobalDuplicates(
      root,
      plan.map((s) => s.label),
      { memoryMB: 0.01 },
    );
  });

  it('lists exactly the rows one process drops, with the same stage, reason and duplicateOf', async () => {
    const drops = await dropLists(root);
    expect(drops.map(noteKey).sort()).toEqual(oracle.notes.map(noteKey).sort());
    expect(summary.disk.sortRuns).toBeGreaterThan(0);
    expect(summary.drops).toEqual({
      duplicate_id: oracle.notes.filter((n) => n.reason === 'duplicate_id').length,
      exact_duplicate: oracle.notes.filter((n) => n.reason === 'exact_duplicate').length,
      near_duplicate: oracle.notes.filter((n) => n.reason === 'near_duplicate').length,
    });
    expect(summary.kept).toBe(oracle.kept.size);
  });

  it('ranks dropping the listed rows keep exactly what one process keeps, with the same notes', async () => {
    const ranks = await runRanks(root, 3, (lists) => globalDedupeStages(lists, config.dedupe));
    expect([...ranks.kept].sort()).toEqual([...oracle.kept].sort());
    expect(ranks.notes.map(noteKey).sort()).toEqual(oracle.notes.map(noteKey).sort());
    // One combined stage drops the same rows; only the ledger's stage name differs.
    const combined = await runRanks(root, 3, (lists) => [globalDuplicateDrop(lists)]);
    expect([...combined.kept].sort()).toEqual([...oracle.kept].sort());
    expect(combined.notes.every((n) => n.stage === 'global_dedupe')).toBe(true);
  });

  it('decides the same with big buckets (maxBucket 2) and with everything in memory', async () => {
    for (const options of [{ maxBucket: 2 }, { memoryMB: 64 }]) {
      const s = await findGlobalDuplicates(
        root,
        plan.map((p) => p.label),
        options,
      );
      const drops = await dropLists(root);
      expect(drops.map(noteKey).sort()).toEqual(oracle.notes.map(noteKey).sort());
      if (options.maxBucket === 2) expect(s.candidates.bigBuckets).toBeGreaterThan(0);
      else expect(s.disk.sortRuns).toBe(0);
    }
  });

  it('runs in a worker thread (as ranks run it) with the same lists, log lines and error codes', async () => {
    const lines: string[] = [];
    const labels = plan.map((p) => p.label);
    const s = await findGlobalDuplicatesInThread(root, labels, { memoryMB: 0.01, log: (l) => lines.push(l) });
    expect(s.drops).toEqual(summary.drops);
    expect((await dropLists(root)).map(noteKey).sort()).toEqual(oracle.notes.map(noteKey).sort());
    expect(lines.length).toBeGreaterThan(0);
    const refused = findGlobalDuplicatesInThread(root, [...labels, 'extra.parquet']);
    await expect(refused).rejects.toBeInstanceOf(GlobalDedupeError);
    await expect(refused).rejects.toMatchObject({ code: 'AIR_DEDUPE_KEYS_INVALID' });
    const stop = new AbortController();
    stop.abort(new Error('stopped'));
    await expect(findGlobalDuplicatesInThread(root, labels, { signal: stop.signal })).rejects.toThrow(
      /aborted/,
    );
    // Running it again after a stop restores the lists and summary.
    await findGlobalDuplicatesInThread(root, labels);
  });

  it('writes the same key files however the shards are grouped into ranks', async () => {
    const other = path.join(dir, 'root-1');
    await keysPass(other, 1);
    const two = path.join(dir, 'root-2');
    await keysPass(two, 2);
    const files = (await readdir(path.join(root, 'dedupe', 'keys'))).sort();
    expect(files.length).toBe(plan.length * 4);
    for (const file of files) {
      const expected = await readFile(path.join(root, 'dedupe', 'keys', file));
      expect((await readFile(path.join(other, 'dedupe', 'keys', file))).equals(expected), file).toBe(true);
      expect((await readFile(path.join(two, 'dedupe', 'keys', file))).equals(expected), file).toBe(true);
    }
  });

  it('refuses missing keys, a shard out of plan order and a stale drop list', async () => {
    const labels = plan.map((s) => s.label);
    await expect(findGlobalDuplicates(root, [...labels, 'extra.parquet'])).rejects.toMatchObject({
      code: 'AIR_DEDUPE_KEYS_INVALID',
    });
    await expect(
      findGlobalDuplicates(root, [labels[1]!, labels[0]!, ...labels.slice(2)]),
    ).rejects.toMatchObject({ code: 'AIR_DEDUPE_KEYS_INVALID' });
    await expect(readRankDropLists(root, [{ index: 2, label: labels[3]! }])).rejects.toMatchObject({
      code: 'AIR_DEDUPE_STALE',
    });
    const lists = await readRankDropLists(root, [{ index: 3, label: labels[3]! }]);
    const [row, listed] = [...lists.get(labels[3]!)!][0]!;
    const op = globalDuplicateDrop(lists);
    const doc: Document = { id: 'other', text: 'x', sourceFile: labels[3]!, sourceRow: row, meta: {} };
    const ctx = { signal: new AbortController().signal, count: () => {} };
    expect(() => op.process(doc, ctx)).toThrow(/drop list names id/);
    expect(op.process({ ...doc, id: listed.id }, ctx)).toMatchObject({ kind: 'drop', reason: listed.reason });
  });
});

describe('settings', () => {
  it('follows the config: with ids and near off, only exact_dedupe runs, as in one process', async () => {
    const exactOnly = parseRunConfig({
      input: dir,
      output: path.join(dir, 'out'),
      method: 'documents',
      dedupe: { ids: false, near: { enabled: false } },
    });
    const root = path.join(dir, 'root-exact');
    await writeDedupeKeys({ root, shards: rankShards(1, 0), config: exactOnly, db });
    const summary = await findGlobalDuplicates(
      root,
      plan.map((p) => p.label),
    );
    expect(summary.dedupe).toEqual({ ids: false, exact: true, near: null });
    const notes = new NotesSink();
    await stage0(plan)
      .pipe(exactDedupe<Document>({ textOf: (d) => d.text, idOf: (d) => d.id }))
      .into(new CollectingSink<Document>(100), { dropNotes: notes })
      .run();
    expect(notes.notes.length).toBeGreaterThan(600);
    expect((await dropLists(root)).map(noteKey).sort()).toEqual(notes.notes.map(noteKey).sort());
    // Keys written under other settings do not mix with these.
    await writeDedupeKeys({ root, shards: [{ index: 0, shard: plan[0]! }], config, db, pool });
    await expect(
      findGlobalDuplicates(
        root,
        plan.map((p) => p.label),
      ),
    ).rejects.toMatchObject({
      code: 'AIR_DEDUPE_KEYS_INVALID',
    });
  });

  it('refuses source.limit, which ranks cannot split', async () => {
    const limited = parseRunConfig({ input: dir, output: 'x', method: 'documents', source: { limit: 10 } });
    await expect(
      writeDedupeKeys({ root: path.join(dir, 'root-limit'), shards: rankShards(1, 0), config: limited, db }),
    ).rejects.toMatchObject({ code: 'AIR_DEDUPE_UNSUPPORTED' });
  });
});

describe('external sort', () => {
  it('sorts on the key words, stable, across runs', async () => {
    const rng = new Rng(7);
    const records: number[][] = [];
    for (let i = 0; i < 20_000; i++) {
      records.push([rng.int(0, 50) * 0x1000003, rng.int(0, 3) * 0x10001, i]);
    }
    for (const maxRecords of [1_000, 100_000]) {
      const sorter = new ExternalSorter({ dir, name: `t${maxRecords}`, words: 3, keyWords: 2, maxRecords });
      for (const r of records) sorter.push(r[0]!, r[1]!, r[2]!);
      const cursor = sorter.cursor();
      const out: number[][] = [];
      while (cursor.next()) out.push([...cursor.records.subarray(cursor.at, cursor.at + 3)]);
      cursor.close();
      const expected = [...records].sort((x, y) => x[0]! - y[0]! || x[1]! - y[1]!); // Array#sort is stable
      expect(out).toEqual(expected);
    }
    expect((await readdir(dir)).filter((f) => f.endsWith('.run'))).toEqual([]);
  });
});
