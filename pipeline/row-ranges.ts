/**
 * Sets of row numbers as sorted, disjoint, half-open ranges [start, end): compact for the mostly
 * consecutive rows a run settles, and cheap to test in row order while a shard streams.
 */
export type RowRanges = ReadonlyArray<readonly [number, number]>;

/** Merges rows (any order, duplicates allowed) and ranges into sorted, disjoint ranges. */
export function toRanges(rows: Iterable<number>, ranges: RowRanges = []): Array<[number, number]> {
  const all: Array<[number, number]> = ranges.map(([a, b]) => [a, b]);
  for (const row of rows) all.push([row, row + 1]);
  all.sort((x, y) => x[0] - y[0]);
  const merged: Array<[number, number]> = [];
  for (const [a, b] of all) {
    const last = merged[merged.length - 1];
    if (last !== undefined && a <= last[1]) last[1] = Math.max(last[1], b);
    else merged.push([a, b]);
  }
  return merged;
}

export function countRows(ranges: RowRanges): number {
  let n = 0;
  for (const [a, b] of ranges) n += b - a;
  return n;
}

/** Whether every row of [start, end) is in `ranges` (disjoint and merged, as toRanges makes them). */
export function coversAll(ranges: RowRanges, start: number, end: number): boolean {
  return end <= start || ranges.some(([a, b]) => a <= start && end <= b);
}

/** Tests rows in ascending order against ranges in O(1) amortised; a smaller row than the last is an error. */
export class RangeCursor {
  private index = 0;
  private last = -1;

  constructor(private readonly ranges: RowRanges) {}

  has(row: number): boolean {
    if (row < this.last)
      throw new RangeError(`rows must be tested in ascending order (${row} after ${this.last})`);
    this.last = row;
    while (this.index < this.ranges.length && this.ranges[this.index]![1] <= row) this.index++;
    const range = this.ranges[this.index];
    return range !== undefined && range[0] <= row;
  }
}

/** The rows of `a` that are not in `b`. */
export function subtractRanges(a: RowRanges, b: RowRanges): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let j = 0;
  for (const [start, end] of a) {
    let from = start;
    while (j < b.length && b[j]![1] <= from) j++;
    let k = j;
    while (k < b.length && b[k]![0] < end) {
      const [bs, be] = b[k]!;
      if (bs > from) out.push([from, bs]);
      from = Math.max(from, be);
      k++;
    }
    if (from < end) out.push([from, end]);
  }
  return out;
}
