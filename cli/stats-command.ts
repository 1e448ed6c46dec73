import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { ConfigError, UsageError } from '../pipeline/errors.js';
import { writeAtomically } from '../pipeline/io/files.js';
import { STATS_FILE } from '../report/artifacts.js';
import { reportHtml, type ReportRun } from '../report/html/report-page.js';
import { recomputeRunArtifacts } from '../report/run-stats.js';
import { statsFromOutput } from '../report/stats/read-output.js';
import { readStatsFile } from '../report/stats/stats-file.js';
import { commaList } from './args.js';
import { formatCount } from '../report/format.js';

interface StatsFlags {
  compare?: boolean;
  out: string;
  labels?: string[];
  recompute?: boolean;
}

/**
 * `air stats <folder>`: recomputes a run's stats.json, report.html and README.md dataset card from its Parquet
 * output (plus ledger.json when present), for runs merged by hand or written by older versions.
 * `air stats --compare a/ b/`: one report with the runs side by side, e.g. AIR output against a baseline
 * instruction dataset (a folder or a .parquet/.jsonl file with only instruction and output columns).
 */
export function registerStatsCommand(program: Command, io: { stdout: (t: string) => void }): void {
  program
    .command('stats')
    .description(
      "Recompute a run's stats.json, report.html and dataset card from its output, or compare runs.",
    )
    .argument(
      '<paths...>',
      "a run's output folder; with --compare, two or more folders or .parquet/.jsonl files",
    )
    .option('--compare', 'write one report with the runs side by side (to --out) instead')
    .option('--out <file>', 'where --compare writes its report', 'air-compare.html')
    .option(
      '--labels <names>',
      'comma-separated names of the runs in the report (default: folder names)',
      commaList,
    )
    .option('--recompute', 'with --compare: read the Parquet files even where a stats.json exists')
    .addHelpText(
      'after',
      `
Examples:
  air stats out/run1                                   # rewrites out/run1/{stats.json,report.html,README.md}
  air stats --compare out/run1 alpaca.jsonl --out compare.html
`,
    )
    .action(async (paths: string[], flags: StatsFlags) => {
      if (flags.compare === true) await compare(paths, flags, io);
      else await recompute(paths, io);
    });
}

async function recompute(paths: readonly string[], io: { stdout: (t: string) => void }): Promise<void> {
  if (paths.length !== 1)
    throw new UsageError('air stats takes one output folder (or --compare with several)');
  const dir = paths[0]!;
  if (!(await isDirectory(dir))) {
    throw new UsageError(`${dir}: air stats writes into a run's folder; for a file, use --compare`);
  }
  const { artifacts, stats, read, keptTimeline } = await recomputeRunArtifacts(dir);
  io.stdout(
    `${dir}: ${formatCount(stats.rows)} rows from ${read.files.length} file(s)` +
      `${read.ledger === undefined ? ', no ledger.json (no funnel, no LLM accounting)' : ''}` +
      `${keptTimeline ? '; timeline kept from the previous stats.json' : ''}\n`,
  );
  for (const file of [artifacts.statsFile, artifacts.reportFile, artifacts.cardFile])
    io.stdout(`wrote ${file}\n`);
}

async function compare(
  paths: readonly string[],
  flags: StatsFlags,
  io: { stdout: (t: string) => void },
): Promise<void> {
  if (paths.length < 2) throw new UsageError('air stats --compare needs two or more folders or files');
  if (flags.labels !== undefined && flags.labels.length !== paths.length) {
    throw new UsageError(`--labels names ${flags.labels.length} runs, but ${paths.length} were given`);
  }
  const runs: ReportRun[] = [];
  for (const [i, target] of paths.entries()) {
    const existing =
      flags.recompute === true || !(await isDirectory(target))
        ? undefined
        : await readStatsFile(path.join(target, STATS_FILE));
    const stats = existing ?? (await statsFromOutput(target)).stats;
    const label = flags.labels?.[i] ?? uniqueLabel(target, runs);
    runs.push({ label, stats });
    io.stdout(
      `${label}: ${formatCount(stats.rows)} rows (${existing === undefined ? 'read from the files' : 'its stats.json'})\n`,
    );
  }
  await writeAtomically(flags.out, reportHtml(runs));
  io.stdout(`wrote ${flags.out}\n`);
}

function uniqueLabel(target: string, runs: readonly ReportRun[]): string {
  const base = path.basename(path.resolve(target)).replace(/\.(parquet|jsonl|json)$/i, '');
  let label = base;
  for (let n = 2; runs.some((r) => r.label === label); n++) label = `${base} (${n})`;
  return label;
}

async function isDirectory(target: string): Promise<boolean> {
  try {
    return (await stat(target)).isDirectory();
  } catch {
    throw new ConfigError(`${target}: no such file or folder`);
  }
}
