import type { Bitmap } from './bitmap.js';
import type { ExternalSorter, SortedCursor } from './external-sort.js';

export interface CandidateStats {
  /** (later, earlier) pairs written, over all bands (a pair sharing k bands is written k times). */
  pairs: number;
  /** Buckets with more than maxBucket live documents, and their members over all bands. */
  bigBuckets: number;
  bigMembers: number;
}

/**
 * Turns one band's (band key, ordinal) records, sorted by key and then ordinal, into what the decider needs to
 * find each document's candidates: the earlier live documents sharing this band key with it. Documents already
 * dropped (duplicate id or exact duplicate) are skipped: a single process never indexes them.
 *
 * A bucket of m <= maxBucket live documents writes its m(m-1)/2 pairs (later, earlier) to `pairs`. A bigger
 * one would cost pairs quadratic in m (thousands of near-copies of one page), so it gets a bucket number
 * instead and writes (member, bucket) to `members`; the decider then keeps, per big bucket, the list of its
 * members it has kept so far, which is exactly the candidate set that bucket contributes. So at most
 * bands * n * (maxBucket - 1) / 2 pairs on disk, and in memory one ordinal per (big bucket, kept member).
 */
export function emitCandidates(
  band: SortedCursor,
  dropped: Bitmap,
  maxBucket: number,
  pairs: ExternalSorter,
  members: ExternalSorter,
  stats: CandidateStats,
): void {
  const group = new Uint32Array(maxBucket + 1);
  let size = 0;
  let key = -1;
  let big = -1;

  const flush = (): void => {
    if (big < 0 && size >= 2) {
      for (let j = 1; j < size; j++) for (let i = 0; i < j; i++) pairs.push(group[j]!, group[i]!);
      stats.pairs += (size * (size - 1)) / 2;
    }
    size = 0;
    big = -1;
  };

  while (band.next()) {
    const records = band.records;
    const at = band.at;
    const k = records[at]!;
    const ordinal = records[at + 1]!;
    if (k !== key) {
      flush();
      key = k;
    }
    if (dropped.has(ordinal)) continue;
    if (big >= 0) {
      members.push(ordinal, big);
      stats.bigMembers++;
      continue;
    }
    group[size++] = ordinal;
    if (size > maxBucket) {
      big = stats.bigBuckets++;
      for (let i = 0; i < size; i++) members.push(group[i]!, big);
      stats.bigMembers += size;
    }
  }
  flush();
}
