import path from 'node:path';
import { MANIFEST_FILE, readManifest, type Manifest } from '../../pipeline/io/manifest.js';
import { countRows } from '../../pipeline/row-ranges.js';
import {
  PLAN_VERSION,
  type Heartbeat,
  type JobStatus,
  type Plan,
  type RankStatus,
} from '../../schemas/plan.js';
import { settledSoFar } from '../checkpoint.js';
import { jobRoot, type JobRoot } from './job-root.js';
import {
  processAlive,
  rankName,
  rankPath,
  readCompletion,
  readHeartbeat,
  STALE_AFTER_SECONDS,
} from './layout.js';
import { readPlan } from './plan-file.js';
import {
  attemptDir,
  listAttempts,
  readAttemptHeartbeat,
  readQueueFile,
  readUnitCompletion,
  unitDir,
} from '../queue/units.js';
import { unitName, type QueueUnit } from '../queue/slices.js';
import { LEDGER_FILE, readLedgerFile } from '../../report/stats/ledger-file.js';

export interface StatusOptions {
  /** Fixed for tests; default now. */
  readonly now?: Date;
  /** A rank with no sign of life for this long is interrupted (default STALE_AFTER_SECONDS). */
  readonly staleAfterSeconds?: number;
}

/**
 * Where every rank of the job in `root` stands, from the shared folder alone (no coordinator):
 *
 * - complete: `completions/NNNNN` exists and carries the plan's fingerprint (one of another plan does not count);
 * - not started: no rank folder and no heartbeat;
 * - running: its heartbeat (`heartbeats/NNNNN`) was rewritten within the stale window and, when it was written on
 *   this machine, its process is alive. A rank without a heartbeat is judged by the last write of its
 *   manifest.jsonl instead (a slow rank that commits rarely then shows as interrupted: ranks write heartbeats);
 * - interrupted: anything else with a folder: a stale heartbeat, a dead process, or a manifest that says
 *   complete without a completion file (the rank stopped before marking itself; running it again does).
 *
 * Rows settled come from each rank's manifest, as a resume counts them. A rank's rate is the rows it settled in
 * its current session (since its manifest's last header or resume entry) over the session's length.
 */
export async function jobStatus(root: string, options: StatusOptions = {}): Promise<JobStatus> {
  const files = jobRoot(root);
  try {
    return await statusOf(root, files, options);
  } finally {
    await files.dispose();
  }
}

async function statusOf(root: string, files: JobRoot, options: StatusOptions): Promise<JobStatus> {
  const plan = await readPlan(root);
  const now = options.now ?? new Date();
  const staleMs = (options.staleAfterSeconds ?? STALE_AFTER_SECONDS) * 1000;
  const queue = await readQueueFile(root);
  const queued = queue !== undefined;
  const ranks: RankStatus[] = [];
  if (queued) for (const unit of queue.units) ranks.push(await unitStatus(root, plan, unit, now, staleMs));
  else {
    for (const planned of plan.ranks) ranks.push(await rankStatus(files, plan, planned.rank, now, staleMs));
  }
  const { complete, totals } = summarise(ranks);
  return {
    version: PLAN_VERSION,
    root,
    at: now.toISOString(),
    worldSize: queued ? queue.units.length : plan.worldSize,
    mode: queued ? 'queue' : 'ranks',
    fingerprint: plan.fingerprint,
    complete,
    totals,
    ranks,
  };
}

/** What a rank left behind: its manifest, completion and heartbeat, and the fields every state reports. */
async function rankEvidence(root: JobRoot, plan: Plan, rank: number) {
  const planned = plan.ranks[rank]!;
  const dir = rankPath(rank);
  const manifest = await manifestOf(root, dir);
  const progress = manifest === undefined ? undefined : sessionProgress(manifest);
  const completion = await readCompletion(root.location, rank);
  const heartbeat = (await readHeartbeat(root.location, rank)) ?? null;
  const base = statusBase(rank, planned.shards.length, planned.rows, progress, heartbeat);
  return { root, planned, dir, manifest, progress, completion, heartbeat, base };
}

/** The manifest of output folder `dir` (relative to the root): a bucket root's comes down to its local folder. */
async function manifestOf(root: JobRoot, dir: string): Promise<Manifest | undefined> {
  if (!(await root.pull(`${dir}/${MANIFEST_FILE}`))) return undefined;
  return readManifest(path.join(root.localDir, dir)).catch(() => undefined);
}

/** A rank or unit with nothing written yet. */
function notStarted(base: ReturnType<typeof statusBase>, note: string | null): RankStatus {
  return { ...base, state: 'not-started', updatedAt: null, rowsPerSecond: null, etaSeconds: null, note };
}

/** The fields every state of a rank (or queue unit) reports: its plan share, what it settled, its heartbeat. */
function statusBase(
  rank: number,
  shards: number,
  plannedRows: number,
  progress: SessionProgress | undefined,
  heartbeat: Heartbeat | null,
) {
  return {
    rank,
    shards,
    plannedRows,
    settledRows: progress?.settledRows ?? 0,
    rowsWritten: progress?.rowsWritten ?? 0,
    startedAt: progress?.startedAt.toISOString() ?? null,
    heartbeat:
      heartbeat === null
        ? null
        : { pid: heartbeat.pid, host: heartbeat.host, updatedAt: heartbeat.updatedAt },
  };
}

type RankEvidence = Awaited<ReturnType<typeof rankEvidence>>;

async function rankStatus(
  root: JobRoot,
  plan: Plan,
  rank: number,
  now: Date,
  staleMs: number,
): Promise<RankStatus> {
  const evidence = await rankEvidence(root, plan, rank);
  const { completion, progress, planned, base, heartbeat, dir } = evidence;
  if (completion?.fingerprint === plan.fingerprint && completion.rank === rank) {
    const finishedAt = new Date(completion.finishedAt);
    return {
      ...base,
      state: 'complete',
      settledRows: planned.rows,
      rowsWritten: completion.rowsWritten,
      updatedAt: completion.finishedAt,
      rowsPerSecond:
        progress === undefined ? null : rate(progress.sessionRows, progress.startedAt, finishedAt),
      etaSeconds: 0,
      note: null,
    };
  }
  const staleCompletion =
    completion === undefined
      ? null
      : `completions/${rankName(rank)} is of another plan (fingerprint ${completion.fingerprint})`;
  if (!(await evidence.root.has(dir)) && heartbeat === null) {
    return notStarted(base, staleCompletion);
  }
  return unfinishedStatus(evidence, now, staleMs, staleCompletion);
}

/**
 * A queue unit (job/queue/units.ts) judged as a rank of one shard (or slice): complete when a marker names its
 * counted attempt; else by its newest attempt folder and that attempt's heartbeat; not started while it has none.
 */
async function unitStatus(
  root: string,
  plan: Plan,
  queued: QueueUnit,
  now: Date,
  staleMs: number,
): Promise<RankStatus> {
  const { unit } = queued;
  const shard = { label: unitName(queued), rows: queued.end - queued.start };
  const counted = await readUnitCompletion(root, unit);
  const done = counted?.fingerprint === plan.fingerprint ? counted : undefined;
  const attempt = done?.attempt ?? (await listAttempts(root, unit)).at(-1);
  const dir = attempt === undefined ? unitDir(root, unit) : attemptDir(root, unit, attempt);
  const manifest = attempt === undefined ? undefined : await readManifest(dir).catch(() => undefined);
  const progress = manifest === undefined ? undefined : sessionProgress(manifest);
  const heartbeat =
    attempt === undefined || done !== undefined
      ? null
      : ((await readAttemptHeartbeat(root, unit, attempt)) ?? null);
  const base = statusBase(unit, 1, shard.rows, progress, heartbeat);
  const files = jobRoot(root);
  if (done !== undefined) {
    return {
      ...base,
      state: 'complete',
      settledRows: shard.rows,
      rowsWritten: done.rowsWritten,
      updatedAt: done.finishedAt,
      rowsPerSecond:
        progress === undefined
          ? null
          : rate(progress.sessionRows, progress.startedAt, new Date(done.finishedAt)),
      etaSeconds: 0,
      note: `${shard.label}: ${done.attempt} counts`,
    };
  }
  if (attempt === undefined) {
    return notStarted(base, shard.label);
  }
  const status = await unfinishedStatus(
    {
      root: files,
      dir: path.relative(root, dir),
      heartbeat,
      manifest,
      progress,
      planned: { rows: shard.rows },
      base,
    },
    now,
    staleMs,
    null,
  );
  return { ...status, note: `${shard.label} ${attempt}${status.note === null ? '' : `: ${status.note}`}` };
}

/** A rank with a folder or a heartbeat and no completion: running while it shows signs of life, else interrupted. */
async function unfinishedStatus(
  {
    root,
    dir,
    heartbeat,
    manifest,
    progress,
    planned,
    base,
  }: Pick<RankEvidence, 'root' | 'dir' | 'heartbeat' | 'manifest' | 'progress' | 'base'> & {
    readonly planned: { readonly rows: number };
  },
  now: Date,
  staleMs: number,
  staleCompletion: string | null,
): Promise<RankStatus> {
  const lastWrite = heartbeat === null ? await manifestWrittenAt(root, dir) : new Date(heartbeat.updatedAt);
  const alive = heartbeat === null ? undefined : processAlive(heartbeat);
  const stopped =
    heartbeat === null ? await stoppedSession(root, dir, progress?.startedAt, lastWrite) : undefined;
  const fresh = lastWrite !== undefined && now.getTime() - lastWrite.getTime() <= staleMs;
  const running =
    stopped === undefined && fresh && alive !== false && (heartbeat !== null || manifest?.complete !== true);
  const updatedAt = lastWrite?.toISOString() ?? null;
  if (running) {
    const perSecond = progress === undefined ? null : rate(progress.sessionRows, progress.startedAt, now);
    const left = Math.max(0, planned.rows - base.settledRows);
    return {
      ...base,
      state: 'running',
      updatedAt,
      rowsPerSecond: perSecond,
      etaSeconds: perSecond === null ? null : left / perSecond,
      note: staleCompletion ?? (heartbeat === null ? 'no heartbeat: judged by its manifest.jsonl' : null),
    };
  }
  const why =
    stopped !== undefined
      ? `it stopped (ledger.json: ${stopped})`
      : alive === false
        ? `process ${heartbeat!.pid} on ${heartbeat!.host} is gone`
        : heartbeat === null && manifest?.complete === true
          ? 'its manifest is complete but it wrote no completion: run the rank again to mark it'
          : lastWrite === undefined
            ? 'nothing written yet'
            : `last sign of life ${Math.round((now.getTime() - lastWrite.getTime()) / 1000)}s ago`;
  return {
    ...base,
    state: 'interrupted',
    updatedAt,
    rowsPerSecond: null,
    etaSeconds: null,
    note: staleCompletion === null ? why : `${staleCompletion}; ${why}`,
  };
}

interface SessionProgress {
  readonly settledRows: number;
  readonly rowsWritten: number;
  /** The current session: the manifest's last header or resume entry. */
  readonly startedAt: Date;
  readonly sessionRows: number;
}

function sessionProgress(manifest: Manifest): SessionProgress {
  const { settled } = settledSoFar(manifest.entries);
  let settledRows = 0;
  for (const ranges of settled.values()) settledRows += countRows(ranges);
  let startedAt = new Date(manifest.header.createdAt);
  let sessionRows = 0;
  let rowsWritten = 0;
  for (const entry of manifest.entries) {
    if (entry.kind === 'resume') {
      startedAt = new Date(entry.at);
      sessionRows = 0;
    } else if (entry.kind === 'commit') {
      rowsWritten += entry.rows;
      for (const ranges of Object.values(entry.settled)) sessionRows += countRows(ranges);
    }
  }
  return { settledRows, rowsWritten, startedAt, sessionRows };
}

function rate(rows: number, from: Date, to: Date): number | null {
  const seconds = (to.getTime() - from.getTime()) / 1000;
  return rows > 0 && seconds > 0 ? rows / seconds : null;
}

/**
 * How the rank's last session ended, when it has ended: a rank stopped by a signal or failed removes its
 * heartbeat and writes ledger.json (`interrupted` or `failed`), so a fresh manifest alone does not make it
 * running. Judged by content: that ledger finished after the manifest's last session began (a new session begins
 * after the old ledger). Object times cannot tell: an s3:// output uploads the ledger before its final manifest.
 */
async function stoppedSession(
  root: JobRoot,
  dir: string,
  sessionStartedAt: Date | undefined,
  manifestAt: Date | undefined,
): Promise<string | undefined> {
  const name = `${dir}/${LEDGER_FILE}`;
  const info = await root.stat(name);
  if (info === undefined || !(await root.pull(name))) return undefined;
  const ledger = await readLedgerFile(path.join(root.localDir, name)).catch(() => undefined);
  if (ledger === undefined || ledger.status === 'completed') return undefined;
  const endedAt = ledger.finishedAt === undefined ? info.modifiedMs : Date.parse(ledger.finishedAt);
  const began = (ledger.finishedAt === undefined ? manifestAt : sessionStartedAt)?.getTime();
  if (began === undefined || endedAt < began) return undefined;
  return `${ledger.status}${ledger.finishedAt === undefined ? '' : ` at ${ledger.finishedAt}`}`;
}

async function manifestWrittenAt(root: JobRoot, dir: string): Promise<Date | undefined> {
  const info = await root.stat(`${dir}/${MANIFEST_FILE}`);
  return info === undefined ? undefined : new Date(info.modifiedMs);
}

/**
 * Totals, and the job's ETA: the slowest unfinished rank at the rates seen. A running rank goes by its own rate;
 * a rank not started or interrupted is assumed restarted now at the mean rate of the ranks that have one.
 */
function summarise(ranks: readonly RankStatus[]): Pick<JobStatus, 'complete' | 'totals'> {
  const count = (state: RankStatus['state']) => ranks.filter((r) => r.state === state).length;
  const sum = (f: (r: RankStatus) => number) => ranks.reduce((n, r) => n + f(r), 0);
  const rates = ranks.map((r) => r.rowsPerSecond).filter((x): x is number => x !== null);
  const meanRate = rates.length === 0 ? null : rates.reduce((a, b) => a + b, 0) / rates.length;
  const running = ranks.filter((r) => r.state === 'running' && r.rowsPerSecond !== null);
  let eta: number | null = 0;
  for (const r of ranks) {
    if (r.state === 'complete') continue;
    const own = r.state === 'running' ? r.etaSeconds : null;
    const assumed = meanRate === null ? null : Math.max(0, r.plannedRows - r.settledRows) / meanRate;
    const rankEta = own ?? assumed;
    eta = eta === null || rankEta === null ? null : Math.max(eta, rankEta);
  }
  return {
    complete: ranks.every((r) => r.state === 'complete'),
    totals: {
      complete: count('complete'),
      running: count('running'),
      interrupted: count('interrupted'),
      notStarted: count('not-started'),
      plannedRows: sum((r) => r.plannedRows),
      settledRows: sum((r) => r.settledRows),
      rowsWritten: sum((r) => r.rowsWritten),
      rowsPerSecond: running.length === 0 ? null : running.reduce((n, r) => n + r.rowsPerSecond!, 0),
      etaSeconds: eta,
    },
  };
}
