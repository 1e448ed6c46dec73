import type { Command } from 'commander';
import { readPlan } from '../job/plan/plan-file.js';
import { queueName } from '../job/queue/connection.js';
import { QueueError } from '../job/queue/errors.js';
import { queueRoot, readQueueFile } from '../job/queue/units.js';
import { runWorker, WORKER_DEFAULTS } from '../job/queue/worker.js';
import { parseRunConfig } from '../job/config.js';
import { planFile } from '../job/plan/layout.js';
import { nonNegativeArg, positiveArg, positiveIntArg } from './args.js';
import { EXIT, type CliIO } from './io.js';
import { watchStops } from './stop-signals.js';

interface WorkerFlags {
  queue: string;
  plan: string;
  lockSeconds?: number;
  stalledInterval?: number;
  maxStalled?: number;
  concurrency?: number;
  untilEmpty?: boolean;
}

/** `air worker`: runs units of an enqueued plan until stopped (or, with --until-empty, until none is left). */
export function registerWorkerCommand(program: Command, io: CliIO, setExit: (code: number) => void): void {
  program
    .command('worker')
    .description('Take units of an enqueued plan from Redis and run each into its own attempt folder.')
    .requiredOption('--queue <url>', 'the Redis holding the queue: redis://host:port/db')
    .requiredOption('--plan <file>', 'the plan that was enqueued (<root>/plan.json, or the root)')
    .option(
      '--lock-seconds <s>',
      `a unit's lock; a worker silent this long loses it (default: ${WORKER_DEFAULTS.lockSeconds})`,
      positiveArg,
    )
    .option(
      '--stalled-interval <s>',
      `how often units of dead workers are looked for (default: ${WORKER_DEFAULTS.stalledIntervalSeconds})`,
      positiveArg,
    )
    .option(
      '--max-stalled <n>',
      `stalls (a worker died holding it) before a unit is failed (default: ${WORKER_DEFAULTS.maxStalledCount})`,
      nonNegativeArg,
    )
    .option(
      '--concurrency <n>',
      `units run at once by this worker (default: ${WORKER_DEFAULTS.concurrency})`,
      positiveIntArg,
    )
    .option('--until-empty', 'exit once no unit is waiting or running anywhere (default: wait for more)')
    .addHelpText(
      'after',
      `
Exit codes: 0 stopped with --until-empty and no unit failed, 1 a unit failed for good (air enqueue again
retries it), 2 usage error (no queue.json: run air enqueue first), 130/143 stopped by SIGINT/SIGTERM (running
units committed what they had and went back to the queue).

Example:
  air worker --queue redis://redis:6379/0 --plan /job/plan.json`,
    )
    .action(async (flags: WorkerFlags) => {
      const root = await queueRoot(flags.plan);
      const plan = await readPlan(flags.plan);
      const queued = await readQueueFile(root);
      if (queued === undefined || queued.queue !== queueName(plan)) {
        io.stderr(
          `air: ${root}: ${queued === undefined ? 'not enqueued' : `enqueued from another plan (${queued.queue})`}; ` +
            `run air enqueue --queue ${flags.queue} --plan ${flags.plan} first\n`,
        );
        setExit(EXIT.usage);
        return;
      }
      const grace = parseRunConfig(plan.config, planFile(root)).engine.graceSeconds;
      const stops = watchStops(io, grace);
      try {
        const summary = await runWorker(
          root,
          plan,
          {
            url: flags.queue,
            lockSeconds: flags.lockSeconds ?? WORKER_DEFAULTS.lockSeconds,
            stalledIntervalSeconds: flags.stalledInterval ?? WORKER_DEFAULTS.stalledIntervalSeconds,
            maxStalledCount: flags.maxStalled ?? WORKER_DEFAULTS.maxStalledCount,
            concurrency: flags.concurrency ?? WORKER_DEFAULTS.concurrency,
            untilEmpty: flags.untilEmpty === true,
          },
          { signal: stops.signal, log: (line) => io.stderr(`air: ${line}\n`) },
        );
        io.stderr(
          `air: worker done: ${summary.counted} units counted, ${summary.discarded} discarded (another attempt ` +
            `counted), ${summary.givenBack} handed back, ${summary.failed} failed here\n`,
        );
        const stopped = stops.exitCode();
        setExit(stopped ?? (summary.failedInQueue > 0 ? EXIT.failure : EXIT.ok));
      } catch (error) {
        if (!(error instanceof QueueError)) throw error;
        io.stderr(`air: ${error.message}\n`);
        setExit(EXIT.usage);
      } finally {
        stops.dispose();
      }
    });
}
