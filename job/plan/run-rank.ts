import { identityFieldName, shardIdentity } from '../../pipeline/io/manifest.js';
import type { Shard } from '../../pipeline/io/shards.js';
import { AirError } from '../../pipeline/errors.js';
import type { Plan, PlannedShard } from '../../schemas/plan.js';
import { parseRunConfig, type RunConfig } from '../config.js';
import { runJob, type JobOptions, type JobResult } from '../run-job.js';
import { dedupeEnabled, globalDedupeBarrier } from './dedupe-barrier.js';
import path from 'node:path';
import {
  isComplete,
  markComplete,
  planFile,
  planWorkDir,
  rankDir,
  rankName,
  rankPath,
  startHeartbeat,
} from './layout.js';
import { useStorage } from '../storage.js';

export interface RankRunOptions extends Omit<JobOptions, 'shards' | 'dedupeStages'> {
  /** Longest wait at the dedupe barrier, for the other ranks' keys and then the global step (seconds). */
  readonly dedupeWaitSeconds: number;
  /** A dedupe lock older than this, whose holder is not seen alive, is taken over (seconds). */
  readonly lockStaleSeconds: number;
  /** How often the shared folder is polled while waiting (seconds; default 2). */
  readonly pollSeconds?: number;
  /** Every rank this process runs (`--ranks`): their dedupe keys are written before any of them waits. */
  readonly processRanks?: readonly number[];
}

export type RankOutcome =
  | { readonly rank: number; readonly status: 'already-complete' }
  | { readonly rank: number; readonly status: 'ran'; readonly result: JobResult | undefined };

/** The rank's shards, in plan order, under the plan's labels. */
export function rankShards(plan: Plan, rank: number): PlannedShard[] {
  return plan.shards.filter((s) => s.rank === rank);
}

/** The plan's resolved config with the rank's input (its shards' paths) and output (`ranks/NNNNN`). */
export function rankConfig(plan: Plan, root: string, rank: number): RunConfig {
  const input = rankShards(plan, rank).map((s) => s.path);
  // The ranks share the LLM servers: each takes its share of a queueing one (llm.processes, llm/saturation.ts).
  const llm = (plan.config.llm ?? {}) as Record<string, unknown>;
  const processes = typeof llm.processes === 'number' && llm.processes !== 1 ? llm.processes : plan.worldSize;
  // A bucket root: each rank needs its own local working folder (ranks of one machine would share the plan's).
  const storage = (plan.config.storage ?? {}) as Record<string, unknown>;
  const workDir = planWorkDir(plan);
  const own = workDir === undefined ? {} : { workDir: path.join(workDir, rankPath(rank)) };
  return parseRunConfig(
    {
      ...plan.config,
      llm: { ...llm, processes },
      storage: { ...storage, ...own },
      input,
      output: rankDir(root, rank),
    },
    planFile(root),
  );
}

/**
 * Refuses (AIR_PLAN_STALE) shards whose size, mtime or footer differ from the plan's record: the plan's rows,
 * ranks and other ranks' dedupe decisions were made over the files as they were.
 */
export async function checkShardsUnchanged(shards: readonly PlannedShard[]): Promise<void> {
  const changed: string[] = [];
  for (const s of shards) {
    const now = await shardIdentity({ path: s.path, label: s.label, size: s.size }).catch(() => undefined);
    if (now === undefined) {
      changed.push(`${s.label} (missing)`);
      continue;
    }
    const keys = (['size', 'mtimeMs', 'footerHash'] as const)
      .filter((k) => now[k] !== s[k])
      .map((k) => identityFieldName(k, s.footerHash));
    if (keys.length > 0) changed.push(`${s.label} (${keys.join(', ')})`);
  }
  if (changed.length > 0) {
    const shown =
      changed.slice(0, 3).join(', ') + (changed.length > 3 ? ` and ${changed.length - 3} more` : '');
    throw new AirError(
      'AIR_PLAN_STALE',
      `shards changed since the plan was made: ${shown}; plan again (air plan --force) before running ranks`,
    );
  }
}

/**
 * Runs one rank of a plan: an ordinary run of the plan's config over the rank's shards into `ranks/NNNNN`
 * (resume, ledger and stats as any run), with a heartbeat while it runs and a completion once it completed.
 * With dedupe on, stage 0 drops what the global step listed (dedupe-barrier.ts) instead of deduping locally.
 */
export async function runRank(
  root: string,
  plan: Plan,
  rank: number,
  options: RankRunOptions,
): Promise<RankOutcome> {
  if (await isComplete(root, rank, plan.fingerprint)) return { rank, status: 'already-complete' };
  const planned = rankShards(plan, rank);
  if (planned.length === 0) {
    // More ranks than shards: nothing to read, and nothing the others wait on.
    options.log?.(`rank ${rankName(rank)}: no shards in the plan; marked complete`);
    await markComplete(root, rank, { fingerprint: plan.fingerprint, rowsWritten: 0 });
    return { rank, status: 'ran', result: undefined };
  }
  // A rank without shards has no input: its config would not parse (nor need storage).
  const config = rankConfig(plan, root, rank);
  useStorage(config);
  await checkShardsUnchanged(planned);
  const shards: Shard[] = planned.map((s) => ({ path: s.path, label: s.label, size: s.size }));
  const heartbeat = await startHeartbeat(root, rank);
  try {
    const dedupeStages = dedupeEnabled(config.dedupe)
      ? await globalDedupeBarrier({
          root,
          plan,
          rank,
          config,
          timeoutSeconds: options.dedupeWaitSeconds,
          lockStaleSeconds: options.lockStaleSeconds,
          pollSeconds: options.pollSeconds,
          keyRanks: options.processRanks,
          signal: options.signal,
          log: options.log,
        })
      : undefined;
    const result = await runJob(config, { ...options, shards, dedupeStages });
    if (result.report.status === 'completed') {
      await markComplete(root, rank, {
        fingerprint: plan.fingerprint,
        rowsWritten: result.report.totals.rowsWritten,
      });
    }
    return { rank, status: 'ran', result };
  } finally {
    await heartbeat.stop();
  }
}
