import { parseRunConfig, type RunConfig } from '../job/config.js';
import { planFile, rankDir, rankName } from '../job/plan/layout.js';
import { planRoot, readPlan } from '../job/plan/plan-file.js';
import { parseRankSpec, parseRanks, resolveRank } from '../job/plan/rank-env.js';
import { runRank, type RankOutcome, type RankRunOptions } from '../job/plan/run-rank.js';
import type { JobOptions, JobResult } from '../job/run-job.js';
import { AirError, UsageError } from '../pipeline/errors.js';
import type { Plan } from '../schemas/plan.js';
import { Option } from 'commander';
import { useStorageEndpoint } from '../job/storage.js';
import { EXIT } from './io.js';
import { settingsFromFlags, SETTING_FLAGS } from './setting-flags.js';

/** What `air run --plan` reads of its flags. */
export interface PlanRunFlags {
  readonly plan: string;
  readonly rank?: string;
  readonly ranks?: string;
  readonly dedupeWait?: number;
  readonly dedupeLockStale?: number;
  readonly input?: readonly string[];
  readonly output?: string;
  readonly config?: string;
  readonly resume?: string;
  readonly force?: boolean;
  readonly dedupe?: boolean;
  readonly guidanceUrl?: string;
  readonly guidanceModel?: string;
  readonly studentUrl?: string;
  readonly studentModel?: string;
  readonly apiKeyEnv?: string;
}

/** Defaults: ranks of a Slurm array may start hours apart; a global step over billions of rows takes long. */
export const DEDUPE_WAIT_SECONDS = 24 * 3600;
export const DEDUPE_LOCK_STALE_SECONDS = 3600;

/**
 * Settings a rank may set for itself; everything else is the plan's. `--s3-endpoint`: where this machine
 * reaches the bucket of an s3:// plan (it reads the plan there first; a result never depends on it).
 */
const OWN_SETTINGS = new Set(['progress', 'progressIntervalSeconds', 'storage.endpoint']);

/**
 * Runs one attempt with the CLI's signal handling and progress display: `start` gets the options to pass on,
 * and says whether a run happened (a rank already complete returns a line to print instead).
 */
export type RunOne = (
  config: RunConfig,
  start: (options: JobOptions) => Promise<JobResult | string>,
) => Promise<number>;

/**
 * `air run --plan <root>/plan.json --rank <n|auto>` or `--ranks 0-15` (one after another): each rank an
 * ordinary run of the plan's config over its shards into `ranks/NNNNN`. Stops at the first rank that does not
 * exit 0 and returns its code.
 */
export async function runPlanRanks(
  flags: PlanRunFlags & Readonly<Record<string, unknown>>,
  stderr: (text: string) => void,
  runOne: RunOne,
): Promise<number> {
  let plan: Plan;
  let root: string;
  let ranks: number[];
  let display: Record<string, unknown>;
  try {
    refuseForeignFlags(flags);
    display = settingsFromFlags(flags);
    const endpoint = (display.storage as { endpoint?: string } | undefined)?.endpoint;
    if (endpoint !== undefined) useStorageEndpoint(endpoint);
    root = await planRoot(flags.plan);
    plan = await readPlan(flags.plan);
    if (endpoint !== undefined) plan = withEndpoint(plan, endpoint);
    ranks = pickRanks(flags, plan);
  } catch (error) {
    stderr(`air: ${(error as Error).message}\n`);
    return EXIT.usage;
  }
  for (const rank of ranks) {
    const config = parseRunConfig(
      { ...plan.config, ...display, output: rankDir(root, rank) },
      planFile(root),
    );
    const options: Omit<RankRunOptions, keyof JobOptions> = {
      dedupeWaitSeconds: flags.dedupeWait ?? DEDUPE_WAIT_SECONDS,
      lockStaleSeconds: flags.dedupeLockStale ?? DEDUPE_LOCK_STALE_SECONDS,
      processRanks: ranks,
    };
    const code = await runOne(config, async (jobOptions) =>
      describe(await runRank(root, plan, rank, { ...jobOptions, ...options }), plan),
    );
    if (code !== 0) return code;
  }
  return 0;
}

/**
 * The plan holds the input and every setting: any flag that would set them is refused, naming it. Only the
 * display settings (OWN_SETTINGS) and the --plan flags themselves are a rank's own.
 */
function refuseForeignFlags(flags: PlanRunFlags & Readonly<Record<string, unknown>>): void {
  const given: string[] = [];
  const own: ReadonlyArray<readonly [unknown, string]> = [
    [flags.input, '--input'],
    [flags.output, '--output'],
    [flags.config, '--config'],
    [flags.resume, '--resume'],
    [flags.force, '--force'],
    [flags.dedupe === false ? true : undefined, '--no-dedupe'],
    [flags.guidanceUrl, '--guidance-url'],
    [flags.guidanceModel, '--guidance-model'],
    [flags.studentUrl, '--student-url'],
    [flags.studentModel, '--student-model'],
    [flags.apiKeyEnv, '--api-key-env'],
  ];
  for (const [value, name] of own) if (value !== undefined) given.push(name);
  for (const flag of SETTING_FLAGS) {
    if (OWN_SETTINGS.has(flag.key)) continue;
    if (flags[new Option(flag.flags).attributeName()] !== undefined) given.push(flag.flags.split(' ')[0]!);
  }
  if (given.length > 0) {
    throw new UsageError(
      `${given.join(', ')} with --plan: the plan holds the input and every setting; plan again to change them`,
    );
  }
}

/** The plan with this machine's endpoint of the bucket in its storage section. */
function withEndpoint(plan: Plan, endpoint: string): Plan {
  const storage = (plan.config.storage ?? {}) as Record<string, unknown>;
  return { ...plan, config: { ...plan.config, storage: { ...storage, endpoint } } };
}

function pickRanks(flags: PlanRunFlags, plan: Plan): number[] {
  if ((flags.rank === undefined) === (flags.ranks === undefined)) {
    throw new UsageError('--plan needs exactly one of --rank <n|auto> and --ranks <list>');
  }
  if (flags.ranks !== undefined) return parseRanks(flags.ranks, plan.worldSize);
  return [resolveRank(parseRankSpec(flags.rank!), process.env, plan.worldSize).rank];
}

function describe(outcome: RankOutcome, plan: Plan): JobResult | string {
  if (outcome.status === 'already-complete') {
    return `rank ${rankName(outcome.rank)} is already complete (plan fingerprint ${plan.fingerprint}); nothing to do`;
  }
  return outcome.result ?? `rank ${rankName(outcome.rank)} has no shards in the plan; marked complete`;
}

/** Exit 2 for refusals before any row is read: a stale plan, like a usage error. */
export function isPlanRefusal(error: unknown): boolean {
  return error instanceof AirError && error.code === 'AIR_PLAN_STALE';
}
