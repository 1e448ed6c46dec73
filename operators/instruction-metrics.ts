import { countConstraints } from './constraint-count.js';
import {
  CONSTRAINT_TYPES,
  summarizeConstraints,
  tagConstraints,
  type ConstraintType,
} from './constraint-tagger.js';
import { countWords } from './length-filter.js';

/** Model-free measures of one instruction-following example (the paper compares datasets by complexity). */
export interface InstructionMetrics {
  readonly instructionWords: number;
  readonly outputWords: number;
  /** Distinct constraint types the instruction states (a lower bound: the tagger favours precision). */
  readonly constraintTypes: ConstraintType[];
  /** Number of distinct types (constraintTypes.length). */
  readonly constraintCount: number;
  /**
   * Constraints stated, counted by clause (constraint-count.ts): unlike the distinct types it grows with each
   * constraint added, also of a type already present or phrased without a cue word. The ranking measure.
   */
  readonly constraintsStated: number;
}

export function measureInstruction(instruction: string, output: string | null): InstructionMetrics {
  const tags = tagConstraints(instruction);
  const summary = summarizeConstraints(tags);
  const types = CONSTRAINT_TYPES.map((t) => t.id).filter((id) => (summary.counts[id] ?? 0) > 0);
  return {
    instructionWords: countWords(instruction),
    outputWords: output === null ? 0 : countWords(output),
    constraintTypes: types,
    constraintCount: types.length,
    constraintsStated: countConstraints(instruction, tags),
  };
}

/** Dataset-level summary: means, quantiles, and how often each constraint type appears. */
export interface DatasetMetrics {
  readonly rows: number;
  readonly instructionWords: Distribution;
  readonly outputWords: Distribution;
  /** Distinct constraint types per instruction. */
  readonly constraintsPerInstruction: Distribution;
  /** Constraints stated per instruction, counted by clause (InstructionMetrics.constraintsStated). */
  readonly constraintsStated: Distribution;
  /** Distinct-type count → share of instructions, e.g. {"0": 0.4, "1": 0.35, ...}. */
  readonly constraintHistogram: Record<string, number>;
  /** Share of instructions stating each type. */
  readonly typeShare: Record<ConstraintType, number>;
}

export interface Distribution {
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/** Accumulates metrics row by row; the distributions keep one number per row (fine for datasets of millions). */
export class MetricsAccumulator {
  private readonly instructionWords: number[] = [];
  private readonly outputWords: number[] = [];
  private readonly constraints: number[] = [];
  private readonly stated: number[] = [];
  private readonly typeCounts = new Map<ConstraintType, number>();

  add(metrics: InstructionMetrics): void {
    this.instructionWords.push(metrics.instructionWords);
    this.outputWords.push(metrics.outputWords);
    this.constraints.push(metrics.constraintCount);
    this.stated.push(metrics.constraintsStated);
    for (const type of metrics.constraintTypes)
      this.typeCounts.set(type, (this.typeCounts.get(type) ?? 0) + 1);
  }

  summary(): DatasetMetrics {
    const rows = this.constraints.length;
    const histogram: Record<string, number> = {};
    for (const n of this.constraints) histogram[String(n)] = (histogram[String(n)] ?? 0) + 1;
    for (const key of Object.keys(histogram)) histogram[key] = histogram[key]! / Math.max(rows, 1);
    const typeShare = Object.fromEntries(
      CONSTRAINT_TYPES.map((t) => [t.id, (this.typeCounts.get(t.id) ?? 0) / Math.max(rows, 1)]),
    ) as Record<ConstraintType, number>;
    return {
      rows,
      instructionWords: distribution(this.instructionWords),
      outputWords: distribution(this.outputWords),
      constraintsPerInstruction: distribution(this.constraints),
      constraintsStated: distribution(this.stated),
      constraintHistogram: histogram,
      typeShare,
    };
  }
}

export function distribution(values: readonly number[]): Distribution {
  if (values.length === 0) return { mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  const sorted = Float64Array.from(values).sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    mean: sum / sorted.length,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: sorted[sorted.length - 1]!,
  };
}
