import { addTally, emptyTally } from '../../pipeline/ledger.js';
import { mergeStageStats, newStageStats, sumValues } from '../../pipeline/stats.js';
import path from 'node:path';
import { AirError, LedgerError } from '../../pipeline/errors.js';
import { writeAtomically } from '../../pipeline/io/files.js';
import { isObjectUrl } from '../../pipeline/io/object-store/url.js';
import { SqliteResponseCache } from '../../llm/cache.js';
import { LLM_CACHE_FILE } from '../llm.js';
import { STATS_FILE, writeRunArtifacts, type RunArtifacts } from '../../report/artifacts.js';
import { MANIFEST_FILE } from '../../pipeline/io/manifest.js';
import { describeColumns } from '../../report/card/columns.js';
import { mergeStats } from '../../report/stats/collector.js';
import { LEDGER_FILE, readLedgerFile, type LedgerFile } from '../../report/stats/ledger-file.js';
import { parquetColumns, rowStatsOf, statsFromOutput } from '../../report/stats/read-output.js';
import { readStatsFile } from '../../report/stats/stats-file.js';
import type { Plan } from '../../schemas/plan.js';
import type { RunStats } from '../../schemas/stats.js';
import { committedParts, type PartEntry } from '../run-ledger.js';
import { dedupeInstructionsAcrossRanks, type MergeDedupeResult } from './instruction-dedupe.js';
import { jobRoot, type JobRoot } from './job-root.js';
import { isComplete, planFile, planWorkDir, rankName, rankPath } from './layout.js';
import { readPlan } from './plan-file.js';
import { parseRunConfig } from '../config.js';
import { countedAttempts, readQueueFile } from '../queue/units.js';

type Totals = LedgerFile['totals'];
type Stage = LedgerFile['stages'][number];

export interface MergeResult extends RunArtifacts {
  readonly ledgerFile: string;
  readonly totals: Totals;
  readonly plannedRows: number;
  /** The dataset's part files, relative to the root, in rank order (rewritten ones where merge dropped rows). */
  readonly parts: readonly PartEntry[];
  /** The cross-rank instruction dedupe; undefined when the job has none (documents method, or it is off). */
  readonly instructionDedupe: MergeDedupeResult | undefined;
  readonly cache: MergedCache | undefined;
}

/** The stage name under which merge's instruction dedupe drops documents in the ledger and stats. */
export const MERGE_DEDUPE_STAGE = 'merge_instruction_dedupe';

export interface MergeOptions {
  readonly signal?: AbortSignal;
  /** Union the ranks' response caches into `<root>/llm-cache.sqlite` (`air merge --cache`). */
  readonly cache?: boolean;
}

/** What `--cache` wrote: the union of the ranks' response caches. */
export interface MergedCache {
  readonly file: string;
  /** Rank caches read (ranks that ran without a cache have none). */
  readonly sources: number;
  /** Answers added by this merge, and held by the file after it. */
  readonly added: number;
  readonly rows: number;
}

/**
 * `air merge <root>`: once every rank is complete under the plan's fingerprint, writes at the root the job's
 * ledger.json (the ranks' ledgers summed and checked against the plan's rows), stats.json (the ranks' stats
 * merged, as `air stats` merges runs), report.html and the dataset card, whose configs list every rank's part
 * files by relative path: nothing is copied. Refuses (AIR_RANKS_INCOMPLETE) naming the ranks not complete.
 *
 * A root in a bucket is merged from its small files: each rank's ledger, manifest and stats (and one part's
 * footer for the card's columns) come down to the root's local folder, and the merged files go up to the root;
 * parts are read only by the instruction dedupe, one at a time.
 */
export async function mergeRanks(root: string, options: MergeOptions = {}): Promise<MergeResult> {
  const plan = await readPlan(root);
  const files = jobRoot(root, planWorkDir(plan));
  try {
    return await mergeInto(root, plan, files, options);
  } finally {
    await files.dispose();
  }
}

async function mergeInto(
  root: string,
  plan: Plan,
  files: JobRoot,
  options: MergeOptions,
): Promise<MergeResult> {
  const local = files.localDir;
  const outputs = await jobOutputs(root, plan);
  const read = await readRanks(
    files,
    outputs.map((o) => o.dir),
  );
  const { ledgers } = read;
  const rankTotals = sumTotals(ledgers.map((l) => l.totals));
  checkBalance(root, plan, rankTotals);
  const config = parseRunConfig(plan.config, planFile(root));
  const dedupe =
    config.method === 'air' && config.dedupe.instructions.enabled && read.parts.length > 0
      ? await dedupeInstructionsAcrossRanks(root, read.parts, {
          threshold: config.dedupe.instructions.threshold,
          workDir: planWorkDir(plan),
          signal: options.signal,
        })
      : undefined;
  const totals = dedupe === undefined ? rankTotals : totalsAfterMergeDedupe(rankTotals, dedupe);
  const parts = dedupe?.parts ?? read.parts;
  const stats =
    dedupe === undefined || dedupe.drops === 0 ? read.stats : await dedupedStats(files, read.stats, dedupe);
  const body = {
    air: 'ledger',
    version: 1,
    merged: true,
    finishedAt: new Date().toISOString(),
    status: 'completed',
    // The ranks ran side by side: the job took as long as its slowest rank.
    wallMs: Math.max(0, ...ledgers.map((l) => l.wallMs)),
    stages: sumStages(ledgers.map((l) => l.stages)),
    totals,
    plannedRows: plan.totals.rows,
    ...(dedupe === undefined
      ? {}
      : {
          instructionDedupe: {
            rows: dedupe.rows,
            dropped: dedupe.drops,
            documentsDropped: dedupe.documentsDropped,
            rewrittenParts: dedupe.rewritten,
            dropList: dedupe.dropFile,
          },
        }),
    [outputs.queue ? 'units' : 'ranks']: outputs.map(({ dir, ...which }, i) => ({
      ...which,
      ledger: `${dir}/${LEDGER_FILE}`,
      totals: ledgers[i]!.totals,
    })),
    parts,
    ...(dedupe === undefined ? {} : { rankParts: read.parts }),
    configFingerprint: plan.fingerprint,
    config: plan.config,
  };
  await writeAtomically(path.join(local, LEDGER_FILE), `${JSON.stringify(body, null, 2)}\n`);
  await files.push(LEDGER_FILE);
  const columns = parts.length === 0 ? [] : await columnsOf(files, parts[0]!.file);
  const artifacts = await writeRunArtifacts(local, {
    stats,
    schema: describeColumns(stats.kind, columns),
    config: plan.config,
    dataFiles: parts.map((p) => p.file),
    // A bucket root's local folder is a scratch folder: the report names the job's root.
    label: isObjectUrl(root) ? path.basename(files.location) : undefined,
  });
  for (const file of [artifacts.statsFile, artifacts.reportFile, artifacts.cardFile]) {
    await files.push(path.basename(file));
  }
  const cache =
    options.cache === true
      ? await unionCaches(
          files,
          outputs.map((o) => o.dir),
        )
      : undefined;
  const at = (file: string): string => files.at(path.basename(file));
  return {
    statsFile: at(artifacts.statsFile),
    reportFile: at(artifacts.reportFile),
    cardFile: at(artifacts.cardFile),
    ledgerFile: files.at(LEDGER_FILE),
    totals,
    plannedRows: plan.totals.rows,
    parts,
    instructionDedupe: dedupe,
    cache,
  };
}

/**
 * Adds every rank's `llm-cache.sqlite` to `<root>/llm-cache.sqlite` (kept across merges: a key already there
 * wins), so a later run that starts from that file repeats none of the job's answered calls.
 */
async function unionCaches(root: JobRoot, dirs: readonly string[]): Promise<MergedCache> {
  await root.pull(LLM_CACHE_FILE);
  const target = SqliteResponseCache.open(path.join(root.localDir, LLM_CACHE_FILE));
  let sources = 0;
  let added = 0;
  let rows: number;
  try {
    for (const dir of dirs) {
      const source = `${dir}/${LLM_CACHE_FILE}`;
      if (!(await root.pull(source))) continue;
      added += target.absorb(path.join(root.localDir, source)).added;
      await root.release(source);
      sources++;
    }
    rows = target.stats().entries;
  } finally {
    target.close();
  }
  await root.push(LLM_CACHE_FILE);
  return { file: root.at(LLM_CACHE_FILE), sources, added, rows };
}

/** The card's columns, from the first part (every part of a job has the same columns). */
async function columnsOf(root: JobRoot, part: string) {
  await root.pull(part);
  try {
    return await parquetColumns([path.join(root.localDir, part)]);
  } finally {
    await root.release(part);
  }
}

/**
 * The output folders the job's rows come from (relative to the root), in plan order: each rank's folder, or, for a job run from a
 * queue (queue.json at the root), each unit's one counted attempt (job/queue/units.ts). Refuses unless all
 * are complete.
 */
async function jobOutputs(
  root: string,
  plan: Plan,
): Promise<Array<{ dir: string } & Record<string, unknown>> & { queue: boolean }> {
  const queued = await readQueueFile(root);
  if (queued !== undefined) {
    const units = await countedAttempts(root, plan, queued.units);
    return Object.assign(
      units.map((u) => ({
        unit: u.unit,
        label: u.label,
        attempt: path.basename(u.dir),
        dir: path.relative(root, u.dir).split(path.sep).join('/'),
      })),
      { queue: true },
    );
  }
  await refuseIncomplete(root, plan);
  // Ranks without shards (more ranks than shards) wrote nothing.
  const ranks = plan.ranks.filter((r) => r.shards.length > 0).map((r) => r.rank);
  return Object.assign(
    ranks.map((rank) => ({ rank, dir: rankPath(rank) })),
    { queue: false },
  );
}

/** Refuses (AIR_RANKS_INCOMPLETE) unless every rank is complete under the plan's fingerprint. */
async function refuseIncomplete(root: string, plan: Plan): Promise<void> {
  const incomplete: number[] = [];
  for (const { rank } of plan.ranks) {
    if (!(await isComplete(root, rank, plan.fingerprint))) incomplete.push(rank);
  }
  if (incomplete.length === 0) return;
  const names = incomplete.slice(0, 10).map(rankName).join(', ');
  throw new AirError(
    'AIR_RANKS_INCOMPLETE',
    `${root}: ${incomplete.length} of ${plan.worldSize} ranks are not complete (${names}` +
      `${incomplete.length > 10 ? ', …' : ''}); run them (air status ${root} shows where they stand)`,
  );
}

/**
 * Each rank's ledger, parts (paths relative to the root) and stats, the stats merged as `air stats` does.
 * `dirs` are relative to the root; a bucket root's small files come down to its local folder.
 */
async function readRanks(
  root: JobRoot,
  dirs: readonly string[],
): Promise<{ ledgers: LedgerFile[]; parts: PartEntry[]; stats: RunStats }> {
  const ledgers: LedgerFile[] = [];
  const parts: PartEntry[] = [];
  let stats: RunStats | undefined;
  for (const dir of dirs) {
    for (const name of [LEDGER_FILE, MANIFEST_FILE, STATS_FILE]) await root.pull(`${dir}/${name}`);
    const local = path.join(root.localDir, dir);
    ledgers.push(await readLedgerFile(path.join(local, LEDGER_FILE)));
    for (const part of await committedParts(local))
      parts.push({ file: `${dir}/${part.file}`, rows: part.rows });
    // A rank's own stats.json when it has one; else recomputed from its files (what `air stats` would do).
    const own = (await readStatsFile(path.join(local, STATS_FILE))) ?? (await statsFromOutput(local)).stats;
    stats = stats === undefined ? own : mergeStats(stats, own);
  }
  // A plan holds at least one shard (air plan refuses an empty listing), so some rank had stats.
  return { ledgers, parts, stats: stats! };
}

/** The ranks' totals added up, as the ledger adds its shards' tallies. */
function sumTotals(all: readonly Totals[]): Totals {
  const { shard: _shard, ...out } = emptyTally('');
  for (const t of all) addTally(out, t);
  return out;
}

/** Stages summed by name, in the order they first appear (every rank runs the same stage list). */
function sumStages(all: ReadonlyArray<readonly Stage[]>): Stage[] {
  const byName = new Map<string, Stage>();
  for (const stages of all) {
    for (const s of stages) {
      const mine = byName.get(s.name);
      byName.set(
        s.name,
        mine === undefined ? mergeStageStats(s, newStageStats(s.name)) : mergeStageStats(mine, s),
      );
    }
  }
  return [...byName.values()];
}

/**
 * The job's totals once merge dropped rows: rows written fall by the drops, and a document every row of which was
 * dropped moves from written to dropped, so the ledger still balances against the plan.
 */
export function totalsAfterMergeDedupe(totals: Totals, dedupe: MergeDedupeResult): Totals {
  if (dedupe.drops === 0) return totals;
  const key = `${MERGE_DEDUPE_STAGE}:near_duplicate`;
  return {
    ...totals,
    written: totals.written - dedupe.documentsDropped,
    rowsWritten: totals.rowsWritten - dedupe.drops,
    dropped: { ...totals.dropped, [key]: (totals.dropped[key] ?? 0) + dedupe.documentsDropped },
  };
}

/** Row figures of the deduped dataset; the funnel, LLM accounting and time stay the ranks'. */
export async function dedupedStats(
  root: JobRoot,
  ranks: RunStats,
  dedupe: MergeDedupeResult,
): Promise<RunStats> {
  // Part by part, merged as `air stats` merges runs (the same figures as all parts read at once): a bucket
  // root's parts come down one at a time.
  let rows: RunStats | undefined;
  for (const p of dedupe.parts) {
    await root.pull(p.file);
    const part = await rowStatsOf([path.join(root.localDir, p.file)]);
    await root.release(p.file);
    rows = rows === undefined ? part : mergeStats(rows, part);
  }
  return {
    ...rows!,
    origin: 'merged',
    time: ranks.time,
    llm: ranks.llm,
    funnel:
      ranks.funnel === null ? null : { ...ranks.funnel, ...totalsAfterMergeDedupe(ranks.funnel, dedupe) },
  };
}

/** Every planned row was read once, and every row read was written, dropped, failed or abandoned. */
function checkBalance(root: string, plan: Plan, t: Totals): void {
  const settled = t.written + sumValues(t.dropped) + sumValues(t.failed) + t.abandoned;
  if (t.read !== plan.totals.rows || settled !== t.read) {
    throw new LedgerError(
      `${root}: the ranks' ledgers do not add up: the plan has ${plan.totals.rows} rows, the ranks read ` +
        `${t.read} and settled ${settled} (written ${t.written}, dropped ${sumValues(t.dropped)}, failed ` +
        `${sumValues(t.failed)}, abandoned ${t.abandoned})`,
    );
  }
}
