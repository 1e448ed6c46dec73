import type { Command } from 'commander';
import { mergeRanks } from '../job/plan/merge.js';
import { AirError } from '../pipeline/errors.js';
import { formatCount } from '../report/format.js';
import { settingOption, STORAGE_ENDPOINT } from './setting-flags.js';
import { useStorageEndpoint } from '../job/storage.js';

type IO = { stdout: (t: string) => void; stderr: (t: string) => void };

/**
 * `air merge <root>`: one ledger, stats, report and dataset card for a job whose ranks are all complete, at the
 * root, over the ranks' part files where they are.
 */
export function registerMergeCommand(program: Command, io: IO, setExit: (code: number) => void): void {
  program
    .command('merge')
    .description("Merge a planned job's complete ranks: ledger.json, stats.json, report.html, dataset card.")
    .argument('<root>', "the job's root, a folder or s3://bucket/prefix/ (where air plan wrote plan.json)")
    .addOption(settingOption(STORAGE_ENDPOINT))
    .option('--cache', "also union the ranks' response caches into <root>/llm-cache.sqlite, for later runs")
    .addHelpText(
      'after',
      '\nExit codes: 0 merged, 1 a rank is not complete or the ledgers do not add up, 2 no readable plan.',
    )
    .action(async (root: string, options: { cache?: boolean; s3Endpoint?: string }) => {
      useStorageEndpoint(options.s3Endpoint);
      try {
        const merged = await mergeRanks(root, { cache: options.cache === true });
        const t = merged.totals;
        io.stdout(
          `${root}: ${formatCount(t.read)} of ${formatCount(merged.plannedRows)} planned rows read, ` +
            `${formatCount(t.rowsWritten)} rows written in ${formatCount(merged.parts.length)} part files\n`,
        );
        const dedupe = merged.instructionDedupe;
        if (dedupe !== undefined) {
          io.stdout(
            `instruction dedupe across ranks: ${formatCount(dedupe.drops)} of ${formatCount(dedupe.rows)} rows ` +
              `dropped (${dedupe.dropFile}), ${formatCount(dedupe.rewritten)} part files rewritten\n`,
          );
        }
        const cache = merged.cache;
        if (cache !== undefined) {
          io.stdout(
            `wrote ${cache.file}: ${formatCount(cache.rows)} answers (${formatCount(cache.added)} added from ` +
              `${formatCount(cache.sources)} rank caches)\n`,
          );
        }
        for (const file of [merged.ledgerFile, merged.statsFile, merged.reportFile, merged.cardFile]) {
          io.stdout(`wrote ${file}\n`);
        }
      } catch (error) {
        if (!(error instanceof AirError) || error.code === 'AIR_CONFIG_INVALID') throw error;
        io.stderr(`air: ${error.message}\n`);
        setExit(1);
      }
    });
}
