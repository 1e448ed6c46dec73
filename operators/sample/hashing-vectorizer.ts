import { fmix32 } from '../../pipeline/hash.js';
import { astralClass, CHAR_CLASS, LOWER, SURROGATE, WORD, surrogatePairAt } from './char-class.js';

export interface HashingVectorizerOptions {
  /** Vector length. Default 256 (the reference's MiniLM embedding has 384). */
  readonly dimensions: number;
  /** Also hash each pair of adjacent words. Default false. */
  readonly bigrams: boolean;
  /** Seeds the feature hashing; vectors are comparable only under one seed. Default 0. */
  readonly seed: number;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
/** Mixed into bigram hashes so a bigram never shares its hash with a unigram by construction. */
const BIGRAM_SALT = 0x5bd1e995;

/**
 * Text → Float32Array of `dimensions`: words (maximal runs of letters, marks and digits, lower-cased through a
 * table) are hashed with FNV-1a, counted per document, weighted by sublinear tf (1 + ln tf), added to bucket
 * fmix32(hash ^ seed) mod dimensions with a sign from another bit of the hash (so collisions cancel in
 * expectation instead of piling up), and L2-normalised. A text without words gives the zero vector.
 *
 * Deterministic: the same text, options and seed give the same bits on every machine (terms are added in order
 * of first occurrence). Term counts live in a reused open-addressing table, so a text costs no allocation.
 */
export class HashingVectorizer {
  readonly dimensions: number;
  readonly bigrams: boolean;
  readonly seed: number;
  private readonly seedMix: number;
  // Term table for one text: keys, counts, and the generation that marks a slot as used by the current text.
  private keys = new Uint32Array(4096);
  private counts = new Uint32Array(4096);
  private stamps = new Uint32Array(4096);
  private slots = new Uint32Array(2048);
  private used = 0;
  private generation = 0;
  private readonly accumulator: Float64Array;

  constructor(options: HashingVectorizerOptions) {
    if (!Number.isInteger(options.dimensions) || options.dimensions < 1) {
      throw new RangeError(`dimensions must be a positive integer, got ${options.dimensions}`);
    }
    this.dimensions = options.dimensions;
    this.bigrams = options.bigrams;
    this.seed = options.seed;
    this.seedMix = fmix32((options.seed ^ 0x27d4eb2f) >>> 0);
    this.accumulator = new Float64Array(options.dimensions);
  }

  vectorize(text: string): Float32Array {
    const out = new Float32Array(this.dimensions);
    this.vectorizeInto(text, out, 0);
    return out;
  }

  /** Writes the vector of `text` into out[offset, offset + dimensions). */
  vectorizeInto(text: string, out: Float32Array, offset: number): void {
    this.countTerms(text);
    const acc = this.accumulator;
    acc.fill(0);
    const d = this.dimensions;
    for (let s = 0; s < this.used; s++) {
      const slot = this.slots[s]!;
      const h = fmix32((this.keys[slot]! ^ this.seedMix) >>> 0);
      const weight = 1 + Math.log(this.counts[slot]!);
      // The bucket uses h mod d, the sign an independent bit of a second mix.
      const bucket = h % d;
      acc[bucket] = acc[bucket]! + ((fmix32(h ^ 0x85ebca6b) & 1) === 0 ? weight : -weight);
    }
    let norm = 0;
    for (let i = 0; i < d; i++) norm += acc[i]! * acc[i]!;
    const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let i = 0; i < d; i++) out[offset + i] = acc[i]! * scale;
  }

  /** Fills the term table with the text's word (and bigram) hashes and their counts. */
  private countTerms(text: string): void {
    this.generation = (this.generation + 1) >>> 0;
    if (this.generation === 0) {
      this.stamps.fill(0);
      this.generation = 1;
    }
    this.used = 0;
    let h = FNV_OFFSET;
    let inWord = false;
    let previous = 0;
    let havePrevious = false;
    const n = text.length;
    for (let i = 0; i <= n; i++) {
      let isWord = false;
      let unit = 0;
      if (i < n) {
        unit = text.charCodeAt(i);
        let cls = CHAR_CLASS[unit]!;
        if (cls === SURROGATE) {
          const pair = surrogatePairAt(text, i);
          cls = pair < 0 ? 0 : astralClass(pair);
          if (cls === WORD) {
            // Hash both halves (no case mapping beyond the BMP).
            h = Math.imul(h ^ unit, FNV_PRIME);
            unit = text.charCodeAt(++i);
          }
        } else {
          unit = LOWER[unit]!;
        }
        isWord = cls === WORD;
      }
      if (isWord) {
        h = Math.imul(h ^ unit, FNV_PRIME);
        inWord = true;
      } else if (inWord) {
        const word = h >>> 0;
        this.add(word);
        if (this.bigrams && havePrevious) {
          this.add(fmix32((Math.imul(previous, FNV_PRIME) ^ word ^ BIGRAM_SALT) >>> 0));
        }
        previous = word;
        havePrevious = true;
        h = FNV_OFFSET;
        inWord = false;
      }
    }
  }

  private add(key: number): void {
    if (this.used * 2 >= this.keys.length) this.growTable();
    const mask = this.keys.length - 1;
    let slot = fmix32(key) & mask;
    for (;;) {
      if (this.stamps[slot] !== this.generation) {
        this.stamps[slot] = this.generation;
        this.keys[slot] = key;
        this.counts[slot] = 1;
        this.slots[this.used++] = slot;
        return;
      }
      if (this.keys[slot] === key) {
        this.counts[slot]! += 1;
        return;
      }
      slot = (slot + 1) & mask;
    }
  }

  /** Doubles the term table, re-inserting the current text's terms in their original order. */
  private growTable(): void {
    const oldKeys = this.keys;
    const oldCounts = this.counts;
    const oldSlots = this.slots.subarray(0, this.used);
    const size = oldKeys.length * 2;
    this.keys = new Uint32Array(size);
    this.counts = new Uint32Array(size);
    this.stamps = new Uint32Array(size);
    const slots = new Uint32Array(size / 2);
    const mask = size - 1;
    this.generation = 1;
    for (let s = 0; s < oldSlots.length; s++) {
      const key = oldKeys[oldSlots[s]!]!;
      let slot = fmix32(key) & mask;
      while (this.stamps[slot] === 1) slot = (slot + 1) & mask;
      this.stamps[slot] = 1;
      this.keys[slot] = key;
      this.counts[slot] = oldCounts[oldSlots[s]!]!;
      slots[s] = slot;
    }
    this.slots = slots;
  }
}
