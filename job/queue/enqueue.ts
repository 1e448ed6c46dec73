import { Queue } from 'bullmq';
import type { Plan } from '../../schemas/plan.js';
import { dedupeEnabled, globalDedupeBarrier } from '../plan/dedupe-barrier.js';
import { checkShardsUnchanged, rankConfig } from '../plan/run-rank.js';
import { queueName, redisOptions, unitJobId, type UnitJobData } from './connection.js';
import { QueueError } from './errors.js';
import { AirError } from '../../pipeline/errors.js';
import { mapConcurrent } from '../../pipeline/concurrent.js';
import {
  FOOTERS_IN_FLIGHT,
  readFooter,
  rowGroupSizes,
  type RowGroupSize,
} from '../../pipeline/io/parquet-footer.js';
import { cutUnits, unitName, type QueueUnit } from './slices.js';
import { QUEUE_FILE_VERSION, readQueueFile, readUnitCompletion, writeQueueFile } from './units.js';

/** Failed runs of one unit (errors, not stalls or stops) before BullMQ fails it; enqueue again to retry it. */
export const ENQUEUE_ATTEMPTS = 3;
/**
 * Shards above this are cut into units of row groups up to this size. 512 MB of compressed Parquet is minutes
 * of AIR work on a busy server: small enough to balance a fleet, large enough that a unit's fixed cost (a run's
 * start, footers, the cache) stays small.
 */
export const SLICE_MB = 512;

export interface EnqueueOptions {
  /** `redis://host:port/db`. */
  readonly url: string;
  /** Runs of a unit that may fail (an error, not a stall or a stop) before BullMQ fails it. */
  readonly attempts: number;
  /** Shards larger than this (MB) are cut into units of consecutive row groups of at most this size. */
  readonly sliceMB: number;
  /** The dedupe barrier's waits (as `air run --plan`): only the global step's lock is waited on here. */
  readonly dedupeWaitSeconds: number;
  readonly lockStaleSeconds: number;
  readonly signal?: AbortSignal;
  readonly log?: (line: string) => void;
}

export interface EnqueueResult {
  readonly queue: string;
  readonly units: number;
  /** Of the units, those that are slices of a big shard. */
  readonly slices: number;
  /** Units added by this call; the rest were already in the queue, or complete. */
  readonly added: number;
  /** Units BullMQ had failed (attempts used up), handed back to the queue. */
  readonly retried: number;
  readonly complete: number;
}

/**
 * `air enqueue`: one BullMQ job per unit (a shard of the plan, or a slice of row groups of a big one: slices.ts),
 * with the unit as its id, so enqueueing twice adds nothing. The units are fixed by the first enqueue
 * (queue.json); another slice size later is refused, since units already run would be cut differently. Units already complete on disk are not added. With dedupe on, the global dedupe step runs here
 * first, in this one process (keys of every shard, then the step), so that every unit's drop list is ready
 * before any worker starts LLM work: workers never wait on each other.
 */
export async function enqueueUnits(
  root: string,
  plan: Plan,
  options: EnqueueOptions,
): Promise<EnqueueResult> {
  const name = queueName(plan);
  const existing = await readQueueFile(root);
  if (existing !== undefined && existing.queue !== name) {
    throw new QueueError(
      'AIR_QUEUE_OTHER_PLAN',
      `${root}: was enqueued from another plan (queue ${existing.queue}); plan into a fresh folder`,
    );
  }
  await checkShardsUnchanged(plan.shards);
  const units = existing?.units ?? (await planUnits(plan, options.sliceMB));
  if (existing !== undefined && existing.sliceMB !== options.sliceMB) {
    throw new QueueError(
      'AIR_QUEUE_OTHER_PLAN',
      `${root}: was enqueued with slices of at most ${existing.sliceMB} MB; enqueue again with ` +
        `--slice-mb ${existing.sliceMB}, or plan into a fresh folder`,
    );
  }
  const config = rankConfig(plan, root, 0);
  if (dedupeEnabled(config.dedupe)) {
    options.log?.(`dedupe: keys of ${plan.shards.length} shards, then the global step, before enqueueing`);
    await globalDedupeBarrier({
      root,
      plan,
      rank: 0,
      keyRanks: plan.ranks.map((r) => r.rank),
      config,
      timeoutSeconds: options.dedupeWaitSeconds,
      lockStaleSeconds: options.lockStaleSeconds,
      signal: options.signal,
      log: options.log,
    });
  }
  const pending: Array<{ name: 'unit'; data: UnitJobData; opts: { jobId: string } }> = [];
  let complete = 0;
  for (const unit of units) {
    const done = await readUnitCompletion(root, unit.unit);
    if (done?.fingerprint === plan.fingerprint) {
      complete++;
      continue;
    }
    pending.push({
      name: 'unit',
      data: { unit: unit.unit, label: unitName(unit) },
      opts: { jobId: unitJobId(unit.unit) },
    });
  }
  const queue = new Queue<UnitJobData, unknown, 'unit'>(name, {
    connection: redisOptions(options.url, 'fail-fast'),
    defaultJobOptions: {
      attempts: options.attempts,
      backoff: { type: 'exponential', delay: 5000 },
      // Kept: a known id is what makes a second enqueue add nothing.
      removeOnComplete: false,
      removeOnFail: false,
    },
  });
  // Connection errors surface as the failed command below (AIR_QUEUE_UNREACHABLE), once, not as a log per retry.
  queue.on('error', () => {});
  try {
    // The units first: a retry after a crash between the two must find the units its jobs name.
    await writeQueueFile(root, {
      air: 'queue',
      version: QUEUE_FILE_VERSION,
      queue: name,
      fingerprint: plan.fingerprint,
      sliceMB: options.sliceMB,
      units,
      enqueuedAt: existing?.enqueuedAt ?? new Date().toISOString(),
    });
    const before = await countJobs(queue, options.url);
    await queue.addBulk(pending);
    const after = await countJobs(queue, options.url);
    // A unit that used up its attempts stays failed under its id: enqueueing again is how it is retried.
    let retried = 0;
    for (const job of pending) {
      const known = await queue.getJob(job.opts.jobId);
      if (known !== undefined && (await known.isFailed())) {
        await known.retry('failed');
        retried++;
      }
    }
    return {
      queue: name,
      units: units.length,
      slices: units.filter((u) => u.slice).length,
      added: after - before,
      retried,
      complete,
    };
  } finally {
    await queue.close();
  }
}

/** The plan's units: the footers of shards above the slice size are read (row groups and their bytes). */
async function planUnits(plan: Plan, sliceMB: number): Promise<QueueUnit[]> {
  const maxBytes = sliceMB * 1024 * 1024;
  const big = plan.shards.filter((s) => s.size > maxBytes);
  const layouts = new Map<number, RowGroupSize[]>();
  await mapConcurrent(big, FOOTERS_IN_FLIGHT, async (shard) => {
    const groups = rowGroupSizes(await readFooter(shard));
    if (groups.reduce((n, g) => n + g.rows, 0) !== shard.rows) {
      throw new AirError(
        'AIR_PLAN_STALE',
        `${shard.label}: its footer no longer has the plan's ${shard.rows} rows; plan again (air plan --force)`,
      );
    }
    layouts.set(shard.index, groups);
  });
  return cutUnits(plan, layouts, maxBytes);
}

async function countJobs(queue: Queue<UnitJobData, unknown, 'unit'>, url: string): Promise<number> {
  try {
    const counts = await queue.getJobCounts();
    return Object.values(counts).reduce((a, b) => a + b, 0);
  } catch (error) {
    throw new QueueError('AIR_QUEUE_UNREACHABLE', `${url}: ${(error as Error).message}`, { cause: error });
  }
}
