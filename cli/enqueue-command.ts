import type { Command } from 'commander';
import { readPlan } from '../job/plan/plan-file.js';
import { ENQUEUE_ATTEMPTS, enqueueUnits, SLICE_MB } from '../job/queue/enqueue.js';
import { QueueError } from '../job/queue/errors.js';
import { queueRoot } from '../job/queue/units.js';
import { formatCount } from '../report/format.js';
import { nonNegativeArg, positiveArg, positiveIntArg } from './args.js';
import { EXIT, type CliIO } from './io.js';
import { DEDUPE_LOCK_STALE_SECONDS, DEDUPE_WAIT_SECONDS } from './plan-run.js';
import { watchStops } from './stop-signals.js';

interface EnqueueFlags {
  queue: string;
  plan: string;
  attempts?: number;
  sliceMb?: number;
  dedupeWait?: number;
  dedupeLockStale?: number;
}

/** `air enqueue`: one BullMQ job per unit of a plan (a shard, or a slice of a big one), idempotent. */
export function registerEnqueueCommand(program: Command, io: CliIO, setExit: (code: number) => void): void {
  program
    .command('enqueue')
    .description(
      'Put every unit of a plan (a shard, or a slice of row groups of a big one) in a Redis queue for air worker; enqueueing twice adds nothing.',
    )
    .requiredOption('--queue <url>', 'the Redis holding the queue: redis://host:port/db')
    .requiredOption('--plan <file>', 'the plan to enqueue (<root>/plan.json, or the root)')
    .option(
      '--attempts <n>',
      `failed runs of a unit before it is failed; enqueue again to retry it (default: ${ENQUEUE_ATTEMPTS})`,
      positiveIntArg,
    )
    .option(
      '--slice-mb <mb>',
      `cut shards larger than this into units of consecutive row groups of at most this size (default: ${SLICE_MB})`,
      positiveArg,
    )
    .option(
      '--dedupe-wait <seconds>',
      `longest wait for a global dedupe step another process runs (default: ${DEDUPE_WAIT_SECONDS})`,
      nonNegativeArg,
    )
    .option(
      '--dedupe-lock-stale <seconds>',
      `take over a dedupe lock this old whose holder is not seen alive (default: ${DEDUPE_LOCK_STALE_SECONDS})`,
      nonNegativeArg,
    )
    .addHelpText(
      'after',
      `
With dedupe on, the keys of every shard and the global dedupe step run here first, in this process.
Exit codes: 0 enqueued (or already), 1 Redis unreachable or a dedupe failure, 2 usage, plan or queue URL error.

Example:
  air enqueue --queue redis://redis:6379/0 --plan /job/plan.json`,
    )
    .action(async (flags: EnqueueFlags) => {
      const root = await queueRoot(flags.plan);
      const plan = await readPlan(flags.plan);
      const stops = watchStops(io, 0);
      try {
        const done = await enqueueUnits(root, plan, {
          url: flags.queue,
          attempts: flags.attempts ?? ENQUEUE_ATTEMPTS,
          sliceMB: flags.sliceMb ?? SLICE_MB,
          dedupeWaitSeconds: flags.dedupeWait ?? DEDUPE_WAIT_SECONDS,
          lockStaleSeconds: flags.dedupeLockStale ?? DEDUPE_LOCK_STALE_SECONDS,
          signal: stops.signal,
          log: (line) => io.stderr(`air: ${line}\n`),
        });
        io.stdout(
          `queue ${done.queue}: ${formatCount(done.units)} units` +
            (done.slices === 0 ? '' : ` (${formatCount(done.slices)} of them slices of big shards)`) +
            `, ${formatCount(done.added)} added, ` +
            `${formatCount(done.retried)} failed ones handed back, ${formatCount(done.complete)} already complete\n`,
        );
      } catch (error) {
        if (!(error instanceof QueueError)) throw error;
        io.stderr(`air: ${error.message}\n`);
        setExit(error.code === 'AIR_QUEUE_UNREACHABLE' ? EXIT.failure : EXIT.usage);
      } finally {
        stops.dispose();
      }
    });
}
