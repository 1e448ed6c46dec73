/**
 * Counters of one stage. Plain numbers in plain objects so that the stats of two runs (or two workers)
 * merge by addition, as datatrove's do.
 */
export interface StageStats {
  name: string;
  /** Records handed to the stage. */
  in: number;
  /** Inputs that produced at least one output. */
  passed: number;
  /** Records the stage emitted (can exceed `passed` when one input fans out). */
  out: number;
  dropped: Record<string, number>;
  failed: Record<string, number>;
  /** Milliseconds spent inside process/processBatch, summed over concurrent calls. */
  busyMs: number;
  /** Operator-defined counters. */
  counters: Record<string, number>;
}

export function newStageStats(name: string): StageStats {
  return { name, in: 0, passed: 0, out: 0, dropped: {}, failed: {}, busyMs: 0, counters: {} };
}

export function increment(map: Record<string, number>, key: string, by = 1): void {
  map[key] = (map[key] ?? 0) + by;
}

export function sumValues(map: Record<string, number>): number {
  let total = 0;
  for (const value of Object.values(map)) total += value;
  return total;
}

export function mergeCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, value] of Object.entries(from)) increment(into, key, value);
}

export function mergeStageStats(a: StageStats, b: StageStats): StageStats {
  const merged = newStageStats(a.name);
  for (const s of [a, b]) {
    merged.in += s.in;
    merged.passed += s.passed;
    merged.out += s.out;
    merged.busyMs += s.busyMs;
    mergeCounts(merged.dropped, s.dropped);
    mergeCounts(merged.failed, s.failed);
    mergeCounts(merged.counters, s.counters);
  }
  return merged;
}
