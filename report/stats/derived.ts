import { CONSTRAINT_TYPES } from '../../operators/constraint-tagger.js';
import { niceCeil } from '../svg.js';
import type { Funnel, LogDistribution, RunStats, TimeBucket } from '../../schemas/stats.js';

/**
 * Figures derived from stats for people (the report and the dataset card): never stored, always recomputed,
 * so merged stats show merged figures.
 */

/** Input rows still in the run after each stage, then written: the funnel's bars. */
export function funnelSteps(funnel: Funnel): Array<{ readonly step: string; readonly rows: number }> {
  const lost = new Map<string, number>();
  for (const map of [funnel.dropped, funnel.failed]) {
    for (const [key, n] of Object.entries(map)) {
      const stage = key.slice(0, key.indexOf(':'));
      lost.set(stage, (lost.get(stage) ?? 0) + n);
    }
  }
  const steps = [{ step: 'read', rows: funnel.read }];
  let remaining = funnel.read;
  const stages = funnel.stages;
  stages.forEach((stage, i) => {
    remaining -= lost.get(stage.name) ?? 0;
    // The source's own drops (empty texts) show in the first operator's bar; the sink's bar is "written".
    if (i === 0 || i === stages.length - 1) return;
    steps.push({ step: `after ${stage.name}`, rows: remaining });
  });
  steps.push({ step: 'written', rows: funnel.written });
  return steps;
}

/** Drops and failures by "stage:reason", most frequent first. */
export function lossReasons(funnel: Funnel): Array<{ readonly reason: string; readonly rows: number }> {
  return [
    ...Object.entries(funnel.dropped).map(([reason, rows]) => ({ reason: `dropped ${reason}`, rows })),
    ...Object.entries(funnel.failed).map(([reason, rows]) => ({ reason: `failed ${reason}`, rows })),
  ].sort((a, b) => b.rows - a.rows || (a.reason < b.reason ? -1 : 1));
}

/** The 12 AIR types first, in the paper's order, then any other type names the rows carry. */
export function constraintTypeRows(stats: RunStats): Array<{
  readonly type: string;
  readonly label: string;
  readonly counts: RunStats['constraintTypes'][string];
}> {
  const zero = { chosen: 0, gated: 0, duplicate: 0, merged: 0, tagged: 0 };
  const known = CONSTRAINT_TYPES.map((t) => ({
    type: t.id as string,
    label: t.label,
    counts: stats.constraintTypes[t.id] ?? zero,
  }));
  const others = Object.keys(stats.constraintTypes)
    .filter((type) => !known.some((k) => k.type === type))
    .map((type) => ({ type, label: type, counts: stats.constraintTypes[type]! }));
  return [...known, ...others];
}

/** The accounting to show: the LLM client's (every call, with cost) when there is one, else the rows' calls. */
export function llmAccounting(stats: RunStats): {
  readonly accounting: RunStats['rowCalls'];
  readonly from: 'client' | 'rows';
} {
  return stats.llm === null
    ? { accounting: stats.rowCalls, from: 'rows' }
    : { accounting: stats.llm.accounting, from: 'client' };
}

/** Rows and calls per second, and mean latency, per timeline bucket; x in minutes since the run started. */
export function throughput(stats: RunStats): Array<{
  readonly minute: number;
  readonly rowsPerS: number;
  readonly callsPerS: number;
  readonly meanLatencyMs: number | null;
}> {
  const { buckets, bucketMs } = stats.time;
  if (buckets.length === 0) return [];
  const start = stats.time.startedAt ?? buckets[0]!.at;
  const end = stats.time.finishedAt ?? buckets[buckets.length - 1]!.at + bucketMs;
  return buckets.map((b: TimeBucket) => {
    // The first and last buckets are partly outside the run: rates use the part inside.
    const from = Math.max(b.at, start);
    const to = Math.max(from + 1, Math.min(b.at + bucketMs, end));
    const seconds = (to - from) / 1000;
    return {
      minute: ((from + to) / 2 - start) / 60_000,
      rowsPerS: b.rows / seconds,
      callsPerS: b.calls / seconds,
      meanLatencyMs: b.latencyCount === 0 ? null : b.latencyMsSum / b.latencyCount,
    };
  });
}

/**
 * Common bins for word-count distributions: about `bins` nice-width bins up to the largest p99, and an open
 * last bin for the tail beyond it. Counts per bin come from the log histogram's buckets (each bucket's value
 * rounded to an integer: word counts are integers).
 */
export function wordBins(
  distributions: readonly LogDistribution[],
  bins = 20,
): { edges: number[]; openLast: boolean; counts: number[][] } {
  const filled = distributions.filter((d) => d.summary.count > 0);
  const hi = Math.max(1, ...filled.map((d) => d.summary.p99 ?? 0));
  const max = Math.max(1, ...filled.map((d) => d.summary.max ?? 0));
  const step = Math.max(1, niceCeil(hi / bins));
  const body = Math.max(1, Math.ceil((hi + 1) / step));
  const openLast = max >= body * step;
  const n = body + (openLast ? 1 : 0);
  const edges = Array.from({ length: n + 1 }, (_, i) => i * step);
  const counts = distributions.map((d) => {
    const out = new Array<number>(n).fill(0);
    const h = d.histogram;
    out[0]! += h.zeroCount;
    const gamma = (1 + h.relativeAccuracy) / (1 - h.relativeAccuracy);
    for (const [index, count] of h.buckets) {
      const raw = (2 * Math.pow(gamma, index)) / (gamma + 1);
      const value = Math.round(Math.min(h.max ?? raw, Math.max(h.min ?? raw, raw)));
      out[Math.min(n - 1, Math.floor(value / step))]! += count;
    }
    return out;
  });
  return { edges, openLast, counts };
}

/** Share of the funnel's input rows that were written (null without a funnel or input). */
export function yieldOf(stats: RunStats): number | null {
  const f = stats.funnel;
  return f === null || f.read === 0 ? null : f.written / f.read;
}
