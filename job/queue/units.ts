import { link, mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { errorMessage, UsageError } from '../../pipeline/errors.js';
import { isObjectUrl } from '../../pipeline/io/object-store/url.js';
import { QueueError } from './errors.js';
import { FAILED_DIR } from '../../pipeline/io/failure-rows.js';
import { isDirectory, pathExists, writeAtomically } from '../../pipeline/io/files.js';
import { MANIFEST_FILE, readManifest } from '../../pipeline/io/manifest.js';
import { SqliteResponseCache } from '../../llm/cache.js';
import { DUPLICATES_FILE } from '../../report/stats/ledger-file.js';
import { heartbeatSchema, type Heartbeat, type Plan } from '../../schemas/plan.js';
import { LLM_CACHE_FILE } from '../llm.js';
import { rankName } from '../plan/layout.js';
import { queueUnitSchema, unitName, type QueueUnit } from './slices.js';

/**
 * The folders of a job run from a queue (`air enqueue`, `air worker`), beside the plan:
 *
 *   <root>/queue.json                         written by air enqueue: the queue's name and its units (a shard
 *                                             each, or slices of row groups of a big one: slices.ts)
 *   <root>/units/NNNNN/attempt-K/             one attempt at unit NNNNN (its number in queue.json): an ordinary
 *                                             air output folder, seeded from the newest earlier attempt
 *   <root>/units/NNNNN/attempt-K.owner        who made the attempt (pid, host, worker, BullMQ counters)
 *   <root>/units/NNNNN/attempt-K.heartbeat    rewritten while the attempt runs, removed when it stops
 *   <root>/units/NNNNN/complete               the attempt that counts, created once (link(2) fails if it exists)
 *
 * Every attempt writes its own folder, so two workers that run one unit at once (BullMQ's double run: a worker
 * whose lock expired goes on working) never write the same file, and the one completion marker decides which
 * attempt's rows the job has.
 */
export const QUEUE_FILE = 'queue.json';
export const UNITS_DIR = 'units';
export const UNIT_COMPLETE_FILE = 'complete';

const ATTEMPT = /^attempt-(\d+)$/;

export const QUEUE_FILE_VERSION = 2;

export const queueFileSchema = z.strictObject({
  air: z.literal('queue'),
  version: z.literal(QUEUE_FILE_VERSION),
  queue: z.string(),
  fingerprint: z.string(),
  /** Shards larger than this were cut into slices of row groups of at most this size. */
  sliceMB: z.number().positive(),
  units: z.array(queueUnitSchema),
  enqueuedAt: z.string(),
});
export type QueueFile = z.output<typeof queueFileSchema>;

export const unitCompletionSchema = z.strictObject({
  unit: z.number().int().nonnegative(),
  label: z.string(),
  attempt: z.string(),
  fingerprint: z.string(),
  finishedAt: z.string(),
  rowsWritten: z.number().int().nonnegative(),
});
export type UnitCompletion = z.output<typeof unitCompletionSchema>;

export function unitDir(root: string, unit: number): string {
  return path.join(root, UNITS_DIR, rankName(unit));
}

export function attemptDir(root: string, unit: number, attempt: string): string {
  return path.join(unitDir(root, unit), attempt);
}

export function attemptHeartbeatFile(root: string, unit: number, attempt: string): string {
  return `${attemptDir(root, unit, attempt)}.heartbeat`;
}

/**
 * The folder of a plan given as its root or its plan.json, for queue mode. A root in a bucket is refused:
 * attempts are made exclusive by mkdir and completion markers by link(2), which object storage has not.
 */
export async function queueRoot(given: string): Promise<string> {
  if (isObjectUrl(given)) {
    throw new UsageError(
      `${given}: queue mode needs the plan's root on a shared file system (a root in a bucket is for ranks: ` +
        'air run --plan <root> --rank N)',
    );
  }
  return (await isDirectory(given)) ? given : path.dirname(given);
}

/** The root was fed to a queue (air enqueue wrote queue.json): status and merge read units, not ranks. */
export async function readQueueFile(root: string): Promise<QueueFile | undefined> {
  if (isObjectUrl(root)) return undefined; // queue mode never runs on a bucket root (queueRoot)
  const file = path.join(root, QUEUE_FILE);
  if (!(await pathExists(file))) return undefined;
  const value = JSON.parse(await readFile(file, 'utf8')) as { version?: unknown };
  if (value.version !== QUEUE_FILE_VERSION && typeof value.version === 'number') {
    throw new QueueError(
      'AIR_QUEUE_INVALID',
      `${file}: written by another version of air (queue file version ${value.version}, this air reads ` +
        `${QUEUE_FILE_VERSION}); finish the job with that version, or plan and enqueue into a fresh folder`,
    );
  }
  const parsed = queueFileSchema.safeParse(value);
  if (!parsed.success) throw new QueueError('AIR_QUEUE_INVALID', `${file}: not an air queue file`);
  return parsed.data;
}

export async function writeQueueFile(root: string, queue: QueueFile): Promise<void> {
  await writeAtomically(path.join(root, QUEUE_FILE), `${JSON.stringify(queue, null, 2)}\n`);
}

/** The unit's attempts, oldest first. */
export async function listAttempts(root: string, unit: number): Promise<string[]> {
  const names = await readdir(unitDir(root, unit)).catch(() => [] as string[]);
  return names
    .filter((n) => ATTEMPT.test(n))
    .sort((a, b) => Number(ATTEMPT.exec(a)![1]) - Number(ATTEMPT.exec(b)![1]));
}

/**
 * Makes the unit's next attempt folder. mkdir is exclusive: two workers racing for one number get one each.
 * `owner` says who made it (written beside the folder, so the folder stays an ordinary output folder).
 */
export async function newAttempt(
  root: string,
  unit: number,
  owner: Readonly<Record<string, unknown>>,
): Promise<string> {
  await mkdir(unitDir(root, unit), { recursive: true });
  for (;;) {
    const taken = await listAttempts(root, unit);
    const last = taken.at(-1);
    const name = `attempt-${last === undefined ? 1 : Number(ATTEMPT.exec(last)![1]) + 1}`;
    try {
      await mkdir(attemptDir(root, unit, name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    const who = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString(), ...owner };
    await writeFile(`${attemptDir(root, unit, name)}.owner`, `${JSON.stringify(who)}\n`);
    return name;
  }
}

/**
 * Starts `attempt` from the committed work of the newest earlier attempt that has any: its manifest's complete
 * lines are copied, and the part files, failure parts and duplicate notes they name are hard-linked (never
 * rewritten in place: an earlier attempt still running cannot change them). The ordinary resume then goes on
 * from there. The earlier attempt's response cache is added too, so its answered calls are not asked again.
 * Returns the attempt seeded from, or undefined for a fresh start.
 */
export async function seedAttempt(root: string, unit: number, attempt: string): Promise<string | undefined> {
  const earlier = (await listAttempts(root, unit)).filter((a) => a !== attempt).reverse();
  const target = attemptDir(root, unit, attempt);
  for (const from of earlier) {
    const source = attemptDir(root, unit, from);
    const text = await readFile(path.join(source, MANIFEST_FILE), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    // Only whole lines: the earlier attempt may be appending (a double run) or have died mid-line.
    const whole = text.slice(0, text.lastIndexOf('\n') + 1);
    if (whole === '') continue;
    await writeFile(path.join(target, MANIFEST_FILE), whole);
    const manifest = await readManifest(target);
    if (manifest === undefined) continue;
    await mkdir(path.join(target, FAILED_DIR), { recursive: true });
    for (const commit of manifest.commits) {
      for (const file of [commit.part, commit.failedPart]) {
        if (file !== null) await link(path.join(source, file), path.join(target, file));
      }
    }
    // A resume reopens the notes file at the committed length (none committed: empty, but there).
    const notesBytes = manifest.commits.at(-1)?.notesBytes ?? 0;
    const notes =
      notesBytes === 0
        ? Buffer.alloc(0)
        : (await readFile(path.join(source, DUPLICATES_FILE))).subarray(0, notesBytes);
    await writeFile(path.join(target, DUPLICATES_FILE), notes);
    await absorbCache(source, target);
    return from;
  }
  return undefined;
}

/** Best effort: a cache a killed process left mid-write may not open; its calls are then simply asked again. */
async function absorbCache(source: string, target: string): Promise<void> {
  const from = path.join(source, LLM_CACHE_FILE);
  if (!(await pathExists(from))) return;
  try {
    const cache = SqliteResponseCache.open(path.join(target, LLM_CACHE_FILE));
    try {
      cache.absorb(from);
    } finally {
      cache.close();
    }
  } catch {
    // the attempt runs without the earlier answers
  }
}

/**
 * Marks `attempt` as the one that counts for the unit, unless another attempt already does: the marker is
 * written whole to a temporary file, then linked to its name (link fails when the name exists), so it is
 * created once, never torn. Returns the marker that counts (this attempt's or the earlier one).
 */
export async function markUnitComplete(
  root: string,
  completion: UnitCompletion,
): Promise<{ counted: boolean; completion: UnitCompletion }> {
  const dir = unitDir(root, completion.unit);
  const file = path.join(dir, UNIT_COMPLETE_FILE);
  const temporary = path.join(dir, `.${UNIT_COMPLETE_FILE}.${completion.attempt}.tmp`);
  const handle = await open(temporary, 'w');
  try {
    await handle.writeFile(`${JSON.stringify(completion)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temporary, file);
    return { counted: true, completion };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const existing = await readUnitCompletion(root, completion.unit);
    if (existing === undefined) throw new QueueError('AIR_QUEUE_INVALID', `${file}: unreadable`);
    return { counted: false, completion: existing };
  } finally {
    await rm(temporary, { force: true });
  }
}

export async function readUnitCompletion(root: string, unit: number): Promise<UnitCompletion | undefined> {
  try {
    const text = await readFile(path.join(unitDir(root, unit), UNIT_COMPLETE_FILE), 'utf8');
    const parsed = unitCompletionSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export async function readAttemptHeartbeat(
  root: string,
  unit: number,
  attempt: string,
): Promise<Heartbeat | undefined> {
  try {
    const text = await readFile(attemptHeartbeatFile(root, unit, attempt), 'utf8');
    const parsed = heartbeatSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** A complete unit's output folder, or undefined (no marker, or one of another plan). */
export async function countedAttempt(root: string, plan: Plan, unit: number): Promise<string | undefined> {
  const done = await readUnitCompletion(root, unit);
  if (done === undefined || done.fingerprint !== plan.fingerprint || done.unit !== unit) return undefined;
  return attemptDir(root, unit, done.attempt);
}

/**
 * The output folder of every unit's counted attempt, in plan order, for `air merge`; refuses
 * (AIR_UNITS_INCOMPLETE) naming the units not complete.
 */
export async function countedAttempts(
  root: string,
  plan: Plan,
  units: readonly QueueUnit[],
): Promise<Array<{ unit: number; label: string; dir: string }>> {
  const out: Array<{ unit: number; label: string; dir: string }> = [];
  const missing: string[] = [];
  for (const unit of units) {
    const dir = await countedAttempt(root, plan, unit.unit);
    if (dir === undefined) missing.push(rankName(unit.unit));
    else out.push({ unit: unit.unit, label: unitName(unit), dir });
  }
  if (missing.length > 0) {
    throw new QueueError(
      'AIR_UNITS_INCOMPLETE',
      `${root}: ${missing.length} of ${units.length} units are not complete (` +
        `${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', …' : ''}); run workers ` +
        `(air status ${root} shows where they stand)`,
    );
  }
  return out;
}

/** One line for a seeding failure: the attempt then starts afresh rather than fail the unit. */
export function seedFailure(error: unknown): string {
  return `could not continue from the earlier attempt (${errorMessage(error)}); starting afresh`;
}
