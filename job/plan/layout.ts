import os from 'node:os';
import path from 'node:path';
import {
  completionSchema,
  heartbeatSchema,
  type Completion,
  type Heartbeat,
  type Plan,
} from '../../schemas/plan.js';
import { jobRoot, type JobRoot } from './job-root.js';

/**
 * The folders of a job run by many ranks:
 *
 *   <root>/plan.json            the frozen plan (air plan)
 *   <root>/ranks/NNNNN/         each rank's output: an ordinary air output folder (parts, manifest.jsonl, ledger.json)
 *   <root>/completions/NNNNN    written by a rank when it finished (JSON: fingerprint, finishedAt, rowsWritten)
 *   <root>/heartbeats/NNNNN     rewritten by a running rank (pid, host, updatedAt); removed when it stops
 *
 * Completions and heartbeats live outside the rank folders so each of those stays exactly what `air run`
 * writes, and so listing one folder tells which ranks are done. `<root>` is a folder or an `s3://` prefix
 * (job-root.ts): the functions below take either.
 */
export const PLAN_FILE = 'plan.json';
export const RANKS_DIR = 'ranks';
export const COMPLETIONS_DIR = 'completions';
export const HEARTBEATS_DIR = 'heartbeats';

/** A heartbeat is rewritten this often… */
export const HEARTBEAT_SECONDS = 10;
/** …and a rank whose last sign of life is older than this is taken as interrupted (6 missed beats). */
export const STALE_AFTER_SECONDS = 60;

/** The plan's `storage.workDir`, if it sets one: where a bucket root's local folders go (job-root.ts). */
export function planWorkDir(plan: Plan): string | undefined {
  const workDir = (plan.config.storage as { workDir?: unknown } | undefined)?.workDir;
  return typeof workDir === 'string' ? workDir : undefined;
}

/** 5 digits, as datatrove and Slurm users expect (`00042`); larger ranks simply get more digits. */
export function rankName(rank: number): string {
  return String(rank).padStart(5, '0');
}

export function planFile(root: string): string {
  return jobRoot(root).at(PLAN_FILE);
}

/** The rank's output folder, relative to the root. */
export function rankPath(rank: number): string {
  return `${RANKS_DIR}/${rankName(rank)}`;
}

export function rankDir(root: string, rank: number): string {
  return jobRoot(root).at(rankPath(rank));
}

export function completionFile(root: string, rank: number): string {
  return jobRoot(root).at(completionPath(rank));
}

export function heartbeatFile(root: string, rank: number): string {
  return jobRoot(root).at(heartbeatPath(rank));
}

function completionPath(rank: number): string {
  return `${COMPLETIONS_DIR}/${rankName(rank)}`;
}

function heartbeatPath(rank: number): string {
  return `${HEARTBEATS_DIR}/${rankName(rank)}`;
}

/** Records that `rank` finished, atomically (a reader sees the whole file or none). */
export async function markComplete(
  root: string,
  rank: number,
  done: { fingerprint: string; rowsWritten: number; finishedAt?: Date },
): Promise<Completion> {
  const completion: Completion = {
    rank,
    fingerprint: done.fingerprint,
    finishedAt: (done.finishedAt ?? new Date()).toISOString(),
    rowsWritten: done.rowsWritten,
  };
  await jobRoot(root).writeText(completionPath(rank), `${JSON.stringify(completion)}\n`);
  return completion;
}

/** The completion file of `rank`; undefined when there is none or it cannot be read as one. */
export async function readCompletion(root: string, rank: number): Promise<Completion | undefined> {
  const parsed = completionSchema.safeParse(await readJson(jobRoot(root), completionPath(rank)));
  return parsed.success ? parsed.data : undefined;
}

/** Whether `rank` finished under the plan whose fingerprint is given (a completion of another plan does not count). */
export async function isComplete(root: string, rank: number, planFingerprint: string): Promise<boolean> {
  const completion = await readCompletion(root, rank);
  return completion !== undefined && completion.fingerprint === planFingerprint && completion.rank === rank;
}

export async function readHeartbeat(root: string, rank: number): Promise<Heartbeat | undefined> {
  const parsed = heartbeatSchema.safeParse(await readJson(jobRoot(root), heartbeatPath(rank)));
  return parsed.success ? parsed.data : undefined;
}

/**
 * Keeps `heartbeats/NNNNN` fresh while a rank runs, so `air status` on any machine can tell a running rank from
 * one whose process died (no coordinator: the shared folder is the only channel). `stop()` removes it.
 */
export async function startHeartbeat(
  root: string,
  rank: number,
  intervalSeconds = HEARTBEAT_SECONDS,
): Promise<{ stop: () => Promise<void> }> {
  return beatIn(jobRoot(root), heartbeatPath(rank), intervalSeconds);
}

/** The same heartbeat at any path (a queue unit's attempt keeps its own: job/queue/units.ts). */
export async function startHeartbeatAt(
  file: string,
  intervalSeconds = HEARTBEAT_SECONDS,
): Promise<{ stop: () => Promise<void> }> {
  return beatIn(jobRoot(path.dirname(file)), path.basename(file), intervalSeconds);
}

async function beatIn(
  root: JobRoot,
  name: string,
  intervalSeconds: number,
): Promise<{ stop: () => Promise<void> }> {
  const startedAt = new Date().toISOString();
  const beat = (): Promise<void> =>
    root.writeText(
      name,
      `${JSON.stringify({ pid: process.pid, host: os.hostname(), startedAt, updatedAt: new Date().toISOString() } satisfies Heartbeat)}\n`,
    );
  await beat();
  let writing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    // A missed beat (a full disk, a slow share) is not worth failing the rank for: the next one may land.
    writing = writing.then(beat).catch(() => {});
  }, intervalSeconds * 1000);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await writing;
      await root.remove(name);
    },
  };
}

/** A live process of ours on this machine, as far as this machine can tell; undefined for another host. */
export function processAlive(heartbeat: Heartbeat): boolean | undefined {
  if (heartbeat.host !== os.hostname()) return undefined;
  try {
    process.kill(heartbeat.pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readJson(root: JobRoot, name: string): Promise<unknown> {
  const text = await root.readText(name);
  try {
    return text === undefined ? undefined : (JSON.parse(text) as unknown);
  } catch {
    return undefined;
  }
}
