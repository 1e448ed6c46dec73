import type { LogHistogram } from '../../llm/histogram.js';
import type { DistributionSummary, ExactDistribution, LogDistribution } from '../../schemas/stats.js';

/** Quantiles every distribution reports. */
const QUANTILES = { p50: 0.5, p90: 0.9, p99: 0.99 } as const;

/** Largest value counted exactly: depths, scores and per-row counts are far below it. */
const EXACT_MAX = 100_000;

/**
 * Exact counts of small non-negative integers (depth, LLM scores, constraints per row). Quantiles are exact:
 * the value at rank floor(q·(n-1)) of the sorted samples, as LogHistogram ranks them. Values that are not
 * integers in [0, EXACT_MAX] are counted apart, so a foreign dataset's odd column cannot grow the map.
 */
export class ExactCounts {
  private readonly counts = new Map<number, number>();
  private outOfRange = 0;

  static fromDistribution(d: ExactDistribution): ExactCounts {
    const exact = new ExactCounts();
    exact.add(d);
    return exact;
  }

  record(value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > EXACT_MAX) {
      this.outOfRange += 1;
      return;
    }
    this.counts.set(value, (this.counts.get(value) ?? 0) + 1);
  }

  add(d: ExactDistribution): void {
    for (const [key, n] of Object.entries(d.counts)) {
      const value = Number(key);
      this.counts.set(value, (this.counts.get(value) ?? 0) + n);
    }
    this.outOfRange += d.outOfRange;
  }

  distribution(): ExactDistribution {
    const sorted = [...this.counts.entries()].filter(([, n]) => n > 0).sort(([x], [y]) => x - y);
    let total = 0;
    let sum = 0;
    for (const [value, n] of sorted) {
      total += n;
      sum += value * n;
    }
    const at = (q: number): number | null => {
      if (total === 0) return null;
      const rank = q * (total - 1);
      let seen = 0;
      for (const [value, n] of sorted) {
        seen += n;
        if (seen > rank) return value;
      }
      return sorted[sorted.length - 1]![0];
    };
    return {
      kind: 'exact',
      counts: Object.fromEntries(sorted.map(([value, n]) => [String(value), n])),
      outOfRange: this.outOfRange,
      summary: {
        count: total,
        mean: total === 0 ? null : sum / total,
        min: total === 0 ? null : sorted[0]![0],
        max: total === 0 ? null : sorted[sorted.length - 1]![0],
        p50: at(QUANTILES.p50),
        p90: at(QUANTILES.p90),
        p99: at(QUANTILES.p99),
      },
    };
  }
}

/**
 * A LogHistogram of integer samples (word counts) with the summary the stats report. Quantiles are the bucket's
 * value rounded to an integer: within 1% (the histogram's accuracy) plus rounding of the sample at that rank,
 * and exact below 50, where a bucket is narrower than 1. Min and max are exact.
 */
export function logDistribution(histogram: LogHistogram): LogDistribution {
  return { kind: 'log', histogram: histogram.snapshot(), summary: logSummary(histogram) };
}

export function logSummary(histogram: LogHistogram): DistributionSummary {
  // summary() carries the exact min and max; its quantile(1) is a bucket value, not the max.
  const { count, mean, min, max } = histogram.summary();
  const at = (q: number): number | null => {
    const value = histogram.quantile(q);
    return value === undefined ? null : Math.round(value);
  };
  return { count, mean, min, max, p50: at(QUANTILES.p50), p90: at(QUANTILES.p90), p99: at(QUANTILES.p99) };
}
