import { Piscina } from 'piscina';
import type { Transferable } from 'node:worker_threads';
import { workerEntry } from './worker-file.js';

export interface WorkerPoolOptions {
  /** Worker module (a file path or file: URL) whose default export handles one task. */
  readonly filename: string | URL;
  /** Worker threads; defaults to the number of cores. */
  readonly threads: number;
  /** Tasks that may wait for a free thread; submissions beyond threads + maxQueue wait in `run`. */
  readonly maxQueue: number;
}

/**
 * A piscina pool with real backpressure. Piscina's own `maxQueue` rejects overflow, and its `needsDrain`
 * flag is updated a microtask late, so gating on it overflows. Instead every submission takes a slot from
 * a counter of threads + maxQueue and waits, in FIFO order, when none is free: the queue can never overflow
 * and a producer of tasks is slowed to the pool's pace.
 */
export class WorkerPool {
  private readonly piscina: Piscina;
  private readonly capacity: number;
  private used = 0;
  private readonly waiting: Array<() => void> = [];
  /** Highest piscina queue length seen at submission (for tests and stats). */
  maxQueueSeen = 0;

  constructor(options: WorkerPoolOptions) {
    const { filename, execArgv } = workerEntry(options.filename);
    this.capacity = options.threads + options.maxQueue;
    this.piscina = new Piscina({
      filename,
      execArgv,
      minThreads: options.threads,
      maxThreads: options.threads,
      maxQueue: options.maxQueue,
    });
  }

  /** Runs one task; `transferList` buffers are moved to the worker, not copied. */
  async run<TOut>(
    task: unknown,
    options: { transferList?: Transferable[]; signal?: AbortSignal } = {},
  ): Promise<TOut> {
    await this.acquire();
    try {
      if (this.piscina.queueSize > this.maxQueueSeen) this.maxQueueSeen = this.piscina.queueSize;
      return (await this.piscina.run(task, {
        transferList: options.transferList as never,
        signal: options.signal ?? null,
      })) as TOut;
    } finally {
      this.release();
    }
  }

  get threads(): number {
    return this.piscina.threads.length;
  }

  /** Tasks submitted and not yet finished (running or queued inside piscina). */
  get pending(): number {
    return this.used;
  }

  /** Tasks waiting for a slot before reaching piscina. */
  get blocked(): number {
    return this.waiting.length;
  }

  async close(): Promise<void> {
    await this.piscina.destroy();
  }

  private async acquire(): Promise<void> {
    if (this.used < this.capacity) {
      this.used++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    // Hand the slot straight to the next waiter so no late arrival can jump the queue.
    if (next !== undefined) next();
    else this.used--;
  }
}
