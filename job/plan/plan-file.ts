import path from 'node:path';
import { AirError, ConfigError, UsageError, errorMessage } from '../../pipeline/errors.js';
import { shardIdentity } from '../../pipeline/io/manifest.js';
import { isObjectUrl } from '../../pipeline/io/object-store/url.js';
import { FOOTERS_IN_FLIGHT, readFooter } from '../../pipeline/io/parquet-footer.js';
import { resolveShards, type Shard } from '../../pipeline/io/shards.js';
import { isDirectory } from '../../pipeline/io/files.js';
import { planSchema, PLAN_VERSION, type Plan, type PlannedShard } from '../../schemas/plan.js';
import { parseRunConfig, type RunConfig } from '../config.js';
import { resultSettings } from '../../schemas/settings.js';
import { configFingerprint, differingSettings } from '../fingerprint.js';
import { useStorage } from '../storage.js';
import { assignByBytes } from './assign.js';
import { jobRoot } from './job-root.js';
import { PLAN_FILE, planFile } from './layout.js';
import { mapConcurrent } from '../../pipeline/concurrent.js';

/**
 * Lists the config's input once and freezes it: each shard's identity (as a resume checks it), its rows from
 * the footer, and its rank (balanced by bytes, see assign.ts). `config.output` is the plan's root.
 */
export async function buildPlan(config: RunConfig, worldSize: number, now = new Date()): Promise<Plan> {
  if (config.source.limit !== undefined) {
    // A limit counts rows across every shard in one process: each rank would read its own `limit` rows.
    throw new UsageError('source.limit cannot be split across ranks; plan without it');
  }
  if (config.sample.diversity.enabled) {
    // Farthest-point selection compares every document with every other: N ranks would select N times `keep`.
    throw new UsageError(
      'sample.diversity selects among all documents at once and cannot be split across ranks; plan without ' +
        'it (sample.preSample, decided per document or per shard, splits exactly)',
    );
  }
  useStorage(config);
  const listed = await resolveShards(config.input);
  const planned = await mapConcurrent(listed, FOOTERS_IN_FLIGHT, (shard) => describeShard(shard));
  const assignment = assignByBytes(planned, worldSize);
  const shards: PlannedShard[] = planned.map((s, index) => ({
    ...s,
    index,
    rank: assignment.rankOf[index]!,
  }));
  const ranks = assignment.shardsOf.map((indexes, rank) => ({
    rank,
    shards: indexes.map((i) => shards[i]!.label),
    bytes: assignment.bytes[rank]!,
    rows: indexes.reduce((sum, i) => sum + shards[i]!.rows, 0),
  }));
  return {
    version: PLAN_VERSION,
    createdAt: now.toISOString(),
    worldSize,
    fingerprint: configFingerprint(config),
    config: config as unknown as Record<string, unknown>,
    shards,
    ranks,
    totals: {
      shards: shards.length,
      bytes: shards.reduce((sum, s) => sum + s.size, 0),
      rows: shards.reduce((sum, s) => sum + s.rows, 0),
    },
  };
}

async function describeShard(shard: Shard): Promise<Omit<PlannedShard, 'index' | 'rank'>> {
  const identity = await shardIdentity(shard);
  const rows = Number((await readFooter(shard)).num_rows);
  return { label: shard.label, path: shard.path, ...pick(identity), rows };
}

function pick(identity: { size: number; mtimeMs: number; footerHash: string }) {
  return { size: identity.size, mtimeMs: identity.mtimeMs, footerHash: identity.footerHash };
}

/**
 * What makes `next` another plan than `existing`, in one line; undefined when they are the same plan (the same
 * world size, result settings and shards with the same identities and ranks). createdAt and paths do not count:
 * the same shards mounted elsewhere are the same plan.
 */
export function planDifference(existing: Plan, next: Plan): string | undefined {
  if (existing.worldSize !== next.worldSize) {
    return `world size ${existing.worldSize} -> ${next.worldSize}`;
  }
  if (existing.fingerprint !== next.fingerprint) {
    const keys = settingsDiffering(existing, next);
    return `config fingerprint ${existing.fingerprint} -> ${next.fingerprint}${keys === '' ? '' : ` (${keys})`}`;
  }
  const before = new Map(existing.shards.map((s) => [s.label, s]));
  const after = new Map(next.shards.map((s) => [s.label, s]));
  const added = [...after.keys()].filter((l) => !before.has(l));
  const removed = [...before.keys()].filter((l) => !after.has(l));
  const changed = [...after.values()].flatMap((s) => {
    const then = before.get(s.label);
    if (then === undefined) return [];
    const keys = (['size', 'mtimeMs', 'footerHash', 'rows'] as const).filter((k) => then[k] !== s[k]);
    return keys.length === 0 ? [] : [`${s.label} (${keys.join(', ')})`];
  });
  const parts = [listed('added', added), listed('removed', removed), listed('changed', changed)].filter(
    (p) => p !== '',
  );
  if (parts.length > 0) return `shard listing differs: ${parts.join('; ')}`;
  // Same shards, same sizes: the ranks can only differ if the assignment rule changed.
  const moved = next.shards.filter((s) => before.get(s.label)!.rank !== s.rank).map((s) => s.label);
  return moved.length === 0 ? undefined : `shard ranks differ: ${listed('moved', moved)}`;
}

function listed(what: string, names: readonly string[]): string {
  if (names.length === 0) return '';
  const shown = names.slice(0, 3).join(', ');
  return `${what} ${shown}${names.length > 3 ? ` and ${names.length - 3} more` : ''}`;
}

function settingsDiffering(existing: Plan, next: Plan): string {
  try {
    const a = resultSettings(parseRunConfig(existing.config, PLAN_FILE));
    const b = resultSettings(parseRunConfig(next.config, PLAN_FILE));
    return differingSettings(a, b).join(', ');
  } catch {
    return ''; // a plan written by another version of air: the fingerprints alone say it differs
  }
}

export type PlanOutcome = 'written' | 'unchanged' | 'replaced';

/**
 * Writes `plan` to `<root>/plan.json` (atomically). A plan already there is kept when it is the same plan, and
 * refused (AIR_PLAN_MISMATCH) when it differs, unless `force`: ranks may already be running from it.
 */
export async function savePlan(root: string, plan: Plan, force = false): Promise<PlanOutcome> {
  const file = planFile(root);
  const text = await jobRoot(root).readText(PLAN_FILE);
  const existing = text === undefined ? undefined : parsePlanText(text, file);
  if (existing !== undefined) {
    const difference = planDifference(existing, plan);
    if (difference === undefined) return 'unchanged';
    if (!force) {
      throw new AirError(
        'AIR_PLAN_MISMATCH',
        `${file}: another plan is here (${difference}); ranks may be running from it. ` +
          'Plan into another folder, or pass --force to replace it',
      );
    }
  }
  // One PUT in a bucket, an atomic rename in a folder: ranks never read half a plan.
  await jobRoot(root).writeText(PLAN_FILE, `${JSON.stringify(plan, null, 2)}\n`);
  return existing === undefined ? 'written' : 'replaced';
}

/**
 * The root of a plan given as its root or its plan.json: a folder, or an `s3://` prefix (a key ending in
 * `.json` names the plan file itself, anything else the root).
 */
export async function planRoot(given: string): Promise<string> {
  if (isObjectUrl(given)) return given.endsWith('.json') ? given.slice(0, given.lastIndexOf('/') + 1) : given;
  return (await isDirectory(given)) ? given : path.dirname(given);
}

/** Reads and validates a plan: `root` is a plan's root or the plan.json file itself. Errors name the file. */
export async function readPlan(root: string): Promise<Plan> {
  const base = await planRoot(root);
  const name = base === root ? PLAN_FILE : isObjectUrl(root) ? root.slice(base.length) : path.basename(root);
  const file = jobRoot(base).at(name);
  const text = await jobRoot(base).readText(name);
  if (text === undefined) {
    throw new ConfigError(
      `${file}: no plan here (${name === PLAN_FILE ? 'run air plan first' : 'cannot read it'})`,
    );
  }
  return parsePlanText(text, file);
}

function parsePlanText(text: string, file: string): Plan {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${file}: not JSON (${errorMessage(error)})`);
  }
  return parsePlan(value, file);
}

/** Validates a plan read back from a file; the error names the file and the first bad field. */
export function parsePlan(value: unknown, source: string): Plan {
  const result = planSchema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const at = issue.path.length === 0 ? '' : ` at ${issue.path.join('.')}`;
  throw new ConfigError(`${source}: not an air plan version ${PLAN_VERSION}${at}: ${issue.message}`);
}
