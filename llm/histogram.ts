/**
 * A mergeable histogram for latencies, with a bounded relative error on every quantile.
 *
 * Positive values fall into logarithmic buckets: bucket `i` holds (γ^(i-1), γ^i] with γ = (1+α)/(1-α), and is
 * reported as 2γ^i/(γ+1), which is within α of every value in it. Bucket boundaries depend only on α, so two
 * histograms with the same α merge by adding counts per bucket, and the merge of two half-runs is the histogram
 * of the whole run (counts, min, max and quantiles exactly; the sum up to floating-point rounding). Memory grows
 * with the log of the value range, not with the number of samples: 1 ms to 1 hour at α = 1% is ~750 buckets.
 */

/** The default relative accuracy: quantiles are within 1% of the value at that rank. */
export const DEFAULT_RELATIVE_ACCURACY = 0.01;

/** The plain-JSON form of a histogram, as it goes into stats files and comes back for merging. */
export interface HistogramSnapshot {
  readonly relativeAccuracy: number;
  readonly count: number;
  readonly sum: number;
  /** Exact smallest and largest sample; null when empty. */
  readonly min: number | null;
  readonly max: number | null;
  /** Samples equal to 0, which have no logarithmic bucket. */
  readonly zeroCount: number;
  /** [bucket index, count] pairs, ascending by index, without empty buckets. */
  readonly buckets: ReadonlyArray<readonly [number, number]>;
}

/** The figures a report shows; every field is null when there are no samples. */
export interface Summary {
  readonly count: number;
  readonly mean: number | null;
  readonly min: number | null;
  readonly max: number | null;
  readonly p50: number | null;
  readonly p95: number | null;
  readonly p99: number | null;
}

export class LogHistogram {
  readonly relativeAccuracy: number;
  private readonly gamma: number;
  private readonly logGamma: number;
  private readonly counts = new Map<number, number>();
  private zeroCount = 0;
  private total = 0;
  private sum = 0;
  private min = Infinity;
  private max = -Infinity;

  constructor(relativeAccuracy: number = DEFAULT_RELATIVE_ACCURACY) {
    if (!(relativeAccuracy > 0 && relativeAccuracy < 1)) {
      throw new RangeError(`relative accuracy must be in (0, 1), got ${relativeAccuracy}`);
    }
    this.relativeAccuracy = relativeAccuracy;
    this.gamma = (1 + relativeAccuracy) / (1 - relativeAccuracy);
    this.logGamma = Math.log(this.gamma);
  }

  static fromSnapshot(snapshot: HistogramSnapshot): LogHistogram {
    const histogram = new LogHistogram(snapshot.relativeAccuracy);
    histogram.add(snapshot);
    return histogram;
  }

  /** Adds snapshots by bucket; both must have the same relative accuracy, or the buckets would not line up. */
  static merge(a: HistogramSnapshot, b: HistogramSnapshot): HistogramSnapshot {
    const merged = LogHistogram.fromSnapshot(a);
    merged.add(b);
    return merged.snapshot();
  }

  get count(): number {
    return this.total;
  }

  record(value: number): void {
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`histogram values must be finite and >= 0, got ${value}`);
    }
    if (value === 0) this.zeroCount += 1;
    else {
      const index = Math.ceil(Math.log(value) / this.logGamma);
      this.counts.set(index, (this.counts.get(index) ?? 0) + 1);
    }
    this.total += 1;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }

  /** Adds another histogram's samples to this one. */
  add(other: LogHistogram | HistogramSnapshot): void {
    const snapshot = other instanceof LogHistogram ? other.snapshot() : other;
    if (snapshot.relativeAccuracy !== this.relativeAccuracy) {
      throw new RangeError(
        `cannot merge histograms of relative accuracy ${snapshot.relativeAccuracy} and ${this.relativeAccuracy}`,
      );
    }
    for (const [index, count] of snapshot.buckets) {
      this.counts.set(index, (this.counts.get(index) ?? 0) + count);
    }
    this.zeroCount += snapshot.zeroCount;
    this.total += snapshot.count;
    this.sum += snapshot.sum;
    if (snapshot.min !== null && snapshot.min < this.min) this.min = snapshot.min;
    if (snapshot.max !== null && snapshot.max > this.max) this.max = snapshot.max;
  }

  /**
   * The value at rank q·(n-1) of the sorted samples, within the relative accuracy (undefined when empty).
   * Clamped to the exact min and max, so q = 0 and q = 1 are exact.
   */
  quantile(q: number): number | undefined {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be in [0, 1], got ${q}`);
    if (this.total === 0) return undefined;
    const rank = q * (this.total - 1);
    let seen = this.zeroCount;
    if (seen > rank) return 0;
    for (const index of [...this.counts.keys()].sort((x, y) => x - y)) {
      seen += this.counts.get(index)!;
      if (seen > rank) return Math.min(this.max, Math.max(this.min, this.bucketValue(index)));
    }
    return this.max;
  }

  mean(): number | undefined {
    return this.total === 0 ? undefined : this.sum / this.total;
  }

  summary(): Summary {
    return {
      count: this.total,
      mean: this.mean() ?? null,
      min: this.total === 0 ? null : this.min,
      max: this.total === 0 ? null : this.max,
      p50: this.quantile(0.5) ?? null,
      p95: this.quantile(0.95) ?? null,
      p99: this.quantile(0.99) ?? null,
    };
  }

  snapshot(): HistogramSnapshot {
    const buckets = [...this.counts.entries()]
      .filter(([, count]) => count > 0)
      .sort(([x], [y]) => x - y)
      .map(([index, count]) => [index, count] as const);
    return {
      relativeAccuracy: this.relativeAccuracy,
      count: this.total,
      sum: this.sum,
      min: this.total === 0 ? null : this.min,
      max: this.total === 0 ? null : this.max,
      zeroCount: this.zeroCount,
      buckets,
    };
  }

  private bucketValue(index: number): number {
    return (2 * Math.pow(this.gamma, index)) / (this.gamma + 1);
  }
}
