import type { Command } from 'commander';
import { STALE_AFTER_SECONDS } from '../job/plan/layout.js';
import { jobStatus } from '../job/plan/status.js';
import type { JobStatus, RankStatus } from '../schemas/plan.js';
import { nonNegativeArg } from './args.js';
import { settingOption, STORAGE_ENDPOINT } from './setting-flags.js';
import { useStorageEndpoint } from '../job/storage.js';
import { formatCount, formatDuration, formatRate, formatTable } from '../report/format.js';

interface StatusFlags {
  json?: boolean;
  s3Endpoint?: string;
  staleAfter?: number;
}

/**
 * `air status <root>`: where each rank of a planned job stands (not started, running, interrupted, complete),
 * rows settled of planned, rates and an ETA, from the shared folder alone. Exit 0 only when every rank is
 * complete, so a dependent step (a merge, a Slurm `--dependency=afterok`) can test it.
 */
export function registerStatusCommand(
  program: Command,
  io: { stdout: (t: string) => void },
  setExit: (code: number) => void,
): void {
  program
    .command('status')
    .description('Show where each rank of a planned job stands; exit 0 only when every rank is complete.')
    .argument('<root>', "the job's root, a folder or s3://bucket/prefix/ (where air plan wrote plan.json)")
    .addOption(settingOption(STORAGE_ENDPOINT))
    .option('--json', 'print the status as JSON (schemas/plan.ts jobStatusSchema)')
    .option(
      '--stale-after <seconds>',
      `a rank silent this long is interrupted, not running (default: ${STALE_AFTER_SECONDS})`,
      nonNegativeArg,
    )
    .addHelpText(
      'after',
      '\nExit codes: 0 every rank complete, 1 some rank is not, 2 no readable plan in <root>.',
    )
    .action(async (root: string, flags: StatusFlags) => {
      useStorageEndpoint(flags.s3Endpoint);
      const status = await jobStatus(root, { staleAfterSeconds: flags.staleAfter });
      if (flags.json === true) io.stdout(`${JSON.stringify(status, null, 2)}\n`);
      else for (const line of statusLines(status)) io.stdout(`${line}\n`);
      setExit(status.complete ? 0 : 1);
    });
}

export function statusLines(status: JobStatus): string[] {
  const t = status.totals;
  const share = (r: { settledRows: number; plannedRows: number }) =>
    r.plannedRows === 0 ? '-' : `${((100 * r.settledRows) / r.plannedRows).toFixed(1)}%`;
  const eta = (s: number | null) => (s === null ? '-' : formatDuration(s * 1000));
  const what = status.mode === 'queue' ? 'units' : 'ranks';
  const head =
    `${status.root}: ${t.complete} of ${status.worldSize} ${what} complete, ${t.running} running, ` +
    `${t.interrupted} interrupted, ${t.notStarted} not started; ${formatCount(t.settledRows)} of ` +
    `${formatCount(t.plannedRows)} rows settled (${share(t)}), ${formatCount(t.rowsWritten)} written; ` +
    `${t.rowsPerSecond === null ? '-' : formatRate(t.rowsPerSecond)} rows/s; ETA ${eta(t.etaSeconds)}`;
  const rows = status.ranks.map((r: RankStatus) => [
    `${String(r.rank).padStart(5, '0')}  ${r.state}`,
    `${formatCount(r.settledRows)} / ${formatCount(r.plannedRows)}`,
    share(r),
    formatCount(r.rowsWritten),
    r.rowsPerSecond === null ? '-' : formatRate(r.rowsPerSecond),
    eta(r.etaSeconds),
    r.note ?? '',
  ]);
  return [
    head,
    ...formatTable([
      [
        `${status.mode === 'queue' ? 'unit' : 'rank'}   state`,
        'settled / planned',
        '',
        'written',
        'rows/s',
        'ETA',
        'note',
      ],
      ...rows,
    ]),
  ];
}
