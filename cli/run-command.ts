import type { Command } from 'commander';
import { parseRunConfig, type RunConfig } from '../job/config.js';
import { prepareRetry } from '../job/retry-failed.js';
import { runJob, type JobOptions, type JobResult } from '../job/run-job.js';
import type { DownloadProgress } from '../llm/model-files.js';
import { AirError, errorMessage } from '../pipeline/errors.js';
import { MANIFEST_FILE, readManifest } from '../pipeline/io/manifest.js';
import { peakRssMB } from '../pipeline/memory.js';
import type { PipelineRun } from '../pipeline/run.js';
import { commaList, nonNegativeArg } from './args.js';
import { mergeConfig, readConfigFile } from './config-file.js';
import { formatDownload } from './format.js';
import { EXIT, isUsageError, type CliIO } from './io.js';
import { DEDUPE_LOCK_STALE_SECONDS, DEDUPE_WAIT_SECONDS, isPlanRefusal, runPlanRanks } from './plan-run.js';
import { ProgressReporter } from './progress.js';
import { settingOption, settingsFromFlags, SETTING_FLAGS } from './setting-flags.js';
import { watchStops } from './stop-signals.js';
import { summaryLines } from './summary.js';

/** The flags `air run` reads itself, and the setting flags (cli/setting-flags.ts) that go to the config by key. */
type RunFlags = OwnRunFlags & Readonly<Record<string, unknown>>;

interface OwnRunFlags {
  input?: string[];
  output?: string;
  config?: string;
  guidanceUrl?: string;
  guidanceModel?: string;
  studentUrl?: string;
  studentModel?: string;
  apiKeyEnv?: string;
  resume?: string;
  force?: boolean;
  /** False with --no-dedupe (commander's negation), else undefined. */
  dedupe?: boolean;
  plan?: string;
  rank?: string;
  ranks?: string;
  dedupeWait?: number;
  dedupeLockStale?: number;
}

/** `air run`: its own flags, then one flag per setting (cli/setting-flags.ts). */
export function registerRunCommand(program: Command, io: CliIO, setExit: (code: number) => void): void {
  program
    .command('run')
    .description('Run the job: read Parquet shards, apply the operators, write Parquet part files.')
    .option('-i, --input <path...>', 'Parquet file(s), folder(s) or glob(s) to read')
    .option('-o, --output <dir>', 'output folder (part-*.parquet and ledger.json)')
    .option('-c, --config <file>', 'JSON or YAML config file; flags override its values')
    .option(
      '--resume <dir>',
      'continue the interrupted run in <dir> with its own config (rerunning the same command does too)',
    )
    .option('--force', 'resume although settings that change results differ from the interrupted run')
    .option('--no-dedupe', 'keep exact and near-duplicate documents and instructions (default: removed)')
    .option('--plan <file>', "run ranks of a planned job (<root>/plan.json): the plan's config and shards")
    .option(
      '--rank <n|auto>',
      'with --plan: the rank to run; auto reads it from Slurm, Kubernetes or torchrun',
    )
    .option('--ranks <list>', 'with --plan: run these ranks one after another (0-15, 0,3,5-7)')
    .option(
      '--dedupe-wait <seconds>',
      `with --plan: longest wait for the other ranks' dedupe keys and the global step (default: ${DEDUPE_WAIT_SECONDS})`,
      nonNegativeArg,
    )
    .option(
      '--dedupe-lock-stale <seconds>',
      `with --plan: take over a dedupe lock this old whose holder is not seen alive (default: ${DEDUPE_LOCK_STALE_SECONDS})`,
      nonNegativeArg,
    )
    .option(
      '--guidance-url <url,...>',
      'base URL of the guidance (large) model server, up to /v1; several, comma-separated, for replicas',
    )
    .option('--guidance-model <name>', 'guidance model name, or local:<path.gguf> to run it inside air')
    .option('--student-url <url,...>', 'base URL of the student (small) model server(s), up to /v1')
    .option('--student-model <name>', 'student model name, or local:<path.gguf>')
    .option(
      '--api-key-env <VAR>',
      'environment variable holding the API key of both roles (never the key itself)',
    )
    .addHelpText(
      'after',
      `
Exit codes: 0 success, 1 failure (bad input, unbalanced ledger), 2 usage or config error,
130/143 interrupted by SIGINT/SIGTERM (rows committed before the stop are kept).

Example:
  air run --input ../shared/data/web --output out/ --min-words 50 --max-words 2048`,
    )
    .action(async (flags: RunFlags) => {
      setExit(await runCommand(flags, io));
    });
  const run = program.commands.find((c) => c.name() === 'run')!;
  for (const flag of SETTING_FLAGS) run.addOption(settingOption(flag));
}

/** `air retry-failed <dir>`: hands the failed rows back, then resumes the folder with its own config. */
export function registerRetryCommand(program: Command, io: CliIO, setExit: (code: number) => void): void {
  program
    .command('retry-failed <dir>')
    .description('Run again only the input rows whose records failed in the run in <dir> (its own config).')
    .addOption(settingOption(SETTING_FLAGS.find((f) => f.key === 'progress')!))
    .action(async (dir: string, flags: { progress?: string }) => {
      const plan = await prepareRetry(dir);
      if (plan.rows === 0) {
        io.stderr(`air: ${dir}: no failed rows to retry\n`);
        return;
      }
      const shards = Object.entries(plan.byShard)
        .map(([s, n]) => `${s} ${n}`)
        .join(', ');
      io.stderr(`air: retrying ${plan.rows} failed input rows (${shards})\n`);
      setExit(await runCommand({ resume: dir, progress: flags.progress }, io));
    });
}

async function runCommand(flags: RunFlags, io: CliIO): Promise<number> {
  if (flags.plan !== undefined) {
    return runPlanRanks({ ...flags, plan: flags.plan }, io.stderr, (config, start) =>
      runOne(config, io, start),
    );
  }
  let config: RunConfig;
  try {
    config = await loadConfig(flags);
  } catch (error) {
    io.stderr(`air: ${errorMessage(error)}\n`);
    return EXIT.usage;
  }
  return runOne(config, io, (options) => runJob(config, { ...options, force: flags.force === true }));
}

/** One run with signal handling, progress display and the summary; `start` runs it with the options given. */
async function runOne(
  config: RunConfig,
  io: CliIO,
  start: (options: JobOptions) => Promise<JobResult | string>,
): Promise<number> {
  const stops = watchStops(io, config.engine.graceSeconds);
  const mode: 'tty' | 'log' | 'off' =
    config.progress === 'auto' ? (io.isTTY ? 'tty' : 'log') : config.progress;
  const progress = progressDisplay(mode, io, config.progressIntervalSeconds);
  try {
    const result = await start({
      signal: stops.signal,
      onDownload: downloadDisplay(mode, io, config.progressIntervalSeconds),
      log: (line) => io.stderr(`air: ${line}\n`),
      onStart: progress.start,
    });
    progress.stop();
    if (typeof result === 'string') {
      io.stderr(`air: ${result}\n`);
      return EXIT.ok;
    }
    progress.finish();
    for (const line of summaryLines(result.report, config.output)) io.stderr(`${line}\n`);
    io.stderr(`ledger: ${result.ledgerFile} · peak memory ${peakRssMB()} MB\n`);
    if (result.report.status === 'failed') return EXIT.failure;
    if (result.report.status === 'interrupted') return stops.exitCode() ?? EXIT.sigint;
    return EXIT.ok;
  } catch (error) {
    io.stderr(`air: ${errorMessage(error)}\n`);
    // Stopped before the run began (a model download): the exit code still says which signal stopped it.
    const stopped = stops.exitCode();
    if (stopped !== undefined) return stopped;
    return isUsageError(error) || isPlanRefusal(error) ? EXIT.usage : EXIT.failure;
  } finally {
    progress.stop();
    stops.dispose();
  }
}

/** The live progress of a run: a table on a terminal, log lines otherwise, nothing when off. */
function progressDisplay(mode: 'tty' | 'log' | 'off', io: CliIO, intervalSeconds: number) {
  let timer: NodeJS.Timeout | undefined;
  let reporter: ProgressReporter | undefined;
  let run: PipelineRun | undefined;
  return {
    start(started: PipelineRun): void {
      run = started;
      if (mode === 'off') return;
      reporter = new ProgressReporter(mode, io.stderr);
      const intervalMs = mode === 'tty' ? 500 : intervalSeconds * 1000;
      timer = setInterval(() => reporter!.update(started.snapshot()), intervalMs);
      timer.unref();
    },
    stop(): void {
      if (timer !== undefined) clearInterval(timer);
    },
    finish(): void {
      if (reporter !== undefined && run !== undefined) reporter.finish(run.snapshot());
    },
  };
}

/**
 * A model download's progress: one line rewritten in place on a terminal, a log line every `intervalSeconds`
 * otherwise, and the last state once it ends.
 */
function downloadDisplay(
  mode: RunConfig['progress'],
  io: CliIO,
  intervalSeconds: number,
): ((progress: DownloadProgress) => void) | undefined {
  if (mode === 'off') return undefined;
  const intervalMs = mode === 'tty' ? 250 : intervalSeconds * 1000;
  let last = -Infinity;
  return (progress) => {
    const done = progress.totalBytes > 0 && progress.downloadedBytes >= progress.totalBytes;
    const now = performance.now();
    if (!done && now - last < intervalMs) return;
    last = now;
    const line = `air: downloading ${formatDownload(progress)}`;
    io.stderr(mode === 'tty' ? `\r\x1b[2K${line}${done ? '\n' : ''}` : `${line}\n`);
  };
}

/** Config file first, then flags on top; validated once, with errors naming the bad key. */
async function loadConfig(flags: RunFlags): Promise<RunConfig> {
  let fromFile = flags.config === undefined ? {} : await readConfigFile(flags.config);
  if (flags.resume !== undefined) {
    // The interrupted run's own config, from its manifest; flags given now still apply on top.
    const manifest = await readManifest(flags.resume);
    if (manifest === undefined) {
      throw new AirError('AIR_USAGE', `${flags.resume}: no ${MANIFEST_FILE} here: nothing to resume`);
    }
    fromFile = mergeConfig(manifest.header.config as Record<string, unknown>, fromFile);
    fromFile.output = flags.resume;
  }
  const fromFlags = mergeConfig(settingsFromFlags(flags), {
    input: flags.input,
    output: flags.output,
    dedupe:
      flags.dedupe === false
        ? { ids: false, exact: false, near: { enabled: false }, instructions: { enabled: false } }
        : undefined,
    llm: {
      guidance: roleFlags(flags.guidanceUrl, flags.guidanceModel, flags.apiKeyEnv),
      student: roleFlags(flags.studentUrl, flags.studentModel, flags.apiKeyEnv),
    },
  });
  const merged = mergeConfig(fromFile, fromFlags);
  if (merged.input === undefined)
    throw new AirError('AIR_USAGE', 'no input: pass --input <path> or set "input" in --config');
  if (merged.output === undefined) {
    throw new AirError('AIR_USAGE', 'no output folder: pass --output <dir> or set "output" in --config');
  }
  return parseRunConfig(merged, flags.config ?? 'flags');
}

/**
 * Only the flags given, so a config file's other endpoint settings survive the merge. A URL flag names every
 * replica (`a,b,c`), so it replaces a config file's `endpoints` list too.
 */
function roleFlags(
  urls: string | undefined,
  model: string | undefined,
  apiKeyEnv: string | undefined,
): Record<string, unknown> | undefined {
  const given: Record<string, unknown> = {};
  if (urls !== undefined) {
    const list = commaList(urls);
    given.baseUrl = list[0] ?? urls;
    given.endpoints = list.map((baseUrl) => ({ baseUrl }));
  }
  for (const [key, value] of Object.entries({ model, apiKeyEnv }))
    if (value !== undefined) given[key] = value;
  return Object.keys(given).length === 0 ? undefined : given;
}
