import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exactDedupe } from '../operators/dedupe/exact-dedupe.js';
import { createMinHashPool, nearDedupe, type SignaturePool } from '../operators/dedupe/near-dedupe.js';
import { normalizeText } from '../operators/dedupe/normalize.js';
import { DropNotesFile } from '../pipeline/io/drop-notes.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { ParquetSource } from '../pipeline/io/parquet-source.js';
import { resolveShards } from '../pipeline/io/shards.js';
import type { DropNote } from '../pipeline/ledger.js';
import type { WorkerPool } from '../pipeline/pool/worker-pool.js';
import { pipeline, type RunReport } from '../pipeline/run.js';
import type { Document } from '../schemas/documents.js';
import { DOLMA, FINEWEB, query, tempDir } from './helpers/duckdb.js';
import { CollectingSink } from './helpers/memory.js';
import { trueJaccard } from './helpers/jaccard.js';

interface Row {
  id: string;
  text: string;
}

/** Where a planted record sits and which record it copies. */
interface Plant {
  shard: string;
  row: number;
  id: string;
  kind: 'exact' | 'near';
  of: string;
}

async function rowsOf(file: string): Promise<Row[]> {
  const rows = await query(
    `SELECT id, text FROM read_parquet('${file}', file_row_number = true) ORDER BY file_row_number`,
  );
  return rows.map(([id, text]) => ({ id: id as string, text: text as string }));
}

/** Writes rows to a Parquet shard through a JSON Lines file, keeping their order. */
async function writeShard(file: string, rows: readonly Row[]): Promise<void> {
  const jsonl = `${file}.jsonl`;
  await writeFile(jsonl, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  await query(
    `COPY (SELECT id, text FROM read_json('${jsonl}', columns = {id: 'VARCHAR', text: 'VARCHAR'},
      format = 'newline_delimited')) TO '${file}' (FORMAT parquet)`,
  );
}

/** Re-formats a text without changing its normalised form: case, spacing, punctuation. */
function reformat(text: string): string {
  const upper = text.replace(/[a-z]/g, (c) => c.toUpperCase()); // ASCII only: 'ß'.toUpperCase() is 'SS'
  return `  ${upper.replaceAll(' ', ' \t ').replaceAll('\n', '\n\n')} !!`;
}

/** Replaces three words far apart (J ~0.9 for a document of 300+ words). */
function edit(text: string, tag: number): string {
  const words = text.split(/\s+/);
  for (const at of [0.25, 0.5, 0.75]) words[Math.floor(words.length * at)] = `zqx${tag}w${at * 100}`;
  return words.join(' ');
}

let db: DuckDBInstance;
let dir: string;
let cleanup: () => Promise<void>;
let pool: WorkerPool;
let clean: string;
let planted: string;
const plants: Plant[] = [];
/** Half of one document and half of another: J ~0.33 with each, must be kept. */
const probes: string[] = [];
const textById = new Map<string, string>();

beforeAll(async () => {
  db = await openDuckDB({ threads: 2 });
  ({ dir, cleanup } = await tempDir());
  pool = createMinHashPool(2);
  // The Dolma sample holds 691 of the FineWeb sample's documents under the same ids: prefixed here so ids are
  // unique, those are real exact duplicates across the two shards.
  const fineweb = await rowsOf(FINEWEB);
  const dolma = (await rowsOf(DOLMA)).map((r) => ({ id: `dolma:${r.id}`, text: r.text }));
  for (const r of [...fineweb, ...dolma]) textById.set(r.id, r.text);
  clean = path.join(dir, 'clean');
  planted = path.join(dir, 'planted');
  await mkdir(clean);
  await mkdir(planted);
  await writeShard(path.join(clean, 'a.parquet'), fineweb);
  await writeShard(path.join(clean, 'b.parquet'), dolma);

  const a: Row[] = [];
  const b: Row[] = [];
  const inFineweb = new Set(fineweb.map((r) => r.text));
  const long = (r: Row): boolean => r.text.split(/\s+/).length >= 300;
  const plant = (shard: Row[], label: string, kind: Plant['kind'], of: Row, text: string): void => {
    const id = `planted-${kind}-${plants.length}`;
    plants.push({ shard: label, row: shard.length, id, kind, of: of.id });
    shard.push({ id, text });
    textById.set(id, text);
  };
  // Near copies (three words changed) close behind their originals in the same shard, 1 or 20 rows later: in
  // the same batch or a batch or two later, where batches finishing out of order would change decisions.
  const pending: Array<{ at: number; of: Row; text: string }> = [];
  let picked = 0;
  fineweb.forEach((r, i) => {
    a.push(r);
    if (i % 25 === 3 && long(r)) {
      pending.push({ at: i + (picked++ % 2 === 0 ? 1 : 20), of: r, text: edit(r.text, i) });
    }
    while (pending.length > 0 && pending[0]!.at === i) {
      const { of, text } = pending.shift()!;
      plant(a, 'a.parquet', 'near', of, text);
    }
  });
  dolma.forEach((r) => b.push(r));
  // Exact copies: in the same shard and across shards (FineWeb originals repeated in the Dolma shard).
  fineweb.filter((_, i) => i % 200 === 7).forEach((r) => plant(a, 'a.parquet', 'exact', r, reformat(r.text)));
  fineweb.filter((_, i) => i % 60 === 11).forEach((r) => plant(b, 'b.parquet', 'exact', r, reformat(r.text)));
  // Near copies across shards, and within the Dolma shard of its own documents.
  fineweb
    .filter((r, i) => i % 25 === 15 && long(r))
    .forEach((r, k) => plant(b, 'b.parquet', 'near', r, edit(r.text, 5000 + k)));
  dolma
    .filter((r) => !inFineweb.has(r.text) && long(r))
    .forEach((r, k) => plant(b, 'b.parquet', 'near', r, edit(r.text, 9000 + k)));
  // Probes: half of one document and half of another (J ~0.33 with each), to be kept.
  for (let i = 0; i < 10; i++) {
    const x = fineweb[100 + i * 37]!.text.split(/\s+/);
    const y = fineweb[900 + i * 23]!.text.split(/\s+/);
    const id = `probe-${i}`;
    const text = [...x.slice(0, x.length / 2), ...y.slice(y.length / 2)].join(' ');
    probes.push(id);
    b.push({ id, text });
    textById.set(id, text);
  }
  await writeShard(path.join(planted, 'a.parquet'), a);
  await writeShard(path.join(planted, 'b.parquet'), b);
});

afterAll(async () => {
  await pool?.close();
  db?.closeSync();
  await cleanup?.();
});

interface Outcome {
  report: RunReport;
  kept: string[];
  notes: DropNote[];
  notesText: string;
}

/** Reads a folder of shards → exact dedupe → near dedupe → memory, with drop notes in a file. */
async function dedupe(
  input: string,
  near: { batchSize: number; concurrency: number; pool?: SignaturePool },
  notesName = 'notes.jsonl',
): Promise<Outcome> {
  const source = new ParquetSource(db, {
    shards: await resolveShards([input]),
    textColumn: 'text',
    metaColumns: [],
  });
  const sink = new CollectingSink<Document>(50);
  const notesFile = path.join(dir, `${path.basename(input)}-${notesName}`);
  const report = await pipeline(source)
    .pipe(exactDedupe<Document>({ textOf: (d) => d.text, idOf: (d) => d.id }))
    .pipe(
      nearDedupe<Document>({
        textOf: (d) => d.text,
        idOf: (d) => d.id,
        pool: near.pool ?? pool,
        batchSize: near.batchSize,
        concurrency: near.concurrency,
      }),
    )
    .into(sink, { dropNotes: new DropNotesFile(notesFile), queueCapacity: 64 })
    .run();
  const notesText = await readFile(notesFile, 'utf8');
  const notes = notesText
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as DropNote);
  return { report, kept: sink.committed.map((d) => d.id), notes, notesText };
}

/** The id at each (shard, row) of a folder of shards, as the source assigns them. */
async function idsByLocation(input: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const shard of ['a.parquet', 'b.parquet']) {
    (await rowsOf(path.join(input, shard))).forEach((r, row) => out.set(`${shard}#${row}`, r.id));
  }
  return out;
}

describe('exact and near dedupe through the engine, on real web documents in two shards', () => {
  let baseline: Outcome;
  let run: Outcome;

  beforeAll(async () => {
    baseline = await dedupe(clean, { batchSize: 500, concurrency: 1 });
    run = await dedupe(planted, { batchSize: 500, concurrency: 1 });
  });

  it('drops every planted copy with the id of the record it copies', async () => {
    expect(plants.filter((p) => p.kind === 'exact').length).toBeGreaterThanOrEqual(30);
    expect(plants.filter((p) => p.kind === 'near' && p.shard === 'a.parquet').length).toBeGreaterThanOrEqual(
      15,
    );
    expect(plants.filter((p) => p.kind === 'near' && p.shard === 'b.parquet').length).toBeGreaterThanOrEqual(
      15,
    );
    // Originals must be kept on the clean input, else the expected duplicateOf would be another record.
    const keptClean = new Set(baseline.kept);
    for (const p of plants) expect(keptClean.has(p.of)).toBe(true);
    const noteAt = new Map(run.notes.map((n) => [`${n.shard}#${n.row}`, n]));
    for (const p of plants) {
      const note = noteAt.get(`${p.shard}#${p.row}`);
      expect(note, p.id).toBeDefined();
      expect(note).toEqual({
        shard: p.shard,
        row: p.row,
        stage: p.kind === 'exact' ? 'exact_dedupe' : 'near_dedupe',
        reason: p.kind === 'exact' ? 'exact_duplicate' : 'near_duplicate',
        duplicateOf: p.of,
      });
      if (p.kind === 'near') {
        expect(trueJaccard(textById.get(p.id)!, textById.get(p.of)!)).toBeGreaterThan(0.8);
      }
    }
  });

  it('drops nothing else: unrelated documents and half-overlapping probes are kept', () => {
    const plantedIds = new Set(plants.map((p) => p.id));
    const kept = new Set(run.kept);
    // Exactly the clean run's survivors and the probes: no planted copy kept, no original lost.
    expect([...kept].sort()).toEqual([...baseline.kept, ...probes].sort());
    for (const id of plantedIds) expect(kept.has(id)).toBe(false);
    for (const id of probes) expect(kept.has(id)).toBe(true);
  });

  it('drops exactly the records whose normalised text an earlier record has, naming the first one', async () => {
    // Worked out on strings, not hashes: the first record of each normalised text, over both shards in order.
    for (const [input, outcome] of [
      [clean, baseline],
      [planted, run],
    ] as const) {
      const expected: string[] = [];
      const first = new Map<string, string>();
      for (const shard of ['a.parquet', 'b.parquet']) {
        (await rowsOf(path.join(input, shard))).forEach((r, row) => {
          if (r.text.trim().length === 0) return; // the source drops these
          const norm = normalizeText(r.text);
          const of = first.get(norm);
          if (of === undefined) first.set(norm, r.id);
          else expected.push(`${shard}#${row} -> ${of}`);
        });
      }
      const found = outcome.notes
        .filter((n) => n.reason === 'exact_duplicate')
        .map((n) => `${n.shard}#${n.row} -> ${n.duplicateOf}`);
      expect(found.sort()).toEqual(expected.sort());
      expect(expected.length).toBeGreaterThan(input === clean ? 600 : 650); // 691 Dolma copies, less empties
    }
  });

  it('drops only real near-duplicates in the unplanted sample', async () => {
    const ids = await idsByLocation(clean);
    for (const note of baseline.notes) {
      const text = textById.get(ids.get(`${note.shard}#${note.row}`)!)!;
      const of = textById.get(note.duplicateOf)!;
      if (note.reason === 'exact_duplicate') expect(normalizeText(text)).toBe(normalizeText(of));
      else expect(trueJaccard(text, of)).toBeGreaterThanOrEqual(0.7);
    }
  });

  it('lists every drop in the notes file, counts them in the report, and the ledger balances', async () => {
    for (const { report, notes } of [baseline, run]) {
      expect(report.status).toBe('completed');
      const t = report.totals;
      // The source drops rows without text (read:empty_text); every other drop is a duplicate.
      let dropped = 0;
      for (const [key, n] of Object.entries(t.dropped)) {
        if (key.startsWith('read:')) continue;
        expect(['exact_dedupe:exact_duplicate', 'near_dedupe:near_duplicate']).toContain(key);
        dropped += n;
      }
      expect(dropped).toBeGreaterThan(0);
      expect(t.written + Object.values(t.dropped).reduce((a, b) => a + b, 0)).toBe(t.read);
      expect(report.dropNotes).toBe(dropped);
      expect(notes).toHaveLength(dropped);
      expect(new Set(notes.map((n) => `${n.shard}#${n.row}`)).size).toBe(dropped);
      for (const stage of ['exact_dedupe', 'near_dedupe'] as const) {
        const s = report.stages.find((x) => x.name === stage)!;
        expect(notes.filter((n) => n.stage === stage)).toHaveLength(
          Object.values(s.dropped).reduce((a, b) => a + b, 0),
        );
      }
    }
    const ids = await idsByLocation(planted);
    expect(run.report.totals.read).toBe(ids.size);
    // Every note points at a row that exists and names a record its stage kept: a near-duplicate's original
    // was written (near dedupe is the last stage); an exact duplicate's original passed exact dedupe (near
    // dedupe may drop it later).
    const kept = new Set(run.kept);
    const droppedAt = (stage: string): Set<string> =>
      new Set(run.notes.filter((n) => n.stage === stage).map((n) => ids.get(`${n.shard}#${n.row}`)!));
    const exactDropped = droppedAt('exact_dedupe');
    for (const note of run.notes) {
      expect(ids.has(`${note.shard}#${note.row}`)).toBe(true);
      if (note.stage === 'near_dedupe') expect(kept.has(note.duplicateOf)).toBe(true);
      else expect(textById.has(note.duplicateOf) && !exactDropped.has(note.duplicateOf)).toBe(true);
    }
  });

  it('makes the same decisions with small batches finishing out of order as with one batch at a time', async () => {
    // The real pool, with every other batch held back so the one after it finishes first.
    let calls = 0;
    const finished: number[] = [];
    const shuffling: SignaturePool = {
      async run<T>(task: unknown, options?: Parameters<SignaturePool['run']>[1]): Promise<T> {
        const call = calls++;
        const result = await pool.run<T>(task, options);
        if (call % 2 === 0) await new Promise((r) => setTimeout(r, 15));
        finished.push(call);
        return result;
      },
    };
    const concurrent = await dedupe(planted, { batchSize: 16, concurrency: 4, pool: shuffling }, 'c4.jsonl');
    expect(finished.some((call, i) => i > 0 && call < finished[i - 1]!)).toBe(true);
    expect(concurrent.report.status).toBe('completed');
    // Same records kept, in the same order (the stage passes outputs on in input order), same notes.
    expect(concurrent.kept).toEqual(run.kept);
    const sorted = (notes: DropNote[]): string[] => notes.map((n) => JSON.stringify(n)).sort();
    expect(sorted(concurrent.notes)).toEqual(sorted(run.notes));
  });
});

describe('near dedupe primed with records kept before the run (instruction dedupe on resume)', () => {
  it('compares new records with the known ones, names them, and never emits them', async () => {
    const known = (await rowsOf(FINEWEB)).filter((r) => r.text.split(/\s+/).length >= 300).slice(0, 60);
    const stage = nearDedupe<Row>({ textOf: (r) => r.text, idOf: (r) => r.id, pool });
    async function* batches(): AsyncGenerator<Row[]> {
      yield known.slice(0, 25);
      yield [];
      // A known record that repeats an earlier known one is not indexed twice.
      yield [...known.slice(25), { id: 'known-copy', text: edit(known[3]!.text, 1) }];
    }
    await stage.prime(batches(), new AbortController().signal);
    expect(stage.kept).toBe(known.length);
    const fresh = (await rowsOf(DOLMA)).find((r) => !known.some((k) => k.text === r.text))!;
    const ctx = { signal: new AbortController().signal, count: () => {} };
    const out = await stage.processBatch([{ id: 'new-copy', text: edit(known[40]!.text, 2) }, fresh], ctx);
    expect(out).toEqual([
      { kind: 'drop', reason: 'near_duplicate', duplicateOf: known[40]!.id },
      { kind: 'emit', values: [fresh] },
    ]);
  });
});
