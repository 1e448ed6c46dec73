#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { parseRunConfig, type RunConfig } from '../job/config.js';
import { prepareRetry } from '../job/retry-failed.js';
import { runJob, type JobOptions, type JobResult } from '../job/run-job.js';
import { AirError, errorMessage } from '../pipeline/errors.js';
import { MANIFEST_FILE, readManifest } from '../pipeline/io/manifest.js';
import { peakRssMB } from '../pipeline/memory.js';
import type { PipelineRun } from '../pipeline/run.js';
import { registerBenchCommand } from './bench-command.js';
import { mergeConfig, readConfigFile } from './config-file.js';
import { registerMergeCommand } from './merge-command.js';
import { registerPlanCommand } from './plan-command.js';
import { DEDUPE_LOCK_STALE_SECONDS, DEDUPE_WAIT_SECONDS, isPlanRefusal, runPlanRanks } from './plan-run.js';
import { nonNegativeArg } from './args.js';
import { ProgressReporter } from './progress.js';
import { settingOption, settingsFromFlags, SETTING_FLAGS } from './setting-flags.js';
import { registerScoreCommand } from './score-command.js';
import { registerSimCommand } from './sim-command.js';
import { registerStatsCommand } from './stats-command.js';
import { registerStatusCommand } from './status-command.js';
import { summaryLines } from './summary.js';
import { formatDownload } from './format.js';
import { watchLauncher } from './launcher.js';
import type { DownloadProgress } from '../llm/model-files.js';

export const EXIT = { ok: 0, failure: 1, usage: 2, sigint: 130, sigterm: 143 } as const;

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stderr is a terminal (live progress table) or not (periodic log lines). */
  isTTY: boolean;
}

const defaultIO: CliIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  isTTY: process.stderr.isTTY === true,
};

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

/** Runs the CLI; resolves to the process exit code instead of exiting, so tests can call it. */
export async function main(argv: readonly string[], io: CliIO = defaultIO): Promise<number> {
  let exitCode: number = EXIT.ok;
  const program = new Command('air')
    .description('Turn web-crawl Parquet shards into complex-instruction training data (AIR method).')
    .version(await packageVersion(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });

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
    .option('--guidance-url <url>', 'base URL of the guidance (large) model server, up to /v1')
    .option('--guidance-model <name>', 'guidance model name, or local:<path.gguf> to run it inside air')
    .option('--student-url <url>', 'base URL of the student (small) model server, up to /v1')
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
      exitCode = await runCommand(flags, io);
    });
  const run = program.commands.find((c) => c.name() === 'run')!;
  for (const flag of SETTING_FLAGS) run.addOption(settingOption(flag));

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
      exitCode = await runCommand({ resume: dir, progress: flags.progress }, io);
    });

  registerSimCommand(program, { stdout: io.stdout });
  registerBenchCommand(program, io, (code) => (exitCode = code));
  registerScoreCommand(program, io);
  registerStatsCommand(program, io);
  registerPlanCommand(program, io, (code) => (exitCode = code));
  registerStatusCommand(program, io, (code) => (exitCode = code));
  registerMergeCommand(program, io, (code) => (exitCode = code));

  try {
    await program.parseAsync(argv as string[], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version exit through here with code 0.
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    io.stderr(`air: ${errorMessage(error)}\n`);
    return isUsageError(error) ? EXIT.usage : EXIT.failure;
  }
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT.usage;
  }
  return exitCode;
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
  const stop = new AbortController();
  let stopSignal: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopSignal !== undefined) {
      io.stderr(
        `\nair: second ${signal}: quitting now; rows not yet committed are lost (committed part files are kept)\n`,
      );
      process.exit(signal === 'SIGINT' ? EXIT.sigint : EXIT.sigterm);
    }
    stopSignal = signal;
    io.stderr(
      `\nair: ${signal} received: reading no new input, finishing in-flight records ` +
        `(up to ${config.engine.graceSeconds}s), then writing what is done. Send it again to quit at once.\n`,
    );
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A launcher gone is a stop, never the second signal that quits at once (`timeout` signals both).
  const stopWatching = watchLauncher(() => {
    if (stopSignal !== undefined) return;
    io.stderr('\nair: the npm process that started air has exited');
    onSignal('SIGTERM');
  });

  const mode = config.progress === 'auto' ? (io.isTTY ? 'tty' : 'log') : config.progress;
  let timer: NodeJS.Timeout | undefined;
  let reporter: ProgressReporter | undefined;
  let run: PipelineRun | undefined;
  try {
    const result = await start({
      signal: stop.signal,
      onDownload: downloadDisplay(mode, io, config.progressIntervalSeconds),
      log: (line) => io.stderr(`air: ${line}\n`),
      onStart: (started) => {
        run = started;
        if (mode === 'off') return;
        reporter = new ProgressReporter(mode, io.stderr);
        const intervalMs = mode === 'tty' ? 500 : config.progressIntervalSeconds * 1000;
        timer = setInterval(() => reporter!.update(started.snapshot()), intervalMs);
        timer.unref();
      },
    });
    if (timer !== undefined) clearInterval(timer);
    if (typeof result === 'string') {
      io.stderr(`air: ${result}\n`);
      return EXIT.ok;
    }
    if (reporter !== undefined && run !== undefined) reporter.finish(run.snapshot());
    for (const line of summaryLines(result.report, config.output)) io.stderr(`${line}\n`);
    io.stderr(`ledger: ${result.ledgerFile} · peak memory ${peakRssMB()} MB\n`);
    if (result.report.status === 'failed') return EXIT.failure;
    if (result.report.status === 'interrupted') return stopSignal === 'SIGTERM' ? EXIT.sigterm : EXIT.sigint;
    return EXIT.ok;
  } catch (error) {
    io.stderr(`air: ${errorMessage(error)}\n`);
    // Stopped before the run began (a model download): the exit code still says which signal stopped it.
    if (stopSignal !== undefined) return stopSignal === 'SIGTERM' ? EXIT.sigterm : EXIT.sigint;
    return isUsageError(error) || isPlanRefusal(error) ? EXIT.usage : EXIT.failure;
  } finally {
    if (timer !== undefined) clearInterval(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    stopWatching();
  }
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

/** Only the flags given, so a config file's other endpoint settings survive the merge. */
function roleFlags(
  baseUrl: string | undefined,
  model: string | undefined,
  apiKeyEnv: string | undefined,
): Record<string, string> | undefined {
  const given: Record<string, string> = {};
  for (const [key, value] of Object.entries({ baseUrl, model, apiKeyEnv }))
    if (value !== undefined) given[key] = value;
  return Object.keys(given).length === 0 ? undefined : given;
}

function isUsageError(error: unknown): boolean {
  return error instanceof AirError && (error.code === 'AIR_USAGE' || error.code === 'AIR_CONFIG_INVALID');
}

async function packageVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const url = new URL('../../package.json', import.meta.url);
  const fallback = new URL('../package.json', import.meta.url);
  for (const candidate of [url, fallback]) {
    try {
      return (JSON.parse(await readFile(candidate, 'utf8')) as { version: string }).version;
    } catch {
      // try the next location: compiled (dist/cli) and source (cli) sit at different depths
    }
  }
  return '0.0.0';
}

/** True when this module is the process entry point (also through npm's bin symlink). */
function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  // `air run --help | head` closes the pipe early: that is not an error worth a stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(EXIT.ok);
    throw error;
  });
  process.exitCode = await main(process.argv.slice(2));
  // Work abandoned by a stop (a model download that does not heed its signal) must not keep the process alive.
  setTimeout(() => process.exit(), 1000).unref();
}
