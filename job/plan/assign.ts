/** What the assignment needs of a shard: its name (for ties and order) and its size in bytes. */
export interface SizedShard {
  readonly label: string;
  readonly size: number;
}

export interface Assignment {
  /** The rank of each shard, by index in the input list. */
  readonly rankOf: readonly number[];
  /** Indexes into the input list, per rank, in the input's (label) order. */
  readonly shardsOf: readonly (readonly number[])[];
  /** Bytes per rank. */
  readonly bytes: readonly number[];
}

const byLabel = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Spreads shards over `worldSize` ranks balanced by bytes: longest-processing-time greedy (largest shard first,
 * ties by label; each to the rank with the fewest bytes so far, ties to the lowest rank). It depends only on
 * labels and sizes, so the same listing always gives the same plan, and its largest rank is within 4/3 of the
 * best possible. Bytes stand for work: rows and tokens follow them far more closely than shard counts do.
 */
export function assignByBytes(shards: readonly SizedShard[], worldSize: number): Assignment {
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) {
    throw new RangeError(`world size must be a whole number ≥ 1, not ${worldSize}`);
  }
  const order = shards
    .map((_, i) => i)
    .sort((a, b) => shards[b]!.size - shards[a]!.size || byLabel(shards[a]!.label, shards[b]!.label));
  const bytes = new Array<number>(worldSize).fill(0);
  const rankOf = new Array<number>(shards.length).fill(0);
  const heap = new RankHeap(worldSize);
  for (const i of order) {
    const rank = heap.popLightest(bytes);
    rankOf[i] = rank;
    bytes[rank]! += shards[i]!.size;
    heap.push(rank, bytes);
  }
  const shardsOf: number[][] = Array.from({ length: worldSize }, () => []);
  // Within a rank, shards run in the listing's order, as a single-process run would read them.
  for (let i = 0; i < shards.length; i++) shardsOf[rankOf[i]!]!.push(i);
  return { rankOf, shardsOf, bytes };
}

/** A binary min-heap of ranks keyed by (bytes, rank), so 1,000s of shards over 1,000s of ranks stay cheap. */
class RankHeap {
  private readonly items: number[];

  constructor(size: number) {
    // All ranks start at 0 bytes: ascending rank order is already a valid heap.
    this.items = Array.from({ length: size }, (_, r) => r);
  }

  popLightest(bytes: readonly number[]): number {
    const top = this.items[0]!;
    const last = this.items.pop()!;
    if (this.items.length > 0) {
      this.items[0] = last;
      this.down(0, bytes);
    }
    return top;
  }

  push(rank: number, bytes: readonly number[]): void {
    this.items.push(rank);
    let i = this.items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(this.items[i]!, this.items[parent]!, bytes)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number, bytes: readonly number[]): void {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let min = i;
      if (l < this.items.length && this.less(this.items[l]!, this.items[min]!, bytes)) min = l;
      if (r < this.items.length && this.less(this.items[r]!, this.items[min]!, bytes)) min = r;
      if (min === i) return;
      this.swap(i, min);
      i = min;
    }
  }

  private less(a: number, b: number, bytes: readonly number[]): boolean {
    return bytes[a]! < bytes[b]! || (bytes[a] === bytes[b] && a < b);
  }

  private swap(i: number, j: number): void {
    [this.items[i], this.items[j]] = [this.items[j]!, this.items[i]!];
  }
}

/** Largest rank's bytes over the mean: 1 is perfect balance. */
export function imbalance(bytes: readonly number[]): number {
  const total = bytes.reduce((a, b) => a + b, 0);
  if (total === 0) return 1;
  return Math.max(...bytes) / (total / bytes.length);
}
