import { mkdir } from 'node:fs/promises';
import type { Command } from 'commander';
import { parseRunConfig, type RunConfig } from '../job/config.js';
import { imbalance } from '../job/plan/assign.js';
import { planFile } from '../job/plan/layout.js';
import { buildPlan, savePlan } from '../job/plan/plan-file.js';
import { useStorage } from '../job/storage.js';
import { isObjectUrl } from '../pipeline/io/object-store/url.js';
import { AirError, UsageError } from '../pipeline/errors.js';
import { positiveIntArg } from './args.js';
import { mergeConfig, readConfigFile } from './config-file.js';
import { formatCount } from '../report/format.js';
import { settingOption, settingsFromFlags, STORAGE_ENDPOINT } from './setting-flags.js';

interface PlanFlags {
  config?: string;
  input?: string[];
  output?: string;
  worldSize: number;
  force?: boolean;
  s3Endpoint?: string;
}

type IO = { stdout: (t: string) => void; stderr: (t: string) => void };

/**
 * `air plan`: lists the input once and freezes it in `<root>/plan.json` (shards, their identities and rows, and
 * the rank of each, balanced by bytes), so that ranks started on many machines agree on who reads what.
 */
export function registerPlanCommand(program: Command, io: IO, setExit: (code: number) => void): void {
  program
    .command('plan')
    .description(
      'Freeze the shard listing of a job run by many ranks: <root>/plan.json, shards balanced by bytes.',
    )
    .option('-c, --config <file>', 'JSON or YAML config file of the run (as air run takes it)')
    .option('-i, --input <path...>', 'Parquet file(s), folder(s) or glob(s) to read')
    .option(
      '-o, --output <root>',
      "the job's root, a folder or s3://bucket/prefix/: plan.json, ranks/NNNNN/, completions/",
    )
    .requiredOption('--world-size <n>', 'number of ranks', positiveIntArg)
    .option('--force', 'replace a plan of another listing, world size or config in <root>')
    .addOption(settingOption(STORAGE_ENDPOINT))
    .addHelpText(
      'after',
      `
Exit codes: 0 planned (or the same plan is already there), 1 unreadable input, 2 usage or config error, or
another plan in <root> (without --force).

Examples:
  air plan --config air.yaml --input s3-mirror/web --output job/ --world-size 64
  air plan --config air.yaml --input s3://crawl/web/ --output s3://results/job/ --world-size 64 \\
    --s3-endpoint http://minio:9000`,
    )
    .action(async (flags: PlanFlags) => {
      const config = await planConfig(flags);
      const plan = await buildPlan(config, flags.worldSize);
      if (!isObjectUrl(config.output)) await mkdir(config.output, { recursive: true });
      let outcome;
      try {
        outcome = await savePlan(config.output, plan, flags.force === true);
      } catch (error) {
        if (!(error instanceof AirError) || error.code !== 'AIR_PLAN_MISMATCH') throw error;
        io.stderr(`air: ${error.message}\n`);
        setExit(2);
        return;
      }
      const file = planFile(config.output);
      io.stdout(
        `${formatCount(plan.totals.shards)} shards, ${formatCount(plan.totals.rows)} rows, ` +
          `${(plan.totals.bytes / 1e6).toFixed(1)} MB over ${plan.worldSize} ranks ` +
          `(largest rank ${imbalance(plan.ranks.map((r) => r.bytes)).toFixed(3)}x the mean bytes); ` +
          `fingerprint ${plan.fingerprint}\n`,
      );
      io.stdout(
        outcome === 'unchanged' ? `${file}: the same plan is already there (kept)\n` : `${outcome} ${file}\n`,
      );
    });
}

/** The run config the way `air run` builds it (config file, then flags, validated once); output is the root. */
async function planConfig(flags: PlanFlags): Promise<RunConfig> {
  const fromFile = flags.config === undefined ? {} : await readConfigFile(flags.config);
  const merged = mergeConfig(fromFile, {
    input: flags.input,
    output: flags.output,
    ...settingsFromFlags({ s3Endpoint: flags.s3Endpoint }),
  });
  if (merged.input === undefined) {
    throw new UsageError('no input: pass --input <path> or set "input" in --config');
  }
  if (merged.output === undefined) {
    throw new UsageError(
      "no root folder: pass --output <root> (the job's plan.json, ranks/ and completions/)",
    );
  }
  const config = parseRunConfig(merged, flags.config ?? 'flags');
  useStorage(config);
  return config;
}
