import { fmix32 } from '../../pipeline/hash.js';

export interface LshOptions {
  readonly bands: number;
  readonly rows: number;
}

/**
 * 16 bands of 8 rows over 128 permutations. A pair with Jaccard J becomes a candidate with probability
 * 1-(1-J^8)^16: 0.95 at J = 0.8, 0.99 at 0.85, 0.61 at 0.7, 0.06 at 0.5. Of the layouts of 128 (b x r:
 * 32x4, 16x8, 8x16), 16x8 puts the S-curve's steep part (its midpoint (1/b)^(1/r) = 0.71) just below a 0.8
 * threshold: high recall at the threshold, few candidates to verify from unrelated pairs. 32x4 (midpoint
 * 0.42) also makes 87% of pairs at J = 0.5 candidates; 8x16 (midpoint 0.88) finds only 20% of pairs at 0.8.
 */
export const DEFAULT_LSH: LshOptions = { bands: 16, rows: 8 };

/** Each band's table starts with 2^14 slots and doubles when more than MAX_LOAD of them are used. */
const INITIAL_SLOTS = 1 << 14;
const MAX_LOAD = 0.8;
/** Documents per page of sketches. */
const PAGE_BITS = 16;
const PAGE_DOCS = 1 << PAGE_BITS;
/** Chance that two 8-bit sketch values agree when their minima differ (b-bit MinHash, b = 8). */
const CHANCE = 1 / 256;

/**
 * Estimated Jaccard similarity from the number of equal 8-bit sketch values out of `numPerm`, corrected for
 * values that agree by chance. Exported so a decider outside the index (the global dedupe) computes the very
 * same float.
 */
export function sketchSimilarity(equal: number, numPerm: number): number {
  return Math.max(0, (equal / numPerm - CHANCE) / (1 - CHANCE));
}

/**
 * The ordinal most similar by `similarityOf` among `ordinals` (given in ascending order, so the earliest wins
 * ties) if that similarity is at least `threshold`. The one rule near dedupe decides by, in one process
 * (LshIndex) and across ranks (job/global-dedupe/decide.ts): they must stay the same.
 */
export function mostSimilar(
  ordinals: Iterable<number>,
  similarityOf: (ordinal: number) => number,
  threshold: number,
): { readonly ordinal: number; readonly similarity: number } | undefined {
  let best = -1;
  let bestSimilarity = -1;
  for (const ordinal of ordinals) {
    const similarity = similarityOf(ordinal);
    if (similarity > bestSimilarity) {
      best = ordinal;
      bestSimilarity = similarity;
    }
  }
  if (best < 0 || bestSimilarity < threshold) return undefined;
  return { ordinal: best, similarity: bestSimilarity };
}

/** The 8-bit sketch value of a signature value (its low 8 bits). */
export function sketchValue(value: number): number {
  return value & 0xff;
}

/**
 * murmur3-style hash of each band's `rows` values of `signature` into `out[band]`: the 32-bit band keys the
 * index matches candidates on.
 */
export function bandKeysInto(signature: Uint32Array, bands: number, rows: number, out: Uint32Array): void {
  for (let band = 0; band < bands; band++) {
    let h = 0x9747b28c ^ band;
    const end = (band + 1) * rows;
    for (let i = band * rows; i < end; i++) {
      let k = Math.imul(signature[i]!, 0xcc9e2d51);
      k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
      h ^= k;
      h = (Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64) | 0;
    }
    out[band] = fmix32(h ^ (rows * 4));
  }
}

/**
 * Locality-sensitive hashing over MinHash signatures, sized for tens of millions of documents. Documents
 * agreeing on all rows of any one band become candidates; candidates are then verified against a threshold.
 *
 * Memory per indexed document, all in typed arrays:
 * - per band, a slot in an open-addressing multimap of (32-bit band key, ordinal + 1): 8 bytes per slot,
 *   load 0.4-0.8, so 10-20 bytes per band (160-320 at 16 bands);
 * - a b-bit sketch for verification (Li & König, b-bit minwise hashing): the low 8 bits of each of the
 *   numPerm minima, numPerm bytes (128) instead of the 4*numPerm (512) of the full signature. Two different
 *   minima agree on 8 bits with chance 1/256, which `similarity` corrects for; the estimate's spread is
 *   that of plain MinHash within ~1%.
 * 32-bit band keys collide by chance (a query meets ~bands*n/2^32 spurious candidates: 0.04 at 10M
 * documents); verification removes them, so they cost time, never a wrong drop.
 *
 * Documents are identified by ordinal: 0, 1, 2, ... in order of `add`.
 */
export class LshIndex {
  readonly bands: number;
  readonly rows: number;
  readonly numPerm: number;
  private readonly tables: Uint32Array[];
  private mask: number;
  private readonly sketches: Uint8Array[] = [];
  private count = 0;
  private readonly keys: Uint32Array;
  private readonly sketch: Uint8Array;

  constructor(numPerm: number, options: Partial<LshOptions> = {}) {
    const { bands, rows } = { ...DEFAULT_LSH, ...options };
    if (!(Number.isInteger(bands) && Number.isInteger(rows) && bands >= 1 && rows >= 1)) {
      throw new RangeError(`bands and rows must be positive integers: ${bands}, ${rows}`);
    }
    if (bands * rows !== numPerm) {
      throw new RangeError(`bands * rows must equal numPerm: ${bands} * ${rows} != ${numPerm}`);
    }
    this.bands = bands;
    this.rows = rows;
    this.numPerm = numPerm;
    this.tables = Array.from({ length: bands }, () => new Uint32Array(INITIAL_SLOTS * 2));
    this.mask = INITIAL_SLOTS - 1;
    this.keys = new Uint32Array(bands);
    this.sketch = new Uint8Array(numPerm);
  }

  get size(): number {
    return this.count;
  }

  /** Bytes allocated: band tables and sketches. */
  get bytes(): number {
    return this.bands * (this.mask + 1) * 8 + this.sketches.length * PAGE_DOCS * this.numPerm;
  }

  /** Indexes `signature` and returns its ordinal. */
  add(signature: Uint32Array): number {
    this.check(signature);
    if (this.count + 1 > (this.mask + 1) * MAX_LOAD) this.grow();
    const ordinal = this.count++;
    this.bandKeys(signature);
    for (let band = 0; band < this.bands; band++) {
      const table = this.tables[band]!;
      const key = this.keys[band]!;
      let slot = key & this.mask;
      while (table[slot * 2 + 1] !== 0) slot = (slot + 1) & this.mask;
      table[slot * 2] = key;
      table[slot * 2 + 1] = ordinal + 1;
    }
    const page = ordinal >>> PAGE_BITS;
    if (page === this.sketches.length) this.sketches.push(new Uint8Array(PAGE_DOCS * this.numPerm));
    const at = (ordinal & (PAGE_DOCS - 1)) * this.numPerm;
    const sketches = this.sketches[page]!;
    for (let i = 0; i < this.numPerm; i++) sketches[at + i] = sketchValue(signature[i]!);
    return ordinal;
  }

  /** Ordinals sharing at least one band with `signature`, each once, ascending. */
  candidates(signature: Uint32Array): number[] {
    this.check(signature);
    this.bandKeys(signature);
    const found: number[] = [];
    for (let band = 0; band < this.bands; band++) {
      const table = this.tables[band]!;
      const key = this.keys[band]!;
      let slot = key & this.mask;
      for (;;) {
        const stored = table[slot * 2 + 1]!;
        if (stored === 0) break;
        if (table[slot * 2] === key && !found.includes(stored - 1)) found.push(stored - 1);
        slot = (slot + 1) & this.mask;
      }
    }
    return found.sort((a, b) => a - b);
  }

  /** Estimated Jaccard similarity of `signature` and indexed document `ordinal`, from its 8-bit sketch. */
  similarity(signature: Uint32Array, ordinal: number): number {
    this.check(signature);
    const sketches = this.sketches[ordinal >>> PAGE_BITS]!;
    const at = (ordinal & (PAGE_DOCS - 1)) * this.numPerm;
    let equal = 0;
    for (let i = 0; i < this.numPerm; i++) if (sketches[at + i] === sketchValue(signature[i]!)) equal++;
    return sketchSimilarity(equal, this.numPerm);
  }

  /**
   * The candidate most similar to `signature` (the earliest on ties) if its estimated similarity is at least
   * `threshold`; a function of the index's contents only, so the same inputs in the same order give the same
   * answers.
   */
  findDuplicate(
    signature: Uint32Array,
    threshold: number,
  ): { readonly ordinal: number; readonly similarity: number } | undefined {
    return mostSimilar(
      this.candidates(signature),
      (ordinal) => this.similarity(signature, ordinal),
      threshold,
    );
  }

  /** Each band's key into `this.keys`. */
  private bandKeys(signature: Uint32Array): void {
    bandKeysInto(signature, this.bands, this.rows, this.keys);
  }

  /** Doubles every band's table, one band at a time (peak: one old and one new table of one band). */
  private grow(): void {
    const size = (this.mask + 1) * 2;
    const mask = size - 1;
    for (let band = 0; band < this.bands; band++) {
      const old = this.tables[band]!;
      const table = new Uint32Array(size * 2);
      for (let at = 0; at < old.length; at += 2) {
        if (old[at + 1] === 0) continue;
        let slot = old[at]! & mask;
        while (table[slot * 2 + 1] !== 0) slot = (slot + 1) & mask;
        table[slot * 2] = old[at]!;
        table[slot * 2 + 1] = old[at + 1]!;
      }
      this.tables[band] = table;
    }
    this.mask = mask;
  }

  private check(signature: Uint32Array): void {
    if (signature.length !== this.numPerm) {
      throw new RangeError(`signature has ${signature.length} values, the index expects ${this.numPerm}`);
    }
  }
}
