import { z } from 'zod';

/**
 * The schema of `stats.json`: what a run wrote, computed while streaming and mergeable across shards and
 * processes. Everything here is raw, additive state (counts, histograms, sums) plus summaries derived from it;
 * a merge adds the raw state and derives the summaries again, so the merge of two half-runs is the whole run.
 */
export const STATS_VERSION = 1;

const count = z.number().int().nonnegative();
const counts = z.record(z.string(), count);
const nullableNumber = z.number().nullable();

/** llm/histogram.ts HistogramSnapshot: log buckets of relative accuracy α, merged by adding counts. */
export const histogramSnapshotSchema = z.strictObject({
  relativeAccuracy: z.number().gt(0).lt(1),
  count,
  sum: z.number().nonnegative(),
  min: nullableNumber,
  max: nullableNumber,
  zeroCount: count,
  buckets: z.array(z.tuple([z.number().int(), count]).readonly()).readonly(),
});

/** Every field null when there are no samples. */
export const distributionSummarySchema = z.strictObject({
  count,
  mean: nullableNumber,
  min: nullableNumber,
  max: nullableNumber,
  p50: nullableNumber,
  p90: nullableNumber,
  p99: nullableNumber,
});

/** A continuous distribution (word counts): a log histogram, quantiles within its relative accuracy. */
export const logDistributionSchema = z.strictObject({
  kind: z.literal('log'),
  histogram: histogramSnapshotSchema,
  summary: distributionSummarySchema,
});

/** A small integer distribution (depth, scores, counts per row): exact counts by value. */
export const exactDistributionSchema = z.strictObject({
  kind: z.literal('exact'),
  counts: z.record(z.string().regex(/^\d+$/), count),
  /** Values that were not integers in the counted range; left out of counts and summary. */
  outOfRange: count,
  summary: distributionSummarySchema,
});

export const LOG_DISTRIBUTIONS = [
  'documentWords',
  'initialInstructionWords',
  'instructionWords',
  'outputWords',
] as const;
export const EXACT_DISTRIBUTIONS = [
  'callsPerRow',
  'constraintsPerInstruction',
  'depth',
  'depthReached',
  'initialScore',
  'complexity',
  'quality',
  'taggedTypes',
] as const;

const latencySummarySchema = z.strictObject({
  count,
  mean: nullableNumber,
  min: nullableNumber,
  max: nullableNumber,
  p50: nullableNumber,
  p95: nullableNumber,
  p99: nullableNumber,
});

const callCountFields = {
  calls: count,
  cacheHits: count,
  promptTokens: count,
  completionTokens: count,
  cachedPromptTokens: count,
  cachedCompletionTokens: count,
  retries: count,
  errors: counts,
};

/** llm/accounting.ts StepCounts. */
const stepCountsSchema = z.strictObject({
  calls: count,
  promptTokens: count,
  completionTokens: count,
  reportedCalls: count,
  reportedPromptTokens: count,
  serverCachedTokens: count,
});

/** llm/accounting.ts AccountingSnapshot. */
export const accountingSnapshotSchema = z.strictObject({
  version: z.literal(1),
  entries: z
    .array(
      z.strictObject({
        role: z.string(),
        model: z.string(),
        ...callCountFields,
        replicas: z
          .record(z.string(), z.strictObject({ attempts: count, answered: count, errors: counts }))
          .optional(),
        latency: latencySummarySchema,
        latencyHistogram: histogramSnapshotSchema,
        price: z
          .strictObject({
            inputPerMTok: z.number().nonnegative(),
            outputPerMTok: z.number().nonnegative(),
            currency: z.string(),
          })
          .nullable(),
        cost: z.number().nonnegative().nullable(),
        currency: z.string().nullable(),
        unpriced: z.boolean(),
      }),
    )
    .readonly(),
  totals: z.strictObject({
    ...callCountFields,
    cost: z.record(z.string(), z.number().nonnegative()),
    unpricedModels: z.array(z.string()).readonly(),
  }),
  /** Absent in stats written before calls were counted per step. */
  steps: z.record(z.string(), stepCountsSchema).optional(),
});

/** pipeline/stats.ts StageStats. */
export const stageStatsSchema = z.strictObject({
  name: z.string(),
  in: count,
  passed: count,
  out: count,
  dropped: counts,
  failed: counts,
  busyMs: z.number().nonnegative(),
  counters: z.record(z.string(), z.number()),
});

/** The ledger's funnel: every input row read, then where it ended. */
export const funnelSchema = z.strictObject({
  /** Runs merged into these stats, by status. */
  status: z.strictObject({ completed: count, interrupted: count, failed: count }),
  read: count,
  /** Input rows with at least one output row written. */
  written: count,
  rowsWritten: count,
  abandoned: count,
  /** Input rows by "stage:reason" and "stage:kind". */
  dropped: counts,
  failed: counts,
  /** Per stage, in pipeline order (records in and out, drops, failures, the operator's own counters). */
  stages: z.array(stageStatsSchema),
});

/** One clock bucket (bucketMs wide, keyed by its start in epoch ms, so concurrent processes add up). */
export const timeBucketSchema = z.strictObject({
  at: z.number().int(),
  rows: count,
  calls: count,
  /** Latency of the calls counted here that reached a server (cache hits have none). */
  latencyMsSum: z.number().nonnegative(),
  latencyCount: count,
});

export const timeSchema = z.strictObject({
  bucketMs: z.number().int().positive(),
  /** Epoch ms; null when unknown (recomputed from Parquet without a ledger). */
  startedAt: nullableNumber,
  finishedAt: nullableNumber,
  /** The run's wall time; for merged stats, the sum of the parts' wall times. */
  wallMs: nullableNumber,
  /**
   * Where the calls per bucket come from: `client`, every answered LLM call as it returned; `rows`, the calls
   * listed on the rows written in that bucket (calls of dropped documents are missing).
   */
  callsFrom: z.enum(['client', 'rows', 'mixed']),
  buckets: z.array(timeBucketSchema),
});

export const constraintTypeCountsSchema = z.strictObject({
  /** Proposed by the judge and parsed (refine's `type_chosen`); every stage 2 run counts, kept or not. */
  chosen: count,
  /** Dropped by the student-check gate (`type_gated`). */
  gated: count,
  /** Rejected by the duplicate check (`type_duplicate`). */
  duplicate: count,
  /** In the `constraints` of written rows. */
  merged: count,
  /** Stated in written instructions, by the rule-based tagger (`tagged_types`). */
  tagged: count,
});

export const runStatsSchema = z.strictObject({
  air: z.literal('stats'),
  version: z.literal(STATS_VERSION),
  /** air: AIR examples; documents: filtered documents; instructions: any instruction dataset (a baseline). */
  kind: z.enum(['air', 'documents', 'instructions']),
  /** stream: collected as the run wrote; parquet: recomputed by `air stats`; merged: mergeStats of several. */
  origin: z.enum(['stream', 'parquet', 'merged']),
  rows: count,
  provenance: z.strictObject({
    configFingerprints: z.array(z.string()),
    promptVersions: z.array(z.string()),
    guidanceModels: z.array(z.string()),
    studentModels: z.array(z.string()),
    /** Values of a `language` column, when the rows have one. */
    languages: counts,
  }),
  time: timeSchema,
  /** null when the stats come from Parquet without a ledger.json. */
  funnel: funnelSchema.nullable(),
  distributions: z.strictObject({
    ...Object.fromEntries(LOG_DISTRIBUTIONS.map((name) => [name, logDistributionSchema])),
    ...Object.fromEntries(EXACT_DISTRIBUTIONS.map((name) => [name, exactDistributionSchema])),
  } as Record<(typeof LOG_DISTRIBUTIONS)[number], typeof logDistributionSchema> &
    Record<(typeof EXACT_DISTRIBUTIONS)[number], typeof exactDistributionSchema>),
  /** Rows by "complexity,quality" (both LLM scores present). */
  complexityQuality: z.record(z.string().regex(/^\d+,\d+$/), count),
  /** Rows by stop_reason. */
  stopReasons: counts,
  constraintTypes: z.record(z.string(), constraintTypeCountsSchema),
  /** Rows by host of their `url` column (lower case, without "www."). */
  domains: z.strictObject({
    hosts: counts,
    /** Rows whose host was not kept (more distinct hosts than the bound). */
    other: count,
    /** Rows with a `url` column but no parseable URL in it. */
    missing: count,
  }),
  /** The LLM client's own accounting (every call, errors and cost); null without one. */
  llm: z
    .strictObject({
      accounting: accountingSnapshotSchema,
      cache: z.strictObject({ hits: count, misses: count }).nullable(),
    })
    .nullable(),
  /** Accounting of the calls listed on written rows (no errors, no prices: the rows do not carry them). */
  rowCalls: accountingSnapshotSchema,
});

export type RunStats = z.infer<typeof runStatsSchema>;
export type StatsKind = RunStats['kind'];
export type DistributionSummary = z.infer<typeof distributionSummarySchema>;
export type LogDistribution = z.infer<typeof logDistributionSchema>;
export type ExactDistribution = z.infer<typeof exactDistributionSchema>;
export type LogDistributionName = (typeof LOG_DISTRIBUTIONS)[number];
export type ExactDistributionName = (typeof EXACT_DISTRIBUTIONS)[number];
export type Funnel = z.infer<typeof funnelSchema>;
export type TimeBucket = z.infer<typeof timeBucketSchema>;
export type ConstraintTypeCounts = z.infer<typeof constraintTypeCountsSchema>;
