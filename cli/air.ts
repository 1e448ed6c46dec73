#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { errorMessage } from '../pipeline/errors.js';
import { registerBenchCommand } from './bench-command.js';
import { registerEnqueueCommand } from './enqueue-command.js';
import { defaultIO, EXIT, isUsageError, type CliIO } from './io.js';
import { registerMergeCommand } from './merge-command.js';
import { registerPlanCommand } from './plan-command.js';
import { registerRetryCommand, registerRunCommand } from './run-command.js';
import { registerScoreCommand } from './score-command.js';
import { registerSimCommand } from './sim-command.js';
import { registerStatsCommand } from './stats-command.js';
import { registerStatusCommand } from './status-command.js';
import { registerWorkerCommand } from './worker-command.js';

export { EXIT, type CliIO } from './io.js';

/** Runs the CLI; resolves to the process exit code instead of exiting, so tests can call it. */
export async function main(argv: readonly string[], io: CliIO = defaultIO): Promise<number> {
  let exitCode: number = EXIT.ok;
  const program = new Command('air')
    .description('Turn web-crawl Parquet shards into complex-instruction training data (AIR method).')
    .version(await packageVersion(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });

  const setExit = (code: number): void => {
    exitCode = code;
  };
  registerRunCommand(program, io, setExit);
  registerRetryCommand(program, io, setExit);

  registerSimCommand(program, { stdout: io.stdout });
  registerBenchCommand(program, io, setExit);
  registerScoreCommand(program, io);
  registerStatsCommand(program, io);
  registerPlanCommand(program, io, setExit);
  registerStatusCommand(program, io, setExit);
  registerMergeCommand(program, io, setExit);
  registerEnqueueCommand(program, io, setExit);
  registerWorkerCommand(program, io, setExit);

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
