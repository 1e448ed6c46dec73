import { describe, expect, it } from 'vitest';
import { cutUnits, unitName } from '../job/queue/slices.js';
import type { Plan, PlannedShard } from '../schemas/plan.js';

const MB = 1024 * 1024;

function planOf(shards: Array<{ label: string; size: number; rows: number }>): Plan {
  const planned: PlannedShard[] = shards.map((s, index) => ({
    ...s,
    index,
    path: `/data/${s.label}`,
    mtimeMs: 0,
    footerHash: 'x',
    rank: 0,
  }));
  return {
    version: 1,
    createdAt: '2026-12-05T00:00:00.000Z',
    worldSize: 1,
    fingerprint: '0123456789abcdef',
    config: {},
    shards: planned,
    ranks: [{ rank: 0, shards: shards.map((s) => s.label), bytes: 0, rows: 0 }],
    totals: { shards: shards.length, bytes: 0, rows: 0 },
  };
}

describe('queue units', () => {
  it('keeps small shards whole and cuts a big one into runs of row groups under the size, in row order', () => {
    const plan = planOf([
      { label: 'a.parquet', size: 10 * MB, rows: 100 },
      { label: 'big.parquet', size: 70 * MB, rows: 700 },
      { label: 'c.parquet', size: 5 * MB, rows: 50 },
    ]);
    const groups = [12, 12, 12, 30, 2, 2].map((mb, i) => ({ rows: i === 5 ? 200 : 100, bytes: mb * MB }));
    const units = cutUnits(plan, new Map([[1, groups]]), 32 * MB);
    expect(units.map((u) => [u.unit, u.shard, u.start, u.end, u.slice])).toEqual([
      [0, 0, 0, 100, false],
      [1, 1, 0, 200, true], // 12 + 12; a third would pass 32 MB
      [2, 1, 200, 300, true], // 12; 30 more would pass it
      [3, 1, 300, 500, true], // 30 + 2 = 32 MB: at the size is under it
      [4, 1, 500, 700, true], // 2 more would pass it
      [5, 2, 0, 50, false],
    ]);
    expect(unitName(units[2]!)).toBe('big.parquet rows 200-300');
    expect(unitName(units[0]!)).toBe('a.parquet');
  });

  it('a big shard of one row group, or whose row groups fit together, stays one whole unit', () => {
    const plan = planOf([{ label: 'one.parquet', size: 90 * MB, rows: 10 }]);
    expect(cutUnits(plan, new Map([[0, [{ rows: 10, bytes: 90 * MB }]]]), 32 * MB)).toEqual([
      { unit: 0, shard: 0, label: 'one.parquet', start: 0, end: 10, slice: false },
    ]);
    const fits = [
      { rows: 5, bytes: 10 * MB },
      { rows: 5, bytes: 10 * MB },
    ];
    expect(cutUnits(plan, new Map([[0, fits]]), 32 * MB)[0]!.slice).toBe(false);
  });
});
