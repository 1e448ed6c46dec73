// Synthetic web-crawl documents from real ones: shared by gen-shards.mjs and write-compare.mjs.
//
// Row r starts from one real document (picked with a seeded hash) and replaces a seeded-hash-chosen
// share of its words with words drawn from the whole sample's token stream (so frequency-weighted).
// Word order, line breaks and document lengths stay realistic, and repeated source documents no
// longer give long zstd matches.

export const SAMPLE = '/work/shared/data/web/fineweb-sample.snappy.parquet';

// murmur3 fmix32: a cheap, well-mixed seeded hash
export function mix(h) {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
export const hex8 = (n) => n.toString(16).padStart(8, '0');

/**
 * @param {string[]} texts real documents
 * @param {{replacePct?: number, seed?: number}} opts
 * @returns {(r: number) => {text: string, d: number, h: number, h2: number}}
 */
export function makeSynth(texts, { replacePct = 8, seed = 1 } = {}) {
  const docWords = texts.map((t) => t.split(' '));
  const pool = docWords.flat(); // frequency-weighted token stream of the whole sample
  const out = [];
  return (r) => {
    const h = mix((r + 1) * 0x9e3779b1 + seed);
    const d = h % texts.length;
    const words = docWords[d];
    out.length = words.length;
    for (let j = 0; j < words.length; j++) {
      const x = mix(h ^ Math.imul(j + 1, 0x27d4eb2f));
      out[j] = x % 100 < replacePct ? pool[(x >>> 7) % pool.length] : words[j];
    }
    return { text: out.join(' '), d, h, h2: mix(h ^ 0x5bd1e995) };
  };
}

/** Loads the `text` and `url` columns of the FineWeb sample with hyparquet (lighter than DuckDB). */
export async function loadSampleHyparquet() {
  const { asyncBufferFromFile, parquetReadObjects } = await import('hyparquet');
  const file = await asyncBufferFromFile(SAMPLE);
  return parquetReadObjects({ file, columns: ['text', 'url'] });
}

const CONSTRAINT_TYPES = ['length', 'format', 'keyword', 'style', 'language', 'tone'];
const CONSTRAINT_TEXTS = [
  'Answer in at most 120 words.',
  'Use a numbered list with exactly five items.',
  'Mention the word "sustainability" at least twice.',
  'Write in the style of a formal business letter.',
  'Respond in English only and avoid technical jargon.',
  'Keep a friendly, encouraging tone throughout.',
  'Do not use any commas in the response.',
  'End the answer with a question to the reader.',
];

/** 0-4 AIR-style constraints for row r: list<struct<type, text, iteration:int32>> */
export function constraintsFor(h) {
  const n = h % 5;
  const out = [];
  for (let k = 0; k < n; k++) {
    const x = mix(h + k * 0x9e3779b1);
    out.push({ type: CONSTRAINT_TYPES[x % CONSTRAINT_TYPES.length], text: CONSTRAINT_TEXTS[(x >>> 8) % CONSTRAINT_TEXTS.length], iteration: k + 1 });
  }
  return out;
}
