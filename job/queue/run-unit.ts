import { mkdir, rm } from 'node:fs/promises';
import type { Shard } from '../../pipeline/io/shards.js';
import type { Plan, PlannedShard } from '../../schemas/plan.js';
import { parseRunConfig, type RunConfig } from '../config.js';
import { globalDedupeStages, readRankDropLists } from '../global-dedupe/index.js';
import { dedupeEnabled } from '../plan/dedupe-barrier.js';
import { planFile, startHeartbeatAt } from '../plan/layout.js';
import { runJob, type JobOptions, type JobResult } from '../run-job.js';
import {
  attemptDir,
  attemptHeartbeatFile,
  markUnitComplete,
  newAttempt,
  readUnitCompletion,
  seedAttempt,
  seedFailure,
  type UnitCompletion,
} from './units.js';
import { unitName, type QueueUnit } from './slices.js';

export type UnitOutcome =
  /** A marker was there before this attempt began: nothing run. */
  | { readonly status: 'already-complete'; readonly completion: UnitCompletion }
  /**
   * The attempt ran. `counted` is the marker that counts: this attempt's, or, when another attempt of the
   * unit completed first (a double run), that one's; `result.report.status` says how this attempt ended.
   */
  | {
      readonly status: 'ran';
      readonly attempt: string;
      readonly seededFrom: string | undefined;
      readonly result: JobResult;
      readonly counted: UnitCompletion | undefined;
    };

export interface UnitRunOptions extends Omit<JobOptions, 'shards' | 'dedupeStages'> {
  /** Written beside the attempt folder: who made it (worker id, BullMQ job counters). */
  readonly owner: Readonly<Record<string, unknown>>;
  /** How often the attempt's heartbeat is rewritten (seconds). */
  readonly heartbeatSeconds: number;
  /** Display settings of this process (progress), over the plan's. */
  readonly display?: Readonly<Record<string, unknown>>;
}

/** The plan's resolved config with the unit's shard as input and an attempt folder as output. */
export function unitConfig(
  plan: Plan,
  root: string,
  shard: PlannedShard,
  output: string,
  display: Readonly<Record<string, unknown>> = {},
): RunConfig {
  return parseRunConfig({ ...plan.config, ...display, input: [shard.path], output }, planFile(root));
}

/**
 * One attempt at a unit: a new attempt folder, seeded from the newest earlier attempt's committed work, then an
 * ordinary run of the plan's config over the unit's shard (or its slice of rows) into it (so the ordinary resume continues the seeded
 * work), with a heartbeat while it runs. A completed run marks the unit complete unless another attempt did first.
 */
export async function runUnit(
  root: string,
  plan: Plan,
  queued: QueueUnit,
  options: UnitRunOptions,
): Promise<UnitOutcome> {
  const { unit } = queued;
  const shard = plan.shards[queued.shard]!;
  const before = await readUnitCompletion(root, unit);
  if (before?.fingerprint === plan.fingerprint) return { status: 'already-complete', completion: before };
  const attempt = await newAttempt(root, unit, options.owner);
  const dir = attemptDir(root, unit, attempt);
  let seededFrom: string | undefined;
  try {
    seededFrom = await seedAttempt(root, unit, attempt);
  } catch (error) {
    options.log?.(`unit ${unitName(queued)} ${attempt}: ${seedFailure(error)}`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
  }
  const config = unitConfig(plan, root, shard, dir, options.display);
  const shards: Shard[] = [
    {
      path: shard.path,
      label: shard.label,
      size: shard.size,
      ...(queued.slice ? { rows: { start: queued.start, end: queued.end } } : {}),
    },
  ];
  const heartbeat = await startHeartbeatAt(
    attemptHeartbeatFile(root, unit, attempt),
    options.heartbeatSeconds,
  );
  try {
    const dedupeStages = dedupeEnabled(config.dedupe)
      ? globalDedupeStages(
          await readRankDropLists(root, [{ index: shard.index, label: shard.label }]),
          config.dedupe,
        )
      : undefined;
    const { owner: _owner, heartbeatSeconds: _beat, display: _display, ...jobOptions } = options;
    const result = await runJob(config, { ...jobOptions, shards, dedupeStages });
    const counted =
      result.report.status === 'completed'
        ? (
            await markUnitComplete(root, {
              unit,
              label: unitName(queued),
              attempt,
              fingerprint: plan.fingerprint,
              finishedAt: new Date().toISOString(),
              rowsWritten: result.report.totals.rowsWritten,
            })
          ).completion
        : undefined;
    return { status: 'ran', attempt, seededFrom, result, counted };
  } finally {
    await heartbeat.stop();
  }
}
