import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { Queue, WaitingError, Worker, type Job } from 'bullmq';
import { errorMessage } from '../../pipeline/errors.js';
import type { Plan } from '../../schemas/plan.js';
import { HEARTBEAT_SECONDS } from '../plan/layout.js';
import type { JobOptions } from '../run-job.js';
import { queueName, redisOptions, type UnitJobData } from './connection.js';
import { QueueError } from './errors.js';
import { runUnit } from './run-unit.js';
import { readQueueFile } from './units.js';

/**
 * Defaults for preemptible machines. BullMQ's own (a 30 s lock, a stall check every 30 s) hand a dead worker's
 * unit to another after about 60 s; 5 s / 2 s after about 5.5 s (measured: bench/RESULTS-queue.md). A lock
 * is renewed every half lock, so only an event loop blocked for 5 s loses it (and then two attempts run: only one
 * counts, see units.ts). A stall (a killed or preempted worker) is normal on such fleets: ten are allowed before
 * BullMQ fails the unit; `air enqueue` again hands a failed unit back.
 */
export const WORKER_DEFAULTS = {
  lockSeconds: 5,
  stalledIntervalSeconds: 2,
  maxStalledCount: 10,
  concurrency: 1,
} as const;

export interface WorkerSettings {
  /** `redis://host:port/db`. */
  readonly url: string;
  readonly lockSeconds: number;
  readonly stalledIntervalSeconds: number;
  readonly maxStalledCount: number;
  /** Units run at once by this process. */
  readonly concurrency: number;
  /** Exit once no unit is waiting, delayed or running anywhere (a batch), instead of waiting for more. */
  readonly untilEmpty: boolean;
}

export interface WorkerRunOptions extends Pick<JobOptions, 'env' | 'onDownload'> {
  /** Aborted by SIGTERM/SIGINT: running units stop cleanly, commit, and go back to the queue. */
  readonly signal: AbortSignal;
  readonly log: (line: string) => void;
  /** Display settings of this process (progress), over the plan's. */
  readonly display?: Readonly<Record<string, unknown>>;
}

export interface WorkerSummary {
  /** Units whose attempt here completed and counts. */
  readonly counted: number;
  /** Units whose attempt here completed after another attempt had counted (a double run): discarded. */
  readonly discarded: number;
  /** Units handed back to the queue by a stop. */
  readonly givenBack: number;
  /** Units that failed here (BullMQ retries them up to the enqueued attempts). */
  readonly failed: number;
  /** Units BullMQ holds as failed for good when this worker stopped (untilEmpty only). */
  readonly failedInQueue: number;
}

/**
 * `air worker`: takes units from the plan's queue and runs each as an attempt (run-unit.ts) until stopped, or
 * until the queue is empty with `untilEmpty`. A stop aborts the running units (they commit what is done) and
 * moves each back to waiting, so another worker continues it at once, without spending a stall or an attempt.
 */
export async function runWorker(
  root: string,
  plan: Plan,
  settings: WorkerSettings,
  options: WorkerRunOptions,
): Promise<WorkerSummary> {
  const id = `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const queued = await readQueueFile(root);
  if (queued === undefined) throw new QueueError('AIR_QUEUE_INVALID', `${root}: not enqueued (air enqueue)`);
  const tally = { counted: 0, discarded: 0, givenBack: 0, failed: 0 };
  let active = 0;
  const process_ = async (job: Job<UnitJobData>, token?: string): Promise<{ attempt: string }> => {
    active++;
    try {
      return await processUnit(job, token);
    } finally {
      active--;
    }
  };
  const processUnit = async (job: Job<UnitJobData>, token?: string): Promise<{ attempt: string }> => {
    const { unit, label } = job.data;
    const queuedUnit = queued.units[unit];
    if (queuedUnit === undefined) {
      throw new QueueError('AIR_QUEUE_INVALID', `${root}: the queue has no unit ${unit} (queue.json)`);
    }
    const outcome = await runUnit(root, plan, queuedUnit, {
      signal: options.signal,
      env: options.env,
      onDownload: options.onDownload,
      log: (line) => options.log(`unit ${label}: ${line}`),
      display: options.display,
      heartbeatSeconds: HEARTBEAT_SECONDS,
      owner: {
        worker: id,
        job: job.id,
        attemptsMade: job.attemptsMade,
        stalledCounter: job.stalledCounter,
      },
    });
    if (outcome.status === 'already-complete') {
      options.log(`unit ${label}: already complete (${outcome.completion.attempt})`);
      return { attempt: outcome.completion.attempt };
    }
    const { attempt, result, counted } = outcome;
    const from = outcome.seededFrom === undefined ? '' : ` (continued from ${outcome.seededFrom})`;
    const status = result.report.status;
    if (status === 'completed' && counted !== undefined) {
      if (counted.attempt === attempt) {
        tally.counted++;
        options.log(`unit ${label}: ${attempt}${from} complete, ${counted.rowsWritten} rows; it counts`);
      } else {
        tally.discarded++;
        options.log(
          `unit ${label}: ${attempt}${from} complete, but ${counted.attempt} already counts: ${attempt} is discarded`,
        );
      }
      return { attempt: counted.attempt };
    }
    if (status === 'interrupted' && options.signal.aborted) {
      tally.givenBack++;
      options.log(`unit ${label}: ${attempt}${from} stopped; unit handed back to the queue`);
      // Waiting again, not failed or stalled: the next worker continues from this attempt's commits.
      await job.moveToWait(token);
      throw new WaitingError();
    }
    tally.failed++;
    throw new Error(
      `${attempt}: ${status}${result.report.error === undefined ? '' : `: ${result.report.error}`}`,
    );
  };

  const name = queueName(plan);
  const worker = new Worker<UnitJobData, { attempt: string }>(name, process_, {
    connection: redisOptions(settings.url),
    concurrency: settings.concurrency,
    lockDuration: settings.lockSeconds * 1000,
    stalledInterval: settings.stalledIntervalSeconds * 1000,
    maxStalledCount: settings.maxStalledCount,
    // A worker never holds on to finished jobs: a known id must stay known for idempotent enqueueing.
    removeOnComplete: { count: Number.MAX_SAFE_INTEGER },
    autorun: false,
  });
  // Redis gone for a while (a restart) is logged and waited out; BullMQ reconnects by itself.
  let lastError = '';
  worker.on('error', (error) => {
    const line = errorMessage(error);
    if (line !== lastError) options.log(`queue: ${line}`);
    lastError = line;
  });
  worker.on('failed', (job, error) => {
    if (job !== undefined && !(error instanceof WaitingError)) {
      options.log(`unit ${job.data.label}: failed: ${error.message}`);
    }
  });
  worker.on('lockRenewalFailed', (ids) => {
    options.log(`queue: lost the lock of ${ids.join(', ')}; the attempt goes on, another may run too`);
  });
  const queue = new Queue(name, { connection: redisOptions(settings.url) });
  queue.on('error', () => {}); // the worker's own connection reports the same outage, once per kind
  let failedInQueue = 0;
  const stop = (): void => {
    void worker.close();
  };
  options.signal.addEventListener('abort', stop, { once: true });
  let watcher: NodeJS.Timeout | undefined;
  if (settings.untilEmpty) {
    const check = async (): Promise<void> => {
      if (active > 0 || worker.closing !== undefined) return;
      const counts = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'failed');
      const left = counts.wait! + counts.active! + counts.delayed! + counts.prioritized!;
      if (left === 0 && active === 0) {
        failedInQueue = counts.failed!;
        for (const job of await queue.getFailed()) {
          options.log(`unit ${String(job.data.label)}: failed for good: ${job.failedReason}`);
        }
        options.log('queue: empty; stopping');
        stop();
      }
    };
    watcher = setInterval(() => {
      check().catch((error: unknown) => options.log(`queue: ${errorMessage(error)}`));
    }, 1000);
  }
  try {
    options.log(`worker ${id}: queue ${name} at ${settings.url}, ${settings.concurrency} unit(s) at once`);
    if (!options.signal.aborted) await worker.run();
    await worker.close();
  } finally {
    if (watcher !== undefined) clearInterval(watcher);
    options.signal.removeEventListener('abort', stop);
    await queue.close();
  }
  return { ...tally, failedInQueue };
}
