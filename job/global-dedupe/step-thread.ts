import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { siblingModule } from '../../pipeline/pool/worker-file.js';
import { WorkerPool } from '../../pipeline/pool/worker-pool.js';
import { GlobalDedupeError, type GlobalDedupeCode } from './errors.js';
import type { GlobalDedupeOptions, GlobalDedupeSummary } from './find-duplicates.js';

/** What the step's thread gets: everything but the log function, which does not cross threads (a port does). */
export interface StepTask {
  readonly root: string;
  readonly shards: readonly string[];
  readonly options: Omit<GlobalDedupeOptions, 'log'>;
  /** Log lines, then null once the step is over. */
  readonly log: MessagePort;
}

export type StepOutcome =
  | { readonly kind: 'done'; readonly summary: GlobalDedupeSummary }
  | { readonly kind: 'error'; readonly message: string; readonly code: string | undefined };

/**
 * findGlobalDuplicates in a worker thread. The step is minutes of synchronous sorting and merging on a large
 * job; on the main thread it would stop the rank's heartbeat and its lock refresh, and the other ranks would
 * take the lock of a holder that is working. Errors come back with their code (GlobalDedupeError) or message.
 * An abort ends the thread; the step's files are rewritten from the keys by whoever runs it next.
 */
export async function findGlobalDuplicatesInThread(
  root: string,
  shards: readonly string[],
  options: GlobalDedupeOptions & { readonly signal?: AbortSignal } = {},
): Promise<GlobalDedupeSummary> {
  const { log, signal, ...rest } = options;
  const pool = new WorkerPool({
    filename: siblingModule(import.meta.url, 'step-worker'),
    threads: 1,
    maxQueue: 0,
  });
  const { port1, port2 } = new MessageChannel();
  // The task ends its lines with null: messages keep their order, so every line has arrived by then.
  let drain!: () => void;
  const drained = new Promise<void>((resolve) => (drain = resolve));
  port1.on('message', (line: string | null) => (line === null ? drain() : log?.(line)));
  try {
    const task: StepTask = { root, shards, options: rest, log: port2 };
    const outcome = await pool.run<StepOutcome>(task, { transferList: [port2], signal });
    await drained;
    if (outcome.kind === 'done') return outcome.summary;
    throw outcome.code?.startsWith('AIR_DEDUPE_')
      ? new GlobalDedupeError(outcome.code as GlobalDedupeCode, outcome.message)
      : new Error(outcome.message);
  } finally {
    port1.close();
    await pool.close();
  }
}
