import { textAt, type PackedTexts } from '../../pipeline/pool/packed-texts.js';
import { fmix32 } from '../../pipeline/hash.js';
import { normalizeText } from './normalize.js';

export interface MinHashOptions {
  /** Words per shingle. */
  readonly shingle: number;
  /** Permutations, i.e. signature length. */
  readonly numPerm: number;
  /** Seed of the permutation coefficients; signatures are comparable only under the same seed. */
  readonly seed: number;
}

export const DEFAULT_MINHASH: MinHashOptions = { shingle: 5, numPerm: 128, seed: 1 };

/** Mersenne prime 2^31 - 1: since 2^31 ≡ 1 (mod P), reducing a 32-bit value is `(v & P) + (v >>> 31)`. */
const P = 0x7fffffff;
/** Signature value of a text with no shingles (above every permuted value, which is < P). */
export const EMPTY = 0xffffffff;

/**
 * (a*x + b) mod P for a = aH*2^16 + aL and x = xH*2^16 + xL (aH, xH < 2^15; aL, xL < 2^16; b < P), exact:
 * a*x = aH*xH*2^32 + (aH*xL + aL*xH)*2^16 + aL*xL, and each partial product is < 2^31 (Math.imul is exact).
 * Folds use 2^31 ≡ 1 (v ≡ (v & P) + (v >>> 31)) and m*2^16 ≡ (m >>> 15) + ((m & 0x7fff) << 16). Every sum stays
 * below 2^32, so `&` and `>>>` see exact values; the bounds are noted per line.
 */
export function mulAddModP(aH: number, aL: number, xH: number, xL: number, b: number): number {
  const mid = Math.imul(aH, xL) + Math.imul(aL, xH); // < 2^32
  const lo = Math.imul(aL, xL) >>> 0; // < 2^32
  const u = (Math.imul(aH, xH) << 1) + ((mid & 0x7fff) << 16); // even, < 2^32: folds to <= P
  const v = (lo & P) + b; // <= 2P - 1: folds to < P
  const w = (u & P) + (u >>> 31) + ((v & P) + (v >>> 31)); // < 2P: folds to <= P
  const z = (w & P) + (w >>> 31) + (mid >>> 15) + (lo >>> 31); // < P + 2^17 + 2
  const h = (z & P) + (z >>> 31);
  return h >= P ? h - P : h;
}

let wordScratch = new Uint32Array(4096);

/**
 * The 32-bit hashes of a text's word shingles: the text is normalised as for exact dedupe, split on spaces,
 * and each window of `size` consecutive words hashed (a text with fewer words is one shingle). Duplicate
 * shingles are kept: MinHash takes minima, so repeats change nothing.
 */
export function shingleHashes(text: string, size: number): Uint32Array {
  const normal = normalizeText(text);
  if (normal.length === 0) return new Uint32Array(0);
  // Word hashes first (FNV-1a over UTF-16 code units), then combine each window of them. A text has at most
  // length/2 + 1 words; the scratch buffer is reused across calls so no per-text allocation.
  if (wordScratch.length < normal.length) wordScratch = new Uint32Array(normal.length * 2);
  const words = wordScratch;
  let count = 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < normal.length; i++) {
    const c = normal.charCodeAt(i);
    if (c === 32) {
      words[count++] = h >>> 0;
      h = 0x811c9dc5;
    } else {
      h = Math.imul(h ^ c, 0x01000193);
    }
  }
  words[count++] = h >>> 0;
  const shingles = Math.max(1, count - size + 1);
  const out = new Uint32Array(shingles);
  for (let s = 0; s < shingles; s++) {
    let x = 0x9e3779b9;
    const end = Math.min(s + size, count);
    for (let w = s; w < end; w++) x = Math.imul(x ^ words[w]!, 0x5bd1e995) ^ (x >>> 15);
    out[s] = fmix32(x);
  }
  return out;
}

/** Deterministic coefficient stream (splitmix32). */
function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    return fmix32(state);
  };
}

/**
 * MinHash with `numPerm` universal hash functions h_i(x) = (a_i * x + b_i) mod P over shingle hashes reduced
 * mod P. The 62-bit product is formed from 16-bit limbs with Math.imul and folded with 2^31 ≡ 1 and
 * 2^32 ≡ 2 (mod P) (see mulAddModP), so the hot loop is integer-only: no BigInt, no float division.
 */
export class MinHasher {
  readonly shingle: number;
  readonly numPerm: number;
  readonly seed: number;
  private readonly aHi: Int32Array;
  private readonly aLo: Int32Array;
  private readonly b: Int32Array;
  private xHi = new Int32Array(1024);
  private xLo = new Int32Array(1024);

  constructor(options: Partial<MinHashOptions> = {}) {
    const { shingle, numPerm, seed } = { ...DEFAULT_MINHASH, ...options };
    if (!Number.isInteger(shingle) || shingle < 1)
      throw new RangeError(`shingle must be >= 1, got ${shingle}`);
    if (!Number.isInteger(numPerm) || numPerm < 1)
      throw new RangeError(`numPerm must be >= 1, got ${numPerm}`);
    this.shingle = shingle;
    this.numPerm = numPerm;
    this.seed = seed;
    this.aHi = new Int32Array(numPerm);
    this.aLo = new Int32Array(numPerm);
    this.b = new Int32Array(numPerm);
    const next = splitmix32(seed);
    for (let i = 0; i < numPerm; i++) {
      const a = 1 + (next() % (P - 1)); // a != 0, else h_i is constant
      this.aHi[i] = a >>> 16;
      this.aLo[i] = a & 0xffff;
      this.b[i] = next() % P;
    }
  }

  /** Writes the signature of `text` into `out` at `offset` (numPerm values). */
  signInto(text: string, out: Uint32Array, offset = 0): void {
    const shingles = shingleHashes(text, this.shingle);
    const n = shingles.length;
    if (this.xHi.length < n) {
      this.xHi = new Int32Array(n * 2);
      this.xLo = new Int32Array(n * 2);
    }
    const xHi = this.xHi;
    const xLo = this.xLo;
    for (let s = 0; s < n; s++) {
      let x = (shingles[s]! & P) + (shingles[s]! >>> 31);
      if (x >= P) x -= P;
      xHi[s] = x >>> 16;
      xLo[s] = x & 0xffff;
    }
    for (let i = 0; i < this.numPerm; i++) {
      const aH = this.aHi[i]!;
      const aL = this.aLo[i]!;
      const b = this.b[i]!;
      let min = EMPTY;
      for (let s = 0; s < n; s++) {
        const h = mulAddModP(aH, aL, xHi[s]!, xLo[s]!, b);
        if (h < min) min = h;
      }
      out[offset + i] = min;
    }
  }

  sign(text: string): Uint32Array {
    const out = new Uint32Array(this.numPerm);
    this.signInto(text, out);
    return out;
  }

  /** Signatures of every packed text, text i at [i*numPerm, (i+1)*numPerm): one buffer to transfer. */
  signPacked(texts: PackedTexts): Uint32Array {
    const n = texts.offsets.length;
    const out = new Uint32Array(n * this.numPerm);
    for (let i = 0; i < n; i++) this.signInto(textAt(texts, i), out, i * this.numPerm);
    return out;
  }
}

/** Signature of text i within a batch from `signPacked` (a view, no copy). */
export function signatureAt(signatures: Uint32Array, numPerm: number, index: number): Uint32Array {
  return signatures.subarray(index * numPerm, (index + 1) * numPerm);
}

/** Estimated Jaccard similarity of the two shingle sets: the share of permutations whose minima agree. */
export function jaccardEstimate(a: Uint32Array, b: Uint32Array): number {
  if (a.length !== b.length) throw new RangeError(`signature lengths differ: ${a.length} vs ${b.length}`);
  let equal = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) equal++;
  return equal / a.length;
}
