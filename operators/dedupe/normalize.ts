/**
 * Normalisation and hashing for exact deduplication. Two texts are exact duplicates when their normalised
 * forms are equal, so trivial re-formatting (case, spacing, punctuation, compatibility characters) of the same
 * page does not survive dedupe.
 *
 * normalizeText, in this order:
 * 1. Unicode NFKC (full-width letters, ligatures and compatibility forms become their plain equivalents);
 * 2. lower case (String#toLowerCase, locale-independent);
 * 3. delete every punctuation character (\p{P}) and invisible format character (\p{Cf}: soft hyphen,
 *    zero-width space, BOM), so "e-mail" and "email" match; symbols (\p{S}: $, +, emoji) are kept;
 * 4. replace every run of separators and control characters (\p{Z}, \p{Cc}: spaces, tabs, newlines, NBSP)
 *    with one space, and trim.
 * Steps 2-4 are expressible in DuckDB SQL (lower, regexp_replace with the same classes); NFKC is not.
 */

import { fmix32 } from '../../pipeline/hash.js';

const DELETED = /^[\p{P}\p{Cf}]$/u;
const SEPARATOR = /^[\p{Z}\p{Cc}]$/u;
const KEEP = 0;
const DELETE = 1;
const SEPARATE = 2;

/** Steps 3-4's class of every BMP code unit (surrogates are classified by code point as met). */
let bmpClasses: Uint8Array | undefined;
const astralClasses = new Map<number, number>();

function classOf(char: string): number {
  return DELETED.test(char) ? DELETE : SEPARATOR.test(char) ? SEPARATE : KEEP;
}

function classes(): Uint8Array {
  if (bmpClasses === undefined) {
    bmpClasses = new Uint8Array(65536);
    for (let c = 0; c < 65536; c++) {
      if (c < 0xd800 || c > 0xdfff) bmpClasses[c] = classOf(String.fromCharCode(c));
    }
  }
  return bmpClasses;
}

let scratch = new Uint16Array(1 << 16);

/**
 * Steps 3-4 run as one pass over the code units with a table of their classes, ~4x faster than the two
 * Unicode-property regex replacements they are equivalent to (test/dedupe.test.ts checks that on real text):
 * a deleted character does not end a run of separators, so runs split only by deleted characters become one
 * space, as the two replacements in sequence would make them.
 */
export function normalizeText(text: string): string {
  const folded = text.normalize('NFKC').toLowerCase();
  const table = classes();
  if (scratch.length < folded.length) scratch = new Uint16Array(folded.length * 2);
  const out = scratch;
  let n = 0;
  let pendingSpace = false;
  for (let i = 0; i < folded.length; i++) {
    const c = folded.charCodeAt(i);
    let cls: number;
    let width = 1;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < folded.length) {
      const low = folded.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        const point = ((c - 0xd800) << 10) + (low - 0xdc00) + 0x10000;
        cls = astralClasses.get(point) ?? -1;
        if (cls < 0) {
          cls = classOf(String.fromCodePoint(point));
          astralClasses.set(point, cls);
        }
        width = 2;
      } else {
        cls = KEEP; // a lone surrogate is kept, as the regexes keep it
      }
    } else {
      cls = c >= 0xd800 && c <= 0xdfff ? KEEP : table[c]!;
    }
    if (cls === KEEP) {
      if (pendingSpace && n > 0) out[n++] = 32;
      pendingSpace = false;
      out[n++] = c;
      if (width === 2) out[n++] = folded.charCodeAt(++i);
    } else {
      if (cls === SEPARATE) pendingSpace = true;
      i += width - 1;
    }
  }
  return fromCodeUnits(out, n);
}

/** The string of out[0, n): in chunks, as fromCharCode's arguments are bounded (lone surrogates survive). */
function fromCodeUnits(out: Uint16Array, n: number): string {
  let text = '';
  for (let start = 0; start < n; start += 8192) {
    text += String.fromCharCode.apply(
      null,
      out.subarray(start, Math.min(n, start + 8192)) as unknown as number[],
    );
  }
  return text;
}

/**
 * A 64-bit hash of a string's UTF-16 code units as two 32-bit halves written to `out[0]`, `out[1]`: two
 * independent 32-bit hashes (FNV-1a and a murmur-style multiply-rotate) each finished with an avalanche mix.
 * Treated as 64 random bits, n documents give ~n^2 / 2^65 false matches: ~3e-6 at 10^7 documents, ~3% at
 * 10^9; 32 bits alone would collide after ~77k documents.
 */
export function hash64Into(text: string, out: Uint32Array): void {
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 = (h2 << 13) | (h2 >>> 19);
  }
  out[0] = fmix32(h1 ^ text.length);
  out[1] = fmix32(h2 ^ Math.imul(text.length, 0x27d4eb2d));
}

const halves = new Uint32Array(2);

/** hash64Into as 16 hex digits. */
export function hash64(text: string): string {
  hash64Into(text, halves);
  return hex8(halves[0]!) + hex8(halves[1]!);
}

/** The exact-dedupe key of a document: the 64-bit hash of its normalised text. */
export function exactKey(text: string): string {
  return hash64(normalizeText(text));
}

/** The exact-dedupe key as two 32-bit halves (what the exact-dedupe operator stores). */
export function exactKeyInto(text: string, out: Uint32Array): void {
  hash64Into(normalizeText(text), out);
}

/**
 * Remembers the exact keys seen so far in a Set of strings (~100 bytes a key); `isDuplicate` is true from the
 * second occurrence of a text on. For small jobs and tests; the exactDedupe operator uses a compact table.
 */
export class ExactDeduper {
  private readonly seen = new Set<string>();

  isDuplicate(text: string): boolean {
    const key = exactKey(text);
    if (this.seen.has(key)) return true;
    this.seen.add(key);
    return false;
  }

  get size(): number {
    return this.seen.size;
  }
}

function hex8(h: number): string {
  return h.toString(16).padStart(8, '0');
}
