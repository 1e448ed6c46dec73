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
const DELETED = /[\p{P}\p{Cf}]+/gu;
const SEPARATORS = /[\p{Z}\p{Cc}]+/gu;

export function normalizeText(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(DELETED, '').replace(SEPARATORS, ' ').trim();
}

/**
 * A 64-bit hash of a string's UTF-16 code units, as 16 hex digits: two independent 32-bit hashes (FNV-1a and
 * a murmur-style multiply-rotate) each finished with an avalanche mix. At 10^9 documents the chance of any
 * false match is ~3%; 32 bits alone would collide after ~77k documents.
 */
export function hash64(text: string): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 = (h2 << 13) | (h2 >>> 19);
  }
  return hex8(fmix32(h1 ^ text.length)) + hex8(fmix32(h2 ^ Math.imul(text.length, 0x27d4eb2d)));
}

/** The exact-dedupe key of a document: the 64-bit hash of its normalised text. */
export function exactKey(text: string): string {
  return hash64(normalizeText(text));
}

/** Remembers the exact keys seen so far; `isDuplicate` is true from the second occurrence of a text on. */
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
