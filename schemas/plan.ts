import { z } from 'zod';

/**
 * `plan.json`: the frozen listing of a job run by many ranks (`air plan`). Every rank reads its shards from
 * here rather than listing the input itself, so ranks never disagree on who reads what, and global dedupe has
 * one order to keep the earliest occurrence by: `shards` is in plan order (the listing's label order).
 */
export const PLAN_VERSION = 1;

const count = z.number().int().nonnegative();

export const plannedShardSchema = z.strictObject({
  /** Position in the plan's global shard order (equal to the index in `shards`). */
  index: count,
  /** Path relative to the input root, as `air run` labels it (ids, ledger). */
  label: z.string().min(1),
  /** Absolute path at planning time. */
  path: z.string().min(1),
  size: count,
  mtimeMs: count,
  /** SHA-256 (16 hex) of the Parquet footer (pipeline/io/manifest.ts shardIdentity). */
  footerHash: z.string().min(1),
  /** Rows, from the footer. */
  rows: count,
  rank: count,
});
export type PlannedShard = z.output<typeof plannedShardSchema>;

export const plannedRankSchema = z.strictObject({
  rank: count,
  /** Labels of its shards, in plan order. */
  shards: z.array(z.string()),
  bytes: count,
  rows: count,
});
export type PlannedRank = z.output<typeof plannedRankSchema>;

export const planSchema = z
  .strictObject({
    version: z.literal(PLAN_VERSION),
    createdAt: z.string(),
    worldSize: z.number().int().positive(),
    /** job/fingerprint.ts configFingerprint of `config`: a rank with other result settings is refused. */
    fingerprint: z.string().regex(/^[0-9a-f]{16}$/),
    /** The resolved run config (job/config.ts RunConfig; API keys appear only as variable names). */
    config: z.record(z.string(), z.unknown()),
    shards: z.array(plannedShardSchema),
    ranks: z.array(plannedRankSchema),
    totals: z.strictObject({ shards: count, bytes: count, rows: count }),
  })
  .superRefine((plan, ctx) => {
    if (plan.ranks.length !== plan.worldSize) {
      ctx.addIssue({ code: 'custom', path: ['ranks'], message: `expected ${plan.worldSize} ranks` });
    }
    plan.shards.forEach((s, i) => {
      if (s.index !== i) ctx.addIssue({ code: 'custom', path: ['shards', i, 'index'], message: `not ${i}` });
      if (s.rank >= plan.worldSize) {
        ctx.addIssue({ code: 'custom', path: ['shards', i, 'rank'], message: 'beyond the world size' });
      }
    });
    plan.ranks.forEach((r, i) => {
      if (r.rank !== i) ctx.addIssue({ code: 'custom', path: ['ranks', i, 'rank'], message: `not ${i}` });
      // Readers use `ranks` (merge, status) and `shards[].rank` (runs): a hand-edited plan must not split them.
      const mine = plan.shards.filter((shard) => shard.rank === i);
      const agrees =
        JSON.stringify(r.shards) === JSON.stringify(mine.map((shard) => shard.label)) &&
        r.bytes === mine.reduce((n, shard) => n + shard.size, 0) &&
        r.rows === mine.reduce((n, shard) => n + shard.rows, 0);
      if (!agrees) {
        ctx.addIssue({
          code: 'custom',
          path: ['ranks', i],
          message: 'disagrees with the shards assigned to it',
        });
      }
    });
    const sum = (key: 'size' | 'rows'): number => plan.shards.reduce((n, shard) => n + shard[key], 0);
    const { totals } = plan;
    if (totals.shards !== plan.shards.length || totals.bytes !== sum('size') || totals.rows !== sum('rows')) {
      ctx.addIssue({ code: 'custom', path: ['totals'], message: 'disagrees with the shards' });
    }
  });
export type Plan = z.output<typeof planSchema>;

/** Where a rank stands (`air status`); see job/plan/status.ts for how each is decided. */
export const RANK_STATES = ['not-started', 'running', 'interrupted', 'complete'] as const;
export type RankState = (typeof RANK_STATES)[number];

const rate = z.number().nonnegative().nullable();

export const rankStatusSchema = z.strictObject({
  rank: count,
  state: z.enum(RANK_STATES),
  shards: count,
  plannedRows: count,
  /** Input rows the rank's manifest records as settled (written, dropped or failed). */
  settledRows: count,
  /** Output rows: from the completion file when complete, else from the manifest's commits. */
  rowsWritten: count,
  /** When the rank's current session began (its manifest's last header or resume entry). */
  startedAt: z.string().nullable(),
  /** The rank's last sign of life: its heartbeat, else its manifest's last write. */
  updatedAt: z.string().nullable(),
  /** Rows settled per second in the current session (null: not running or nothing settled yet). */
  rowsPerSecond: rate,
  etaSeconds: rate,
  heartbeat: z.strictObject({ pid: count, host: z.string(), updatedAt: z.string() }).nullable(),
  /** Why the state is what it is, when it is not obvious (a stale completion, a dead process). */
  note: z.string().nullable(),
});
export type RankStatus = z.output<typeof rankStatusSchema>;

/** The output of `air status --json`. */
export const jobStatusSchema = z.strictObject({
  version: z.literal(PLAN_VERSION),
  root: z.string(),
  at: z.string(),
  worldSize: z.number().int().positive(),
  fingerprint: z.string(),
  complete: z.boolean(),
  /**
   * `queue`: the job runs from a queue (air enqueue / air worker); each entry of `ranks` is then a unit (a shard,
   * `rank` its index in the plan) and `worldSize` the number of units.
   */
  mode: z.enum(['ranks', 'queue']),
  ranks: z.array(rankStatusSchema),
  totals: z.strictObject({
    complete: count,
    running: count,
    interrupted: count,
    notStarted: count,
    plannedRows: count,
    settledRows: count,
    rowsWritten: count,
    rowsPerSecond: rate,
    /** Until the slowest unfinished rank is done at the rates seen (null: no rate to go by). */
    etaSeconds: rate,
  }),
});
export type JobStatus = z.output<typeof jobStatusSchema>;

/** `completions/NNNNN`: written by a rank once its every row is settled. */
export const completionSchema = z.strictObject({
  rank: count,
  /** The plan's fingerprint the rank ran with: a completion of another plan does not count. */
  fingerprint: z.string(),
  finishedAt: z.string(),
  rowsWritten: count,
});
export type Completion = z.output<typeof completionSchema>;

/** `heartbeats/NNNNN`: rewritten by a running rank every few seconds, removed when it stops. */
export const heartbeatSchema = z.strictObject({
  pid: count,
  host: z.string(),
  startedAt: z.string(),
  updatedAt: z.string(),
});
export type Heartbeat = z.output<typeof heartbeatSchema>;
