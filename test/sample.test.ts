import type { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diversitySelect } from '../operators/sample/diversity-select.js';
import {
  farthestPoint,
  farthestPointParallel,
  matrixOf,
  startIndex,
  type FarthestPointResult,
  type VectorMatrix,
} from '../operators/sample/farthest-point.js';
import { HashingEmbedder, PooledHashingEmbedder } from '../operators/sample/hashing-embedder.js';
import { HashingVectorizer } from '../operators/sample/hashing-vectorizer.js';
import { preSample, rateSample, reservoirSample, samplePriority } from '../operators/sample/pre-sample.js';
import {
  countDuplicateLines,
  measureCharacters,
  qualityFilter,
  qualityIssue,
  type QualityFilterOptions,
} from '../operators/sample/quality-filters.js';
import { VectorStore } from '../operators/sample/vector-store.js';
import { blockBytes } from '../operators/sample/block-memory.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { ParquetSource } from '../pipeline/io/parquet-source.js';
import { resolveShards } from '../pipeline/io/shards.js';
import type { Ledger, Ticket } from '../pipeline/ledger.js';
import type { Outcome } from '../pipeline/operator.js';
import { pipeline } from '../pipeline/run.js';
import type { Envelope, Source } from '../pipeline/source.js';
import type { Document } from '../schemas/documents.js';
import { DOLMA, FINEWEB, query, tempDir } from './helpers/duckdb.js';
import { CollectingSink } from './helpers/memory.js';
import { seededRandom } from '../pipeline/random.js';

const ctx = { signal: new AbortController().signal, count: () => {} };

const METHOD: QualityFilterOptions = {
  symbolRatio: { enabled: true, max: 0.5 },
  duplicateLines: { enabled: true, maxFraction: 0.1 },
  charRun: { enabled: true, maxRun: 10, includeWhitespace: true },
};

function doc(id: string, text = `text of ${id}`, sourceFile = 'shard-a.parquet', sourceRow = 0): Document {
  return { id, text, sourceFile, sourceRow, meta: {} };
}

/** Yields the given documents in order, each from its own shard's ledger tally. */
class DocumentSource implements Source<Document> {
  readonly name = 'read';
  constructor(private readonly docs: readonly Document[]) {}
  async expectedRows(): Promise<number> {
    return this.docs.length;
  }
  async *read(ledger: Ledger, signal: AbortSignal): AsyncIterable<Envelope<Document>> {
    for (const value of this.docs) {
      if (signal.aborted) return;
      yield { ticket: ledger.read(value.sourceFile, value.sourceRow), value };
    }
  }
}

async function texts(file: string): Promise<Array<{ id: string; text: string }>> {
  return (await query(`SELECT id, text FROM '${file}'`)).map((r) => ({
    id: String(r[0]),
    text: r[1] as string,
  }));
}

const outcomeOf = (o: Outcome<Document>): string => (o.kind === 'drop' ? o.reason : o.kind);

describe('quality filters', () => {
  it('count code points, symbols and runs the way a person would', () => {
    expect(measureCharacters('')).toEqual({ chars: 0, symbols: 0, longestRun: 0, longestNonSpaceRun: 0 });
    expect(measureCharacters('ab, c!')).toMatchObject({ chars: 6, symbols: 2, longestRun: 1 });
    // Letters of other scripts, combining marks and digits are not symbols; an emoji is one character.
    expect(measureCharacters('日本語 हिन्दी ٣٤ é')).toMatchObject({ symbols: 0 });
    expect(measureCharacters('a🧪b')).toMatchObject({ chars: 3, symbols: 1 });
    expect(measureCharacters('\ud800x')).toMatchObject({ chars: 2, symbols: 1 }); // a lone surrogate
    expect(measureCharacters('🧪'.repeat(11))).toMatchObject({ chars: 11, longestRun: 11 });
    expect(measureCharacters('xx  yyy\n\n\n\n')).toMatchObject({ longestRun: 4, longestNonSpaceRun: 3 });
  });

  it('drop more than 50% symbols, keep exactly 50%', () => {
    expect(qualityIssue('a!', METHOD)).toBeUndefined();
    expect(qualityIssue('a!!', METHOD)).toBe('symbol_ratio');
    expect(qualityIssue('ab cd !!!!!', METHOD)).toBeUndefined(); // whitespace is not a symbol: 5 of 11
    expect(qualityIssue('$$$ ### @@@ a1', METHOD)).toBe('symbol_ratio');
    expect(qualityIssue('🧪🧪 ab', METHOD)).toBeUndefined(); // 2 of 5: emoji counted once each
  });

  it('drop a character repeated 11 times in a row, keep 10', () => {
    const words = 'a line of ordinary words with a long rule in it';
    expect(qualityIssue(`${words} ${'='.repeat(10)} ${words}`, METHOD)).toBeUndefined();
    expect(qualityIssue(`${words} ${'='.repeat(11)} ${words}`, METHOD)).toBe('char_run');
    expect(qualityIssue(`${words} ${'z'.repeat(11)}`, METHOD)).toBe('char_run');
    expect(qualityIssue(`${words} ${'🧪'.repeat(11)}`, METHOD)).toBe('char_run');
    expect(qualityIssue('ab'.repeat(20), METHOD)).toBeUndefined();
    const indented = `${words}${' '.repeat(11)}${words}`;
    expect(qualityIssue(indented, METHOD)).toBe('char_run');
    const exempt = { ...METHOD, charRun: { ...METHOD.charRun, includeWhitespace: false } };
    expect(qualityIssue(indented, exempt)).toBeUndefined();
  });

  it('drop more than 10% duplicated non-empty lines, comparing trimmed lines', () => {
    const lines = (n: number) => Array.from({ length: n }, (_, i) => `line number ${i}`);
    // 10 lines, 1 repeat: exactly 10%, kept. Blank and whitespace-only lines do not count.
    const tenPercent = [...lines(9), '  line number 3\t', '', '   '].join('\n');
    expect(countDuplicateLines(tenPercent)).toEqual({ lines: 10, duplicates: 1 });
    expect(qualityIssue(tenPercent, METHOD)).toBeUndefined();
    const twenty = [...lines(8), 'line number 3', 'line number 3'].join('\r\n');
    expect(countDuplicateLines(twenty)).toEqual({ lines: 10, duplicates: 2 });
    expect(qualityIssue(twenty, METHOD)).toBe('duplicate_lines');
    expect(countDuplicateLines('')).toEqual({ lines: 0, duplicates: 0 });
  });

  it('switch each rule off on its own', () => {
    const off = (rule: keyof QualityFilterOptions): QualityFilterOptions => ({
      ...METHOD,
      [rule]: { ...METHOD[rule], enabled: false },
    });
    expect(qualityIssue('!!!!a', off('symbolRatio'))).toBeUndefined();
    expect(qualityIssue('a'.repeat(20), off('charRun'))).toBeUndefined();
    expect(qualityIssue('x\nx\nx', off('duplicateLines'))).toBeUndefined();
    expect(qualityIssue('x\nx\nx', off('symbolRatio'))).toBe('duplicate_lines');
  });

  it('as an operator, name the rule in the drop reason and pass the rest through untouched', () => {
    const filter = qualityFilter<Document>(METHOD);
    expect(filter.name).toBe('quality_filter');
    const good = doc('1', 'A normal sentence.\nAnother one.');
    expect(filter.process(good, ctx)).toEqual({ kind: 'emit', values: [good] });
    expect(outcomeOf(filter.process(doc('2', '!!??!!'), ctx) as Outcome<Document>)).toBe('symbol_ratio');
    expect(outcomeOf(filter.process(doc('3', 'zzzzzzzzzzzz'), ctx) as Outcome<Document>)).toBe('char_run');
    expect(outcomeOf(filter.process(doc('4', 'a\nb\na\nb'), ctx) as Outcome<Document>)).toBe(
      'duplicate_lines',
    );
    expect(() => qualityFilter({ ...METHOD, symbolRatio: { enabled: true, max: 1.5 } })).toThrow(RangeError);
  });

  it('agree with a slow regex-per-character reference on every real document', async () => {
    const word = /^[\p{L}\p{M}\p{N}]$/u;
    const space = /^\s$/u;
    for (const { text } of [...(await texts(FINEWEB)), ...(await texts(DOLMA))]) {
      const chars = [...text];
      let longestRun = 0;
      let longestNonSpaceRun = 0;
      for (let i = 0; i < chars.length;) {
        let j = i;
        while (j < chars.length && chars[j] === chars[i]) j++;
        longestRun = Math.max(longestRun, j - i);
        if (!space.test(chars[i]!)) longestNonSpaceRun = Math.max(longestNonSpaceRun, j - i);
        i = j;
      }
      expect(measureCharacters(text)).toEqual({
        chars: chars.length,
        symbols: chars.filter((c) => !word.test(c) && !space.test(c)).length,
        longestRun,
        longestNonSpaceRun,
      });
      const lines = text
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.length > 0);
      expect(countDuplicateLines(text)).toEqual({
        lines: lines.length,
        duplicates: lines.length - new Set(lines).size,
      });
    }
  });
});

describe('pre-sample', () => {
  const ids = Array.from({ length: 20_000 }, (_, i) => `doc-${i}`);

  it('derives a uniform number in [0, 1) from (seed, id) alone', () => {
    const a = ids.map((id) => samplePriority(7, id));
    expect(ids.map((id) => samplePriority(7, id))).toEqual(a);
    expect(a.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(a).size).toBe(a.length);
    const mean = a.reduce((s, x) => s + x, 0) / a.length;
    expect(mean).toBeCloseTo(0.5, 1);
    expect(samplePriority(8, 'doc-1')).not.toBe(samplePriority(7, 'doc-1'));
  });

  it('rate mode keeps the requested share, the same documents whatever their order', () => {
    const op = rateSample<Document>({ rate: 0.3, seed: 11 });
    const keptIn = (order: readonly string[]) =>
      new Set(order.filter((id) => (op.process(doc(id), ctx) as Outcome<Document>).kind === 'emit'));
    const kept = keptIn(ids);
    // 3 sigma of a binomial(20000, 0.3) share is 0.0097.
    expect(Math.abs(kept.size / ids.length - 0.3)).toBeLessThan(0.01);
    const shuffled = [...ids].reverse();
    expect(keptIn(shuffled)).toEqual(kept);
    expect(outcomeOf(op.process(doc([...ids].find((id) => !kept.has(id))!), ctx) as Outcome<Document>)).toBe(
      'pre_sample',
    );
    expect(() => rateSample({ rate: 1.2, seed: 0 })).toThrow(RangeError);
  });

  it('reservoir mode keeps exactly perShard documents per shard, the smallest priorities, in any arrival order', async () => {
    const sizes = { 'a.parquet': 500, 'b.parquet': 50, 'c.parquet': 200 };
    const docs = Object.entries(sizes).flatMap(([shard, n]) =>
      Array.from({ length: n }, (_, row) => doc(`${shard}:${row}`, 'x', shard, row)),
    );
    const expected = new Set(
      Object.keys(sizes).flatMap((shard) =>
        docs
          .filter((d) => d.sourceFile === shard)
          .sort((x, y) => samplePriority(5, x.id) - samplePriority(5, y.id))
          .slice(0, 100)
          .map((d) => d.id),
      ),
    );
    const random = seededRandom(3);
    const interleaved = [...docs].sort(() => random() - 0.5);
    // Shard by shard, each shard is decided when the next begins; interleaved, all at the end of the input.
    for (const [order, eachShard] of [
      [docs, true],
      [interleaved, false],
    ] as const) {
      const sink = new CollectingSink<Document>(64);
      const report = await pipeline(new DocumentSource(order))
        .pipe(reservoirSample<Document>({ perShard: 100, seed: 5, eachShard }))
        .into(sink, { queueCapacity: 16 })
        .run();
      expect(report.status).toBe('completed');
      const kept = sink.committed.map((d) => d.id);
      expect(new Set(kept)).toEqual(expected);
      for (const [shard, n] of Object.entries(sizes)) {
        expect(kept.filter((id) => id.startsWith(`${shard}:`))).toHaveLength(Math.min(n, 100));
      }
      expect(report.totals.dropped).toEqual({ 'pre_sample:pre_sample': 400 + 100 });
      // Kept documents leave in arrival order.
      const position = new Map(order.map((d, i) => [d.id, i]));
      expect(kept.map((id) => position.get(id)!)).toEqual(
        [...kept.map((id) => position.get(id)!)].sort((a, b) => a - b),
      );
    }
  });

  it('reservoir mode sends the sample of each shard on before the next shard is read to its end', async () => {
    const docs = ['a.parquet', 'b.parquet', 'c.parquet'].flatMap((shard) =>
      Array.from({ length: 400 }, (_, row) => doc(`${shard}:${row}`, 'x', shard, row)),
    );
    const events: string[] = [];
    class LoggingSource extends DocumentSource {
      override async *read(ledger: Ledger, signal: AbortSignal): AsyncIterable<Envelope<Document>> {
        for await (const envelope of super.read(ledger, signal)) {
          events.push(`read ${envelope.value.id}`);
          yield envelope;
        }
      }
    }
    class LoggingSink extends CollectingSink<Document> {
      override async write(value: Document, ticket: Ticket): Promise<void> {
        events.push(`write ${value.sourceFile}`);
        await super.write(value, ticket);
      }
    }
    const sink = new LoggingSink(8);
    const report = await pipeline(new LoggingSource(docs))
      .pipe(reservoirSample<Document>({ perShard: 50, seed: 1 }))
      .into(sink, { queueCapacity: 8 })
      .run();
    expect(report.status).toBe('completed');
    expect(sink.committed).toHaveLength(150);
    const firstWrite = (shard: string) => events.indexOf(`write ${shard}`);
    // Shard a's sample reaches the sink while shard b is still being read, and b's while c is.
    expect(firstWrite('a.parquet')).toBeLessThan(events.indexOf('read b.parquet:399'));
    expect(firstWrite('b.parquet')).toBeLessThan(events.indexOf('read c.parquet:399'));
    expect(firstWrite('a.parquet')).toBeGreaterThan(events.indexOf('read b.parquet:0'));

    // Records of a shard that come back after it was decided fail the run instead of sampling it twice.
    const back = [...docs.slice(0, 400), ...docs.slice(400, 500), docs[10]!];
    const broken = await pipeline(new DocumentSource(back))
      .pipe(reservoirSample<Document>({ perShard: 50, seed: 1 }))
      .into(new CollectingSink<Document>(8))
      .run();
    expect(broken.status).toBe('failed');
    expect(broken.error).toMatch(/a record of "a\.parquet" arrived after that group was decided/);
  });

  it('reservoir mode samples uniformly: no position in the shard is favoured', async () => {
    // Over 300 seeds, each of 200 documents should be kept ~300 * 20/200 = 30 times.
    const docs = Array.from({ length: 200 }, (_, i) => doc(`d${i}`, 'x', 's', i));
    const times = new Array<number>(200).fill(0);
    for (let seed = 0; seed < 300; seed++) {
      const op = reservoirSample<Document>({ perShard: 20, seed });
      docs.forEach((d, i) => op.observe(d, i, ctx));
      const { keep } = await op.select(docs.length, ctx);
      keep.forEach((k, i) => (times[i]! += k));
    }
    const firstHalf = times.slice(0, 100).reduce((a, b) => a + b, 0);
    expect(firstHalf / (300 * 20)).toBeGreaterThan(0.45);
    expect(firstHalf / (300 * 20)).toBeLessThan(0.55);
    expect(Math.min(...times)).toBeGreaterThan(10);
    expect(Math.max(...times)).toBeLessThan(55);
  });

  it('preSample picks a streaming stage for rate and a blocking one for reservoir', () => {
    expect('process' in preSample({ mode: 'rate', rate: 0.5, seed: 0 })).toBe(true);
    expect('blocking' in preSample({ mode: 'reservoir', perShard: 10, seed: 0 })).toBe(true);
  });
});

describe('hashing vectorizer', () => {
  const options = { dimensions: 256, bigrams: false, seed: 0 };

  it('is deterministic across calls and instances, and L2-normalised', () => {
    const text = 'The quick brown fox jumps over the lazy dog. The dog sleeps.';
    const a = new HashingVectorizer(options).vectorize(text);
    const vectorizer = new HashingVectorizer(options);
    vectorizer.vectorize('something else entirely to dirty the term table');
    const b = vectorizer.vectorize(text);
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    expect(a.reduce((s, x) => s + x * x, 0)).toBeCloseTo(1, 6);
    expect(new HashingVectorizer({ ...options, seed: 1 }).vectorize(text)).not.toEqual(a);
    expect(vectorizer.vectorize('   ...   ').every((x) => x === 0)).toBe(true);
  });

  it('weights a term by 1 + ln(tf), ignores case and punctuation, and is a bag of words without bigrams', () => {
    const v = new HashingVectorizer({ ...options, dimensions: 4096 });
    const x = v.vectorize('Apple apple, BANANA');
    const magnitudes = [...x].filter((value) => value !== 0).map(Math.abs);
    expect(magnitudes).toHaveLength(2);
    const norm = Math.hypot(1 + Math.log(2), 1);
    expect(magnitudes.sort()).toEqual([
      expect.closeTo(1 / norm, 6),
      expect.closeTo((1 + Math.log(2)) / norm, 6),
    ]);
    expect(v.vectorize('banana APPLE apple')).toEqual(x);
    const withBigrams = new HashingVectorizer({ ...options, bigrams: true });
    expect(withBigrams.vectorize('red apple green pear')).not.toEqual(
      withBigrams.vectorize('green apple red pear'),
    );
  });

  it('places a lightly edited document nearer than an unrelated one', async () => {
    const docs = (await texts(FINEWEB)).slice(0, 50).map((d) => d.text);
    const v = new HashingVectorizer(options);
    const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);
    for (let i = 0; i < docs.length - 1; i++) {
      const original = v.vectorize(docs[i]!);
      const edited = v.vectorize(docs[i]!.slice(0, Math.floor(docs[i]!.length * 0.9)));
      expect(dot(original, edited)).toBeGreaterThan(dot(original, v.vectorize(docs[i + 1]!)));
    }
  });

  it('gives the same vectors in the worker pool as in-thread', async () => {
    const docs = (await texts(FINEWEB)).slice(0, 600).map((d) => d.text);
    const pooled = new PooledHashingEmbedder(options, 2);
    try {
      const [a, b] = await Promise.all([pooled.embed(docs.slice(0, 300)), pooled.embed(docs.slice(300))]);
      expect([...a!, ...b!]).toEqual(await new HashingEmbedder(options).embed(docs));
    } finally {
      await pooled.close();
    }
  });
});

/** The definition, computed the slow way: min over the selected rows, for every row, at every step. */
function bruteForce(
  vectors: number[][],
  k: number,
  seed: number,
): { selected: number[]; distances: number[] } {
  const distance = (a: number[], b: number[]) => 1 - a.reduce((s, x, j) => s + x * b[j]!, 0);
  const selected = [startIndex(seed, vectors.length)];
  const distances = [Infinity];
  while (selected.length < Math.min(k, vectors.length)) {
    let best = -1;
    let bestValue = -Infinity;
    vectors.forEach((v, i) => {
      if (selected.includes(i)) return;
      const nearest = Math.min(...selected.map((s) => distance(v, vectors[s]!)));
      if (nearest > bestValue) {
        bestValue = nearest;
        best = i;
      }
    });
    selected.push(best);
    distances.push(bestValue);
  }
  return { selected, distances };
}

function randomVectors(n: number, d: number, seed: number): number[][] {
  const random = seededRandom(seed);
  return Array.from({ length: n }, () => {
    const v = Array.from({ length: d }, () => random() - 0.5);
    const norm = Math.hypot(...v);
    return v.map((x) => Math.fround(x / norm));
  });
}

function storeOf(vectors: number[][], blockRows: number): VectorMatrix {
  const store = new VectorStore({ blockRows });
  vectors.forEach((v, i) => store.set(i, Float32Array.from(v)));
  return store.matrix();
}

const sameResult = (a: FarthestPointResult, b: FarthestPointResult) => {
  expect([...a.selected]).toEqual([...b.selected]);
  expect(Buffer.from(a.distances.buffer).equals(Buffer.from(b.distances.buffer))).toBe(true);
};

describe('farthest-point selection', () => {
  it('matches a brute-force reference on small random data, with one block or many', () => {
    for (const [n, d, k, seed] of [
      [200, 16, 30, 1],
      [157, 7, 40, 2],
      [64, 3, 64, 3],
    ] as const) {
      const vectors = randomVectors(n, d, seed);
      const expected = bruteForce(vectors, k, seed);
      for (const matrix of [matrixOf(Float32Array.from(vectors.flat()), d), storeOf(vectors, 37)]) {
        for (const kernel of ['js', 'simd'] as const) {
          const got = farthestPoint(matrix, { k, seed, kernel });
          expect([...got.selected]).toEqual(expected.selected);
          expected.distances.forEach((x, t) => expect(got.distances[t]).toBeCloseTo(x, 6));
        }
      }
    }
  });

  it('breaks ties by the lowest index and never selects a row twice', () => {
    // Each unit vector twice: rows 2i and 2i+1 are equal. Every unselected direction is at distance 1.
    const d = 6;
    const vectors = Array.from({ length: 2 * d }, (_, r) =>
      Array.from({ length: d }, (_, j) => (j === r >> 1 ? 1 : 0)),
    );
    const seed = 4;
    const start = startIndex(seed, vectors.length);
    const { selected, distances } = farthestPoint(matrixOf(Float32Array.from(vectors.flat()), d), {
      k: 2 * d,
      seed,
    });
    const others = Array.from({ length: d }, (_, i) => 2 * i).filter((r) => r >> 1 !== start >> 1);
    // Distinct directions first (lowest index of each pair), then the duplicates, lowest first.
    const duplicates = Array.from({ length: 2 * d }, (_, r) => r).filter(
      (r) => r !== start && !others.includes(r),
    );
    expect([...selected]).toEqual([start, ...others, ...duplicates]);
    expect([...distances.slice(1, d)]).toEqual(new Array(d - 1).fill(1));
    expect(distances[d]).toBe(0);
    expect(new Set(selected).size).toBe(2 * d);
  });

  it('selects everything when k >= n, nothing when k = 0, and rejects non-finite vectors', () => {
    const m = matrixOf(Float32Array.from(randomVectors(10, 4, 9).flat()), 4);
    expect([...farthestPoint(m, { k: 50, seed: 0 }).selected].sort((a, b) => a - b)).toEqual([
      ...Array(10).keys(),
    ]);
    expect(farthestPoint(m, { k: 0, seed: 0 }).selected).toHaveLength(0);
    expect(() => farthestPoint(matrixOf(Float32Array.from([1, 0, NaN, 1]), 2), { k: 2, seed: 0 })).toThrow(
      /not finite/,
    );
  });

  it('returns the identical selection on worker threads, with Atomics or messages, on 1 to 3 threads, either kernel', async () => {
    const vectors = randomVectors(3001, 24, 5);
    const matrices = [matrixOf(Float32Array.from(vectors.flat()), 24), storeOf(vectors, 500)];
    const serial = farthestPoint(matrices[0]!, { k: 300, seed: 8 });
    sameResult(serial, farthestPoint(matrices[1]!, { k: 300, seed: 8 }));
    sameResult(serial, farthestPoint(matrices[1]!, { k: 300, seed: 8, kernel: 'js' }));
    for (const [threads, sync, matrix, kernel] of [
      [2, 'atomics', matrices[0]!, 'simd'],
      [3, 'atomics', matrices[1]!, 'simd'],
      [1, 'atomics', matrices[0]!, 'simd'],
      [2, 'messages', matrices[1]!, 'simd'],
      [2, 'atomics', matrices[1]!, 'js'],
      [2, 'messages', matrices[0]!, 'js'],
    ] as const) {
      sameResult(serial, await farthestPointParallel(matrix, { k: 300, seed: 8, threads, sync, kernel }));
    }
  });

  it('selects the same real documents, bit for bit, with the js and simd kernels, serial and parallel', async () => {
    const docs = await texts(FINEWEB);
    const vectorizer = new HashingVectorizer({ dimensions: 256, bigrams: false, seed: 0 });
    const store = new VectorStore({ blockRows: 512, dimensions: 256 });
    const vector = new Float32Array(256);
    docs.forEach((d, i) => {
      vectorizer.vectorizeInto(d.text, vector, 0);
      store.set(i, vector);
    });
    const m = store.matrix();
    const k = 400;
    const js = farthestPoint(m, { k, seed: 5, kernel: 'js' });
    sameResult(js, farthestPoint(m, { k, seed: 5, kernel: 'simd' }));
    sameResult(js, await farthestPointParallel(m, { k, seed: 5, threads: 2, kernel: 'simd' }));
  });

  it('stops its workers and rejects when aborted', async () => {
    const m = matrixOf(Float32Array.from(randomVectors(20_000, 64, 6).flat()), 64);
    const controller = new AbortController();
    const run = farthestPointParallel(m, { k: 20_000, seed: 0, threads: 2, signal: controller.signal });
    setTimeout(() => controller.abort(new Error('stop')), 200);
    await expect(run).rejects.toThrow();
  });
});

describe('diversity_select through the engine', () => {
  let db: DuckDBInstance;
  beforeAll(async () => {
    db = await openDuckDB({ threads: 2 });
  });
  afterAll(() => db.closeSync());

  /** Read the FineWeb sample → quality filter → diversity_select(keep) → memory, as the job will run it. */
  async function run(keep: number, extra: { pooled?: boolean; minParallelWork?: number } = {}) {
    const { dir, cleanup } = await tempDir();
    try {
      const options = { dimensions: 256, bigrams: false, seed: 0 };
      const source = new ParquetSource(db, {
        shards: await resolveShards([FINEWEB]),
        textColumn: 'text',
        metaColumns: [],
      });
      const sink = new CollectingSink<Document>(100);
      const report = await pipeline(source)
        .pipe(qualityFilter<Document>(METHOD))
        .pipe(
          diversitySelect<Document>({
            keep,
            seed: 3,
            threads: 2,
            embedder: extra.pooled ? new PooledHashingEmbedder(options, 2) : new HashingEmbedder(options),
            minParallelWork: extra.minParallelWork,
          }),
        )
        .into(sink, { spillDir: dir, queueCapacity: 32 })
        .run();
      return { report, kept: sink.committed };
    } finally {
      await cleanup();
    }
  }

  /** The same selection computed directly from the file, without the engine. */
  async function expectedIds(keep: number): Promise<string[]> {
    const passed = (await texts(FINEWEB)).filter((d) => qualityIssue(d.text, METHOD) === undefined);
    const vectorizer = new HashingVectorizer({ dimensions: 256, bigrams: false, seed: 0 });
    const matrix = new Float32Array(passed.length * 256);
    passed.forEach((d, i) => vectorizer.vectorizeInto(d.text, matrix, i * 256));
    const { selected } = farthestPoint(matrixOf(matrix, 256), { k: keep, seed: 3 });
    return [...selected].sort((a, b) => a - b).map((i) => passed[i]!.id);
  }

  it('keeps exactly the farthest-point selection of the real documents, in arrival order', async () => {
    const { report, kept } = await run(200);
    expect(report.status).toBe('completed');
    const stage = report.stages.find((s) => s.name === 'diversity_select')!;
    const passed = stage.in;
    expect(passed).toBeGreaterThan(1500);
    expect(kept.map((d) => d.id)).toEqual(await expectedIds(200));
    expect(report.totals.dropped['diversity_select:diversity']).toBe(passed - 200);
    expect(report.totals.written).toBe(200);
    // Memory: vectors only, in blocks of 32,768 rows (32 MiB of vectors and 320 KiB of SIMD scratch each).
    expect(stage.counters.vector_bytes).toBe(Math.ceil(passed / 32_768) * blockBytes(32_768, 256));
    expect(blockBytes(32_768, 256)).toBe(32_768 * 256 * 4 + 5 * 65536);
    expect(stage.counters.embedded).toBe(passed);
  });

  it('selects the same documents with the worker-pool vectorizer and the parallel selection', async () => {
    const { report, kept } = await run(150, { pooled: true, minParallelWork: 0 });
    expect(report.status).toBe('completed');
    expect(kept.map((d) => d.id)).toEqual(await expectedIds(150));
  });

  it('keeps every document when no more than `keep` arrive', async () => {
    const { report, kept } = await run(5000);
    expect(report.status).toBe('completed');
    expect(kept).toHaveLength(report.stages.find((s) => s.name === 'diversity_select')!.in);
    expect(report.totals.dropped['diversity_select:diversity']).toBeUndefined();
  });
});
