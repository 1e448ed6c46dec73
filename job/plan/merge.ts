import { addTally, emptyTally } from '../../pipeline/ledger.js';
import { mergeStageStats, newStageStats, sumValues } from '../../pipeline/stats.js';
import path from 'node:path';
import { AirError, LedgerError } from '../../pipeline/errors.js';
import { writeAtomically } from '../../pipeline/io/files.js';
import { STATS_FILE, writeRunArtifacts, type RunArtifacts } from '../../report/artifacts.js';
import { describeColumns } from '../../report/card/columns.js';
import { mergeStats } from '../../report/stats/collector.js';
import { LEDGER_FILE, readLedgerFile, type LedgerFile } from '../../report/stats/ledger-file.js';
import { parquetColumns, statsFromOutput } from '../../report/stats/read-output.js';
import { readStatsFile } from '../../report/stats/stats-file.js';
import type { Plan } from '../../schemas/plan.js';
import type { RunStats } from '../../schemas/stats.js';
import { committedParts, type PartEntry } from '../run-ledger.js';
import { isComplete, rankDir, rankName } from './layout.js';
import { readPlan } from './plan-file.js';

type Totals = LedgerFile['totals'];
type Stage = LedgerFile['stages'][number];

export interface MergeResult extends RunArtifacts {
  readonly ledgerFile: string;
  readonly totals: Totals;
  readonly plannedRows: number;
  /** Every rank's part files, relative to the root, in rank order. */
  readonly parts: readonly PartEntry[];
}

/**
 * `air merge <root>`: once every rank is complete under the plan's fingerprint, writes at the root the job's
 * ledger.json (the ranks' ledgers summed and checked against the plan's rows), stats.json (the ranks' stats
 * merged, as `air stats` merges runs), report.html and the dataset card, whose configs list every rank's part
 * files by relative path: nothing is copied. Refuses (AIR_RANKS_INCOMPLETE) naming the ranks not complete.
 */
export async function mergeRanks(root: string): Promise<MergeResult> {
  const plan = await readPlan(root);
  await refuseIncomplete(root, plan);
  // Ranks without shards (more ranks than shards) wrote nothing.
  const ranks = plan.ranks.filter((r) => r.shards.length > 0).map((r) => r.rank);
  const { ledgers, parts, stats } = await readRanks(root, ranks);
  const totals = sumTotals(ledgers.map((l) => l.totals));
  checkBalance(root, plan, totals);
  const ledgerFile = path.join(root, LEDGER_FILE);
  const relative = (file: string): string => path.relative(root, file).split(path.sep).join('/');
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
    ranks: ranks.map((rank, i) => ({
      rank,
      ledger: relative(path.join(rankDir(root, rank), LEDGER_FILE)),
      totals: ledgers[i]!.totals,
    })),
    parts,
    configFingerprint: plan.fingerprint,
    config: plan.config,
  };
  await writeAtomically(ledgerFile, `${JSON.stringify(body, null, 2)}\n`);
  const columns = parts.length === 0 ? [] : await parquetColumns(parts.map((p) => path.join(root, p.file)));
  const artifacts = await writeRunArtifacts(root, {
    stats,
    schema: describeColumns(stats.kind, columns),
    config: plan.config,
    dataFiles: parts.map((p) => p.file),
  });
  return { ...artifacts, ledgerFile, totals, plannedRows: plan.totals.rows, parts };
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

/** Each rank's ledger, parts (paths relative to the root) and stats, the stats merged as `air stats` does. */
async function readRanks(
  root: string,
  ranks: readonly number[],
): Promise<{ ledgers: LedgerFile[]; parts: PartEntry[]; stats: RunStats }> {
  const ledgers: LedgerFile[] = [];
  const parts: PartEntry[] = [];
  let stats: RunStats | undefined;
  for (const rank of ranks) {
    const dir = rankDir(root, rank);
    ledgers.push(await readLedgerFile(path.join(dir, LEDGER_FILE)));
    for (const part of await committedParts(dir)) {
      parts.push({
        file: path.relative(root, path.join(dir, part.file)).split(path.sep).join('/'),
        rows: part.rows,
      });
    }
    // A rank's own stats.json when it has one; else recomputed from its files (what `air stats` would do).
    const own = (await readStatsFile(path.join(dir, STATS_FILE))) ?? (await statsFromOutput(dir)).stats;
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
