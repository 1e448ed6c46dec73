import type { RowGroupSize } from '../../pipeline/io/parquet-footer.js';
import type { Plan } from '../../schemas/plan.js';
import { z } from 'zod';

const count = z.number().int().nonnegative();

/** A unit of work in the queue: a whole shard of the plan, or a slice of a big one (job/queue/slices.ts). */
export const queueUnitSchema = z.strictObject({
  /** Its number: units/NNNNN, the BullMQ job id. Units are in plan order, slices of a shard in row order. */
  unit: count,
  /** The plan's shard index. */
  shard: count,
  label: z.string(),
  /** File rows [start, end) of the shard (all of them for a whole shard). */
  start: count,
  end: count,
  slice: z.boolean(),
});
export type QueueUnit = z.output<typeof queueUnitSchema>;

/**
 * The units of a plan's queue: each shard whole, except a shard larger than `maxBytes`, which is cut into
 * slices of consecutive row groups of at most `maxBytes` compressed bytes together (at least one row group
 * each). One huge shard would otherwise bound the job's wall time however many workers there are.
 * `layouts` holds the row groups of the shards to cut (by plan index); a shard without one stays whole.
 */
export function cutUnits(
  plan: Plan,
  layouts: ReadonlyMap<number, readonly RowGroupSize[]>,
  maxBytes: number,
): QueueUnit[] {
  const units: QueueUnit[] = [];
  const add = (shard: number, label: string, start: number, end: number, slice: boolean): void => {
    units.push({ unit: units.length, shard, label, start, end, slice });
  };
  for (const shard of plan.shards) {
    const groups = layouts.get(shard.index);
    if (shard.size <= maxBytes || groups === undefined || groups.length <= 1) {
      add(shard.index, shard.label, 0, shard.rows, false);
      continue;
    }
    const ranges: Array<[number, number]> = [];
    let start = 0;
    let rows = 0;
    let bytes = 0;
    for (const [g, group] of groups.entries()) {
      if (g > 0 && bytes + group.bytes > maxBytes) {
        ranges.push([start, start + rows]);
        start += rows;
        rows = 0;
        bytes = 0;
      }
      rows += group.rows;
      bytes += group.bytes;
    }
    ranges.push([start, start + rows]);
    for (const [from, to] of ranges) add(shard.index, shard.label, from, to, ranges.length > 1);
  }
  return units;
}

/** How logs and status name a unit: its shard's label, and its rows when it is a slice. */
export function unitName(unit: QueueUnit): string {
  return unit.slice ? `${unit.label} rows ${unit.start}-${unit.end}` : unit.label;
}
