import { normalizeText } from '../../operators/dedupe/normalize.js';

/**
 * The true Jaccard similarity of two texts' word shingle sets, computed on strings (not hashes): the reference
 * the MinHash estimates are checked against (tests and bench/dedupe.ts). Shingled as minhash.ts does: a text
 * with fewer than `size` words is one shingle.
 */
export function trueJaccard(a: string, b: string, size = 5): number {
  const shingles = (text: string): Set<string> => {
    const words = normalizeText(text).split(' ');
    const out = new Set<string>();
    for (let i = 0; i + size <= Math.max(words.length, size); i++)
      out.add(words.slice(i, i + size).join(' '));
    return out;
  };
  const sa = shingles(a);
  const sb = shingles(b);
  let shared = 0;
  for (const s of sa) if (sb.has(s)) shared++;
  return shared / (sa.size + sb.size - shared);
}
