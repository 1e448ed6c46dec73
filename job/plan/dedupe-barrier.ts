import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { heartbeatSchema, type Heartbeat, type Plan } from '../../schemas/plan.js';
import type { RunConfig } from '../config.js';
import {
  dedupeSettings,
  filterSettings,
  globalDedupeStages,
  GlobalDedupeError,
  keyFileNames,
  keyMetaMatches,
  readRankDropLists,
  SUMMARY_FILE,
  writeDedupeKeys,
  type DedupeSettings,
} from '../global-dedupe/index.js';
import type { DocumentStage } from '../stages/document-stages.js';
import { findGlobalDuplicatesInThread } from '../global-dedupe/step-thread.js';
import { jobRoot, type JobRoot } from './job-root.js';
import { planWorkDir, processAlive, rankName } from './layout.js';

/** `<root>/dedupe/lock`: held by the one rank running the global step (pid, host, times: a Heartbeat). */
export const DEDUPE_LOCK = 'lock';

const KEYS = 'dedupe/keys';
const LOCK = `dedupe/${DEDUPE_LOCK}`;
const SUMMARY = `dedupe/${SUMMARY_FILE}`;
const dropListName = (index: number): string => `dedupe/drops/${index}.jsonl`;

export interface DedupeBarrierOptions {
  readonly root: string;
  readonly plan: Plan;
  readonly rank: number;
  /**
   * The ranks whose keys this process writes before it waits (default: `rank` alone). `--ranks 0-3` runs its
   * ranks one after another: each must key all four first, or rank 0 would wait for keys no one is writing.
   */
  readonly keyRanks?: readonly number[];
  /** The rank's run config (the plan's, with the rank's input and output). */
  readonly config: RunConfig;
  /** Longest wait for the other ranks' keys, then again for the global step (seconds). */
  readonly timeoutSeconds: number;
  /** A lock older than this whose holder cannot be seen alive is taken over (seconds). */
  readonly lockStaleSeconds: number;
  /** How often the shared folder is looked at while waiting (seconds; default 2). */
  readonly pollSeconds?: number;
  readonly signal?: AbortSignal;
  readonly log?: (line: string) => void;
}

/** Whether stage 0 dedupes at all: with every step off, ranks need no barrier. */
export function dedupeEnabled(dedupe: RunConfig['dedupe']): boolean {
  return dedupe.ids || dedupe.exact || dedupe.near.enabled;
}

/**
 * Global dedupe for one rank, with no coordinator (the shared folder is the only channel):
 *
 * 1. the keys pass over the rank's shards whose key files are not complete (a restarted rank redoes only those);
 * 2. wait until every shard of the plan has complete key files;
 * 3. the first rank to create `<root>/dedupe/lock` (O_EXCL) runs the global step; the others wait for its
 *    `summary.json`. A lock whose holder is dead (same host) or older than `lockStaleSeconds` (another host:
 *    its liveness cannot be seen) is removed by one rank (under `lock.takeover`), and the race starts again;
 * 4. the rank's drop lists, as stage 0's dedupe steps.
 *
 * Skipped (1-3) when the summary of this plan's global step is already there.
 */
export async function globalDedupeBarrier(options: DedupeBarrierOptions): Promise<DocumentStage[]> {
  const root = jobRoot(options.root, planWorkDir(options.plan));
  try {
    return await barrier(options, root);
  } finally {
    // Also on a failure or a stop: a bucket root's local copies (every key file, for a step's holder) go.
    await root.dispose();
  }
}

async function barrier(options: DedupeBarrierOptions, root: JobRoot): Promise<DocumentStage[]> {
  const { plan, rank, config } = options;
  const labels = plan.shards.map((s) => s.label);
  const settings = dedupeSettings(config.dedupe);
  const filters = filterSettings(config);
  const mine = plan.shards.filter((s) => s.rank === rank);
  // A shard found keyed stays keyed for this plan's settings: each poll reads only the metas of new ones.
  const confirmed = new Set<number>();
  const pendingShards = async (): Promise<typeof plan.shards> => {
    const listed = await root.names(KEYS);
    const pending = [];
    for (const s of plan.shards) {
      if (confirmed.has(s.index)) continue;
      const name = `${s.index}.json`;
      const text = listed.has(name) ? await root.readText(`${KEYS}/${name}`) : undefined;
      if (text !== undefined && keyMetaMatches(parseJson(text), s.index, s.label, settings, filters)) {
        confirmed.add(s.index);
      } else pending.push(s);
    }
    return pending;
  };

  // Keys of other settings (a plan replaced with --force) are not keys of this plan, nor is their summary.
  if (!((await summaryDone(root, labels, settings)) && (await pendingShards()).length === 0)) {
    const keyRanks = new Set(options.keyRanks ?? [rank]);
    const missing = (await pendingShards()).filter((s) => keyRanks.has(s.rank));
    if (missing.length > 0) {
      // A summary over keys about to be rewritten must not let a rank through once they are.
      await root.remove(SUMMARY);
      options.log?.(`rank ${rankName(rank)}: dedupe keys pass over ${missing.length} shards`);
      await writeDedupeKeys({
        root: root.localDir,
        shards: missing.map((s) => ({
          index: s.index,
          shard: { path: s.path, label: s.label, size: s.size },
        })),
        config,
        signal: options.signal,
        log: options.log,
      });
      // A bucket root: each shard's files go up, its meta last, so no reader sees half a shard's keys.
      for (const s of missing) {
        for (const name of keyFileNames(s.index, settings)) await root.push(`${KEYS}/${name}`);
      }
    }
    await waitFor(options, 'the other ranks’ dedupe keys', async () => {
      const pending = await pendingShards();
      if (pending.length === 0) return undefined;
      const ranks = [...new Set(pending.map((s) => s.rank))].slice(0, 8).join(', ');
      return `${labels.length - pending.length} of ${labels.length} shards keyed (waiting on ranks ${ranks})`;
    });
    await runOrAwaitGlobalStep(options, root, labels, settings);
  }
  // The summary too: the lists are read only under a summary naming the rank's shards.
  for (const name of [SUMMARY, ...mine.map((s) => dropListName(s.index))]) await root.pull(name);
  const lists = await readRankDropLists(
    root.localDir,
    mine.map((s) => ({ index: s.index, label: s.label })),
  );
  return globalDedupeStages(lists, config.dedupe);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The global step's summary exists and covers exactly this plan's shards, deduped with these settings. */
async function summaryDone(
  root: JobRoot,
  labels: readonly string[],
  settings: DedupeSettings,
): Promise<boolean> {
  const text = await root.readText(SUMMARY);
  const summary = (text === undefined ? undefined : parseJson(text)) as
    { shards?: unknown; dedupe?: unknown } | undefined;
  return (
    summary !== undefined &&
    JSON.stringify(summary.shards) === JSON.stringify(labels) &&
    JSON.stringify(summary.dedupe) === JSON.stringify(settings)
  );
}

async function runOrAwaitGlobalStep(
  options: DedupeBarrierOptions,
  root: JobRoot,
  labels: readonly string[],
  settings: DedupeSettings,
): Promise<void> {
  const { rank } = options;
  await waitFor(options, 'the global dedupe step', async () => {
    if (await summaryDone(root, labels, settings)) return undefined;
    const held = await tryLock(root, LOCK);
    if (held !== undefined) {
      try {
        // Rechecked under the lock: a holder writes the summary before it lets go of the lock.
        if (!(await summaryDone(root, labels, settings))) {
          options.log?.(
            `rank ${rankName(rank)}: running the global dedupe step over ${labels.length} shards`,
          );
          await withLockRefreshed(root, options.lockStaleSeconds, () =>
            globalStep(options, root, labels, settings),
          );
        }
      } finally {
        await releaseLock(root, LOCK, held);
      }
      return undefined;
    }
    const holder = await lockHolder(root, LOCK);
    if (holder !== undefined && isStale(holder, options.lockStaleSeconds)) {
      options.log?.(
        `rank ${rankName(rank)}: taking over the dedupe lock of pid ${holder.lock?.pid ?? '?'} on ` +
          `${holder.lock?.host ?? '?'} (${holder.ageSeconds.toFixed(0)} s old, holder not seen alive)`,
      );
      await takeOver(root, holder, options.lockStaleSeconds);
      return 'retrying';
    }
    const who = holder?.lock === undefined ? '' : ` (pid ${holder.lock.pid} on ${holder.lock.host})`;
    return `another rank runs the global dedupe step${who}`;
  });
}

/**
 * The global step in the root's local folder. A bucket root: every shard's key files come down first, and the
 * drop lists go up after it, then the summary last (what the other ranks wait for). The step is deterministic,
 * so two ranks that both ran it (a server that ignores If-None-Match) upload the same bytes.
 */
async function globalStep(
  options: DedupeBarrierOptions,
  root: JobRoot,
  labels: readonly string[],
  settings: DedupeSettings,
): Promise<void> {
  const keyFiles = labels.flatMap((_, index) => keyFileNames(index, settings).map((n) => `${KEYS}/${n}`));
  for (const name of keyFiles) await root.pull(name);
  await findGlobalDuplicatesInThread(root.localDir, labels, { log: options.log, signal: options.signal });
  for (let index = 0; index < labels.length; index++) await root.push(dropListName(index));
  await root.push(SUMMARY);
  for (const name of keyFiles) await root.release(name);
}

/**
 * Runs `work` while touching the lock's time often enough that no rank judges it stale: a holder on another
 * host is judged by age alone, and the step can outlast the stale window on a large job.
 */
async function withLockRefreshed<T>(root: JobRoot, staleSeconds: number, work: () => Promise<T>): Promise<T> {
  const everyMs = Math.max(1, Math.min(60, staleSeconds / 4)) * 1000;
  let touching: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    // A missed touch is retried at the next tick.
    touching = touching.then(() => root.touch(LOCK)).catch(() => {});
  }, everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
    // A bucket's touch is a read and a rewrite: one still running after the release would put the lock back.
    await touching;
  }
}

/**
 * Removes a stale lock under a second lock (`lock.takeover`), rechecking it there: two ranks that both judged it
 * stale cannot remove it twice, the second one a fresh holder's. A takeover lock left by a crash is removed
 * once older than the stale window.
 */
async function takeOver(root: JobRoot, judged: LockHolder, staleSeconds: number): Promise<void> {
  const takeover = `${LOCK}.takeover`;
  const held = await tryLock(root, takeover);
  if (held === undefined) {
    const other = await lockHolder(root, takeover);
    if (other !== undefined && isStale(other, staleSeconds)) await root.remove(takeover);
    return;
  }
  try {
    const now = await lockHolder(root, LOCK);
    const same =
      now !== undefined &&
      JSON.stringify(now.lock) === JSON.stringify(judged.lock) &&
      isStale(now, staleSeconds);
    if (same) await root.remove(LOCK);
  } finally {
    await releaseLock(root, takeover, held);
  }
}

/** Creates the lock (exclusive create); what it holds, or undefined when another rank has it. */
async function tryLock(root: JobRoot, lock: string): Promise<Heartbeat | undefined> {
  const now = new Date().toISOString();
  const held: Heartbeat = { pid: process.pid, host: os.hostname(), startedAt: now, updatedAt: now };
  return (await root.createExclusive(lock, `${JSON.stringify(held)}\n`)) ? held : undefined;
}

/** Removes the lock only while it is still the one we wrote: a rank that took it over stale keeps its own. */
async function releaseLock(root: JobRoot, lock: string, held: Heartbeat): Promise<void> {
  const now = await lockHolder(root, lock);
  if (now !== undefined && JSON.stringify(now.lock) === JSON.stringify(held)) await root.remove(lock);
}

interface LockHolder {
  /** Undefined while the holder is still writing it (or it was torn by a crash). */
  readonly lock: Heartbeat | undefined;
  readonly ageSeconds: number;
}

async function lockHolder(root: JobRoot, lock: string): Promise<LockHolder | undefined> {
  const [text, info] = await Promise.all([root.readText(lock), root.stat(lock)]);
  if (text === undefined || info === undefined) return undefined; // released meanwhile
  const result = heartbeatSchema.safeParse(parseJson(text));
  return {
    lock: result.success ? result.data : undefined,
    ageSeconds: (Date.now() - info.modifiedMs) / 1000,
  };
}

/** Dead on this host is stale at once; otherwise only age tells (another host's process cannot be seen). */
function isStale(holder: LockHolder, staleSeconds: number): boolean {
  if (holder.lock !== undefined && processAlive(holder.lock) === false) return true;
  return holder.ageSeconds > staleSeconds;
}

/** How often a waiting rank says so, at most. */
const WAIT_LOG_SECONDS = 30;

/**
 * Polls `check` until it returns undefined (done). A string is what the rank waits on, logged when it changes
 * and every WAIT_LOG_SECONDS; 'retrying' polls again at once. Past the timeout: AIR_DEDUPE_TIMEOUT.
 */
async function waitFor(
  options: DedupeBarrierOptions,
  what: string,
  check: () => string | 'retrying' | undefined | Promise<string | 'retrying' | undefined>,
): Promise<void> {
  const started = Date.now();
  const pollMs = (options.pollSeconds ?? 2) * 1000;
  let lastLine = '';
  let lastLogged = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    const state = await check();
    if (state === undefined) return;
    if (state === 'retrying') {
      // Another rank may be mid-takeover: a moment, not a poll interval, then look again.
      await sleep(50, undefined, { signal: options.signal });
      continue;
    }
    const now = Date.now();
    if (state !== lastLine || now - lastLogged >= WAIT_LOG_SECONDS * 1000) {
      options.log?.(`rank ${rankName(options.rank)}: waiting for ${what}: ${state}`);
      lastLine = state;
      lastLogged = now;
    }
    if (now - started > options.timeoutSeconds * 1000) {
      throw new GlobalDedupeError(
        'AIR_DEDUPE_TIMEOUT',
        `rank ${options.rank}: waited ${options.timeoutSeconds} s for ${what} (${state}); ` +
          'start the missing ranks and run this one again, or raise --dedupe-wait',
      );
    }
    await sleep(pollMs, undefined, { signal: options.signal });
  }
}
