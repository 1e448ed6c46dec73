import { afterAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { IdStore } from '../operators/dedupe/id-store.js';
import { KeyTable } from '../operators/dedupe/key-table.js';
import { LshIndex } from '../operators/dedupe/lsh.js';
import { DropNotesFile } from '../pipeline/io/drop-notes.js';
import { jaccardEstimate, MinHasher, mulAddModP, signatureAt } from '../operators/dedupe/minhash.js';
import type { MinHashResult } from '../operators/dedupe/minhash-worker.js';
import {
  ExactDeduper,
  exactKey,
  exactKeyInto,
  hash64,
  hash64Into,
  normalizeText,
} from '../operators/dedupe/normalize.js';
import { packTexts, transferablesOf } from '../pipeline/pool/packed-texts.js';
import { WorkerPool } from '../pipeline/pool/worker-pool.js';
import { DOLMA, FINEWEB, query, tempDir } from './helpers/duckdb.js';
import { seededRandom } from '../pipeline/random.js';
import { trueJaccard } from './helpers/jaccard.js';

function vocabulary(size: number, random: () => number): string[] {
  const words = new Set<string>();
  while (words.size < size) {
    let word = '';
    const length = 3 + Math.floor(random() * 7);
    for (let i = 0; i < length; i++) word += String.fromCharCode(97 + Math.floor(random() * 26));
    words.add(word);
  }
  return [...words];
}

async function finewebTexts(): Promise<string[]> {
  return (await query(`SELECT text FROM '${FINEWEB}'`)).map((row) => row[0] as string);
}

describe('exact dedupe keys', () => {
  it('are equal under changes of case, whitespace, punctuation and compatibility forms', () => {
    const base = exactKey('Hello, World! This is a well-known test.');
    for (const variant of [
      'hello world this is a wellknown test',
      '  HELLO,\n\tWORLD!!  this is a   well-known test…  ',
      'Hello\u00a0World — this is a well\u00adknown “test”.',
      'Ｈｅｌｌｏ, Ｗｏｒｌｄ! This is a well-known test.', // full-width letters (NFKC)
    ]) {
      expect(exactKey(variant)).toBe(base);
    }
    expect(base).toMatch(/^[0-9a-f]{16}$/);
  });

  it('differ when words, word order, word boundaries or symbols differ', () => {
    const keys = [
      'hello world this is a test',
      'hello world this is a tests',
      'world hello this is a test',
      'helloworld this is a test',
      'hello world this is a test $',
      'hello world this is a test 1',
      '',
    ].map(exactKey);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('normalizeText equals its definition (NFKC, lower case, two Unicode-class replacements, trim) on real text', async () => {
    const definition = (text: string): string =>
      text
        .normalize('NFKC')
        .toLowerCase()
        .replace(/[\p{P}\p{Cf}]+/gu, '')
        .replace(/[\p{Z}\p{Cc}]+/gu, ' ')
        .trim();
    const texts = [
      ...(await finewebTexts()),
      ...(await query(`SELECT text FROM '${DOLMA}' WHERE text IS NOT NULL`)).map((r) => r[0] as string),
      '',
      ' \t\n ',
      '-',
      'a - b',
      'a\u00ad \u200b b',
      ' «quoted» — dash… ',
      'x\u2028y\u2029z',
      'astral: 𐎟 (U+1039F, punctuation) 𝅳 (U+1D173, format) 🧪 (symbol) 𝐀 (NFKC: a)',
      'lone \ud800 high and \udc00 low surrogates',
      'ends with a high surrogate \ud83d',
    ];
    const differing = texts.filter((t) => normalizeText(t) !== definition(t));
    expect(differing).toEqual([]);
    expect(texts.length).toBeGreaterThan(2_400);
  });

  it('ExactDeduper flags the second and later occurrences only', () => {
    const dedupe = new ExactDeduper();
    expect(['A b.', 'c d', 'a  B', 'C, D!', 'e'].map((t) => dedupe.isDuplicate(t))).toEqual([
      false,
      false,
      true,
      true,
      false,
    ]);
    expect(dedupe.size).toBe(3);
  });
});

describe('MinHash', () => {
  const random = seededRandom(7);
  const vocab = vocabulary(20_000, random);
  // 1,004 distinct words give m = 1,000 shingles; B is A shifted by s words, so J = (m - s) / (m + s).
  const words = Array.from({ length: 1_004 + 700 }, (_, i) => vocab[i]!);
  const m = 1_000;
  const hasher = new MinHasher();

  it('computes (a*x + b) mod 2^31-1 exactly with 32-bit arithmetic, extremes included', () => {
    const P = 0x7fffffff;
    const next = seededRandom(11);
    const values = [0, 1, 2, 0xffff, 0x10000, P - 2, P - 1];
    for (let i = 0; i < 2_000; i++) values.push(Math.floor(next() * P));
    for (let i = 0; i < values.length; i++) {
      const a = Math.max(1, values[i]!);
      const x = values[(i * 7 + 3) % values.length]!;
      const b = values[(i * 13 + 5) % values.length]!;
      const expected = Number((BigInt(a) * BigInt(x) + BigInt(b)) % BigInt(P));
      expect(mulAddModP(a >>> 16, a & 0xffff, x >>> 16, x & 0xffff, b)).toBe(expected);
    }
  });

  for (const target of [0.2, 0.5, 0.8, 1.0]) {
    it(`estimates a Jaccard similarity of ${target} within ±0.1`, () => {
      const shift = Math.round((m * (1 - target)) / (1 + target));
      const a = words.slice(0, 1_004).join(' ');
      const b = words.slice(shift, shift + 1_004).join(' ');
      const truth = trueJaccard(a, b);
      expect(truth).toBeCloseTo(target, 2);
      expect(Math.abs(jaccardEstimate(hasher.sign(a), hasher.sign(b)) - truth)).toBeLessThanOrEqual(0.1);
    });
  }

  it('is deterministic per seed, differs across seeds, and treats short and empty texts sanely', () => {
    const text = 'the quick brown fox jumps over the lazy dog';
    expect([...new MinHasher({ seed: 3 }).sign(text)]).toEqual([...new MinHasher({ seed: 3 }).sign(text)]);
    expect(
      jaccardEstimate(new MinHasher({ seed: 3 }).sign(text), new MinHasher({ seed: 4 }).sign(text)),
    ).toBe(0);
    expect(jaccardEstimate(hasher.sign('two words'), hasher.sign('Two, words!'))).toBe(1);
    expect(jaccardEstimate(hasher.sign(''), hasher.sign('two words'))).toBe(0);
    expect(() => new MinHasher({ numPerm: 0 })).toThrow(RangeError);
  });

  it('signs a packed batch into one buffer equal to signing each text', () => {
    const texts = ['alpha beta gamma delta epsilon zeta', '', 'naïve café 日本語 🧪', words.join(' ')];
    const batch = hasher.signPacked(packTexts(texts));
    expect(batch).toHaveLength(texts.length * 128);
    texts.forEach((t, i) => expect([...signatureAt(batch, 128, i)]).toEqual([...hasher.sign(t)]));
  });
});

describe('LSH index', () => {
  it('rejects a band layout that does not cover the signature', () => {
    expect(() => new LshIndex(128, { bands: 16, rows: 7 })).toThrow(/bands \* rows/);
  });

  it('finds planted near-duplicates among 2,000 documents and verifies false candidates away', () => {
    const random = seededRandom(42);
    const vocab = vocabulary(5_000, random);
    const pick = (): string => vocab[Math.floor(random() * vocab.length)]!;
    const docs: string[] = [];
    for (let i = 0; i < 1_700; i++) {
      docs.push(Array.from({ length: 300 + Math.floor(random() * 200) }, pick).join(' '));
    }
    // 200 near-duplicates: a base document with 1-3 words replaced, at positions far apart (J ~0.9-0.97).
    const planted = new Map<number, number>();
    for (let i = 0; i < 200; i++) {
      const source = Math.floor(random() * 1_700);
      const words = docs[source]!.split(' ');
      const edits = 1 + Math.floor(random() * 3);
      for (let e = 0; e < edits; e++) words[Math.floor(((e + random()) * words.length) / edits)] = pick();
      planted.set(docs.length, source);
      docs.push(words.join(' '));
    }
    // 100 probes at J ~0.6 (a base document shifted by a quarter of its shingles): some become LSH
    // candidates, none may pass the 0.8 threshold.
    const probes = new Map<number, number>();
    for (let i = 0; i < 100; i++) {
      const source = Math.floor(random() * 1_700);
      const words = docs[source]!.split(' ');
      const shift = Math.round((words.length - 4) / 4);
      probes.set(docs.length, source);
      docs.push([...words.slice(shift), ...Array.from({ length: shift }, pick)].join(' '));
    }

    const hasher = new MinHasher();
    const signatures = hasher.signPacked(packTexts(docs));
    const index = new LshIndex(128);
    const found = new Map<number, number>();
    const docOf: number[] = []; // index ordinal -> document number
    let probeCandidates = 0;
    docs.forEach((_, id) => {
      const signature = signatureAt(signatures, 128, id);
      if (probes.has(id) && index.candidates(signature).some((o) => docOf[o] === probes.get(id))) {
        probeCandidates++;
      }
      const duplicate = index.findDuplicate(signature, 0.8);
      if (duplicate === undefined) docOf[index.add(signature)] = id;
      else found.set(id, docOf[duplicate.ordinal]!);
    });

    let recalled = 0;
    for (const [copy, source] of planted) if (found.get(copy) === source) recalled++;
    expect(recalled / planted.size).toBeGreaterThanOrEqual(0.95);
    expect(probeCandidates).toBeGreaterThan(0); // the threshold, not luck, kept them out
    for (const [copy, source] of found) {
      expect(probes.has(copy)).toBe(false);
      expect(trueJaccard(docs[copy]!, docs[source]!)).toBeGreaterThanOrEqual(0.7);
    }
    expect(index.size).toBe(docs.length - found.size);
  });
});

describe('MinHash worker', () => {
  const pool = new WorkerPool({
    filename: new URL('../operators/dedupe/minhash-worker.ts', import.meta.url),
    threads: 2,
    maxQueue: 2,
  });
  afterAll(() => pool.close());

  it('computes the same signatures as the in-thread function and transfers them back', async () => {
    const texts = await finewebTexts();
    const options = { shingle: 5, numPerm: 128, seed: 99 };
    const expected = new MinHasher(options).signPacked(packTexts(texts));
    const batches = [0, 1, 2, 3].map((b) => texts.slice(b * 500, (b + 1) * 500));
    const results = await Promise.all(
      batches.map((batch) => {
        const packed = packTexts(batch);
        return pool.run<MinHashResult>(
          { texts: packed, ...options },
          { transferList: transferablesOf(packed) },
        );
      }),
    );
    const merged = new Uint32Array(results.reduce((n, r) => n + r.signatures.length, 0));
    let offset = 0;
    for (const { signatures } of results) {
      expect(signatures).toBeInstanceOf(Uint32Array);
      merged.set(signatures, offset);
      offset += signatures.length;
    }
    expect(merged.length).toBe(texts.length * 128);
    expect(Buffer.from(merged.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
  });
});

describe('exact dedupe on the FineWeb sample', () => {
  // The sample has no two equal raw texts, so exact duplicates are planted in SQL: every 10th text re-spaced,
  // every 15th lower-cased with punctuation appended.
  const planted = `
    WITH base AS (SELECT row_number() OVER () AS i, text FROM '${FINEWEB}')
    SELECT text FROM base
    UNION ALL SELECT '  ' || replace(text, ' ', chr(10) || chr(9) || ' ') FROM base WHERE i % 10 = 0
    UNION ALL SELECT lower(text) || ' !!' FROM base WHERE i % 15 = 0`;
  // The JS normalisation in SQL, except NFKC (DuckDB has only NFC).
  const normalised = `trim(regexp_replace(regexp_replace(lower(nfc_normalize(text)),
    '[\\pP\\p{Cf}]+', '', 'g'), '[\\pZ\\p{Cc}]+', ' ', 'g'))`;

  it('finds as many duplicates as DuckDB counts over the same normalisation, and every one of them', async () => {
    const rows = await query(`SELECT text, ${normalised} AS norm FROM (${planted})`);
    const [[total, distinct]] = (await query(
      `SELECT count(*), count(DISTINCT ${normalised}) FROM (${planted})`,
    )) as [[bigint, bigint]];
    const dedupe = new ExactDeduper();
    const duplicates = rows.filter((row) => dedupe.isDuplicate(row[0] as string)).length;
    expect(duplicates).toBe(Number(total - distinct));
    expect(duplicates).toBeGreaterThanOrEqual(170 + 113);

    // Every group DuckDB considers equal has one exact key.
    const keysByNorm = new Map<string, Set<string>>();
    for (const [text, norm] of rows as [string, string][]) {
      const keys = keysByNorm.get(norm) ?? new Set<string>();
      keys.add(exactKey(text));
      keysByNorm.set(norm, keys);
    }
    for (const keys of keysByNorm.values()) expect(keys.size).toBe(1);
    expect(keysByNorm.size).toBe(Number(distinct));
  });
});

describe('compact stores', () => {
  it('KeyTable finds every key it holds across several doublings, and no key it does not', () => {
    const table = new KeyTable();
    const random = seededRandom(5);
    const keys: Array<[number, number]> = [];
    for (let i = 0; i < 200_000; i++) keys.push([(random() * 2 ** 32) >>> 0, (random() * 2 ** 32) >>> 0]);
    let foundBeforeAdd = 0;
    keys.forEach(([hi, lo], i) => {
      if (table.find(hi, lo) !== -1) foundBeforeAdd++;
      table.add(hi, lo, i);
    });
    expect(foundBeforeAdd).toBe(0);
    expect(table.size).toBe(keys.length);
    expect(table.bytes).toBe(2 ** 19 * 12); // 200k keys at load <= 0.75: 2^19 slots of 12 bytes
    expect(keys.filter(([hi, lo], i) => table.find(hi, lo) !== i)).toEqual([]);
    // Same high half (same home slot), different low half: probed past, not confused.
    expect(table.find(keys[7]![0], (keys[7]![1] + 1) >>> 0)).toBe(-1);
    expect(() => table.add(keys[3]![0], keys[3]![1], 9)).toThrow(/already/);
  });

  it('IdStore returns every id by ordinal across pages, multi-byte text included', () => {
    const store = new IdStore();
    const ids = Array.from({ length: 150_000 }, (_, i) =>
      i % 1000 === 0 ? `ドキュメント-${i}-🧪` : `<urn:uuid:${i.toString(16).padStart(32, '0')}>`,
    );
    expect(ids.filter((id, i) => store.add(id) !== i)).toEqual([]);
    expect(store.size).toBe(ids.length);
    expect(ids.filter((id, i) => store.get(i) !== id)).toEqual([]);
    expect(store.get(ids.length - 1)).toBe(ids[ids.length - 1]);
    expect(store.bytes).toBeLessThan(ids.length * 70); // ~45-byte ids: ~51 bytes each, plus the last page
    expect(() => store.get(ids.length)).toThrow(RangeError);
    expect(() => store.add('x'.repeat(70_000))).toThrow(/longer than/);
  });

  it('hash64Into gives the halves of hash64, and exactKeyInto those of exactKey', () => {
    const out = new Uint32Array(2);
    for (const text of ['', 'a', 'Hello, World!', 'naïve café 日本語 🧪']) {
      hash64Into(text, out);
      expect(out[0]!.toString(16).padStart(8, '0') + out[1]!.toString(16).padStart(8, '0')).toBe(
        hash64(text),
      );
      exactKeyInto(text, out);
      expect(out[0]!.toString(16).padStart(8, '0') + out[1]!.toString(16).padStart(8, '0')).toBe(
        exactKey(text),
      );
    }
  });

  it('the LSH index keeps finding documents after its tables grow, and its 8-bit sketches estimate Jaccard', () => {
    const random = seededRandom(9);
    const index = new LshIndex(128);
    const signatures: Uint32Array[] = [];
    for (let i = 0; i < 40_000; i++) {
      const signature = new Uint32Array(128);
      for (let p = 0; p < 128; p++) signature[p] = Math.floor(random() * 0x7fffffff);
      signatures.push(signature);
      if (index.add(signature) !== i) throw new Error(`ordinal of document ${i}`);
    }
    expect(index.size).toBe(40_000);
    // 40k documents: 2^16 slots per band (grown twice from 2^14), one sketch page of 2^16 x 128 bytes.
    expect(index.bytes).toBe(16 * 2 ** 16 * 8 + 2 ** 16 * 128);
    for (let i = 0; i < 40_000; i += 1_999) {
      expect(index.findDuplicate(signatures[i]!, 0.99)).toEqual({ ordinal: i, similarity: 1 });
    }
    // A copy of document 123 with the 32 minima of its first 4 bands changed (J estimate 0.75): still a
    // candidate through the other 12 bands, its sketch estimate within 0.05 of the full one. Unrelated random
    // signatures estimate ~0.
    const edited = signatures[123]!.slice();
    for (let p = 0; p < 32; p++) edited[p] = (edited[p]! + 1) % 0x7fffffff;
    expect(index.candidates(edited)).toContain(123);
    expect(Math.abs(index.similarity(edited, 123) - jaccardEstimate(edited, signatures[123]!))).toBeLessThan(
      0.05,
    );
    expect(index.findDuplicate(edited, 0.8)).toBeUndefined();
    expect(index.findDuplicate(edited, 0.7)?.ordinal).toBe(123);
    let unrelated = 0;
    for (let i = 0; i < 100; i++) unrelated = Math.max(unrelated, index.similarity(signatures[i]!, i + 1));
    expect(unrelated).toBeLessThan(0.1);
  });
});

describe('drop notes file', () => {
  it('writes every note as one JSON line, in order, across many buffered blocks', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const file = path.join(dir, 'duplicates.jsonl');
      const notes = new DropNotesFile(file);
      expect(await readFile(file, 'utf8')).toBe(''); // created up front
      const n = 30_000; // ~3.5 MB: several 1 MiB blocks
      for (let row = 0; row < n; row++) {
        notes.write({
          shard: 'päge "1".parquet',
          row,
          stage: 'near_dedupe',
          reason: 'near_duplicate',
          duplicateOf: `id-${row >> 1}`,
        });
      }
      await notes.close();
      await notes.close(); // idempotent
      const lines = (await readFile(file, 'utf8')).split('\n');
      expect(lines.pop()).toBe('');
      expect(lines).toHaveLength(n);
      expect(JSON.parse(lines[12_345]!)).toEqual({
        shard: 'päge "1".parquet',
        row: 12_345,
        stage: 'near_dedupe',
        reason: 'near_duplicate',
        duplicateOf: 'id-6172',
      });
      lines.forEach((line, row) => expect((JSON.parse(line) as { row: number }).row).toBe(row));
      expect(() => notes.write({ shard: 's', row: 0, stage: 'x', reason: 'y', duplicateOf: 'z' })).toThrow(
        /closed/,
      );
    } finally {
      await cleanup();
    }
  });
});
