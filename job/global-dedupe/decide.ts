import { mostSimilar, sketchSimilarity } from '../../operators/dedupe/lsh.js';
import type { Bitmap } from './bitmap.js';
import type { SortedCursor } from './external-sort.js';
import type { KeyFileSet } from './key-file.js';

export interface NearStats {
  /** Documents that had at least one kept candidate, and sketch comparisons made. */
  queried: number;
  comparisons: number;
  /** Kept members of big buckets held in memory at the end (each an ordinal in a list). */
  bigKept: number;
  /** Largest kept list of one big bucket. */
  bigKeptMax: number;
}

/**
 * near_dedupe's greedy rule, replayed in ordinal order: document j's candidates are the earlier documents that
 * share a band key with it and were kept (never the dropped ones: the index holds kept documents only); the
 * most similar by 8-bit sketch (lsh.ts sketchSimilarity, the index's own estimate) wins, the earliest on
 * ties, and j is dropped as its duplicate when that similarity reaches `threshold`, else kept.
 *
 * `pairs` (later, earlier) and `members` (ordinal, big bucket) are sorted by their first word, so every
 * document's candidates arrive together and after every earlier document was decided. A document in neither
 * has no candidate and stays kept without being looked at. `dropped` holds the id and exact drops on entry and
 * gains the near ones.
 */
export function decideNear(
  keys: KeyFileSet,
  pairs: SortedCursor,
  members: SortedCursor,
  bigBuckets: number,
  dropped: Bitmap,
  threshold: number,
  onDrop: (ordinal: number, duplicateOf: number) => void,
): NearStats {
  const stats: NearStats = { queried: 0, comparisons: 0, bigKept: 0, bigKeptMax: 0 };
  const numPerm = keys.numPerm;
  const kept: Array<number[] | undefined> = new Array<number[] | undefined>(bigBuckets);
  const sketch = new Uint8Array(numPerm);
  const candidates: number[] = [];
  const buckets: number[] = [];
  let hasPair = pairs.next();
  let hasMember = members.next();

  while (hasPair || hasMember) {
    const j = Math.min(
      hasPair ? pairs.records[pairs.at]! : Infinity,
      hasMember ? members.records[members.at]! : Infinity,
    );
    candidates.length = 0;
    buckets.length = 0;
    while (hasPair && pairs.records[pairs.at] === j) {
      const earlier = pairs.records[pairs.at + 1]!;
      if (!dropped.has(earlier)) candidates.push(earlier);
      hasPair = pairs.next();
    }
    while (hasMember && members.records[members.at] === j) {
      const bucket = members.records[members.at + 1]!;
      buckets.push(bucket);
      for (const earlier of kept[bucket] ?? []) candidates.push(earlier);
      hasMember = members.next();
    }
    const best =
      candidates.length === 0 ? -1 : mostSimilarCandidate(keys, j, candidates, sketch, threshold, stats);
    if (best >= 0) {
      dropped.set(j);
      onDrop(j, best);
      continue;
    }
    for (const bucket of buckets) {
      const list = (kept[bucket] ??= []);
      list.push(j);
      stats.bigKept++;
      if (list.length > stats.bigKeptMax) stats.bigKeptMax = list.length;
    }
  }
  return stats;
}

/**
 * The candidate most similar to `j` by the index's own sketch estimate and rule (lsh.ts mostSimilar: the
 * earliest on ties), or -1 when even that one is below `threshold`.
 */
function mostSimilarCandidate(
  keys: KeyFileSet,
  j: number,
  candidates: number[],
  sketch: Uint8Array,
  threshold: number,
  stats: NearStats,
): number {
  const numPerm = keys.numPerm;
  stats.queried++;
  candidates.sort((a, b) => a - b);
  const own = keys.sketchAt(j);
  sketch.set(own.page.subarray(own.at, own.at + numPerm));
  const distinct = candidates.filter((c, i) => i === 0 || c !== candidates[i - 1]);
  const similarityOf = (c: number): number => {
    const { page, at } = keys.sketchAt(c);
    let equal = 0;
    for (let i = 0; i < numPerm; i++) if (page[at + i] === sketch[i]) equal++;
    stats.comparisons++;
    return sketchSimilarity(equal, numPerm);
  };
  return mostSimilar(distinct, similarityOf, threshold)?.ordinal ?? -1;
}
