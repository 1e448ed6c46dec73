import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { ConfigError } from '../../pipeline/errors.js';

/**
 * The simulated inference server, modelled on vLLM's continuous batching:
 *
 * - The server runs at most `maxConcurrentSequences` sequences at once; each request holds one slot from
 *   admission until its answer is sent.
 * - A request's service time is `prompt_tokens / prefillTokensPerS + completion_tokens / decodeTokensPerSPerSequence`.
 *   Both rates are per sequence and do not slow down as the batch fills. Real servers share prefill across the
 *   batch and decode a little slower in large batches, so this model is optimistic for long prompts under load;
 *   it is meant to be simple enough that a test can predict wall times from it.
 * - Requests beyond the slots wait in one FIFO queue of at most `maxQueue`; past that they are refused (the server
 *   answers 503 with Retry-After, as an overloaded engine does).
 * - `zeroLatency` makes every service time 0 (all rates infinite), to measure the client's own overhead.
 *
 * The throughput ceiling follows: slots / mean service time requests per second (Little's law at full occupancy).
 */
export const capacityOptionsSchema = z.object({
  maxConcurrentSequences: z.number().int().positive().default(64),
  /** Prompt tokens a sequence prefills per second. */
  prefillTokensPerS: z.number().positive().default(20_000),
  /** Completion tokens each sequence decodes per second, whatever the batch size. */
  decodeTokensPerSPerSequence: z.number().positive().default(40),
  /** Requests that may wait for a slot; more are refused at once. */
  maxQueue: z.number().int().nonnegative().default(1024),
  zeroLatency: z.boolean().default(false),
});

export type CapacityOptions = z.input<typeof capacityOptionsSchema>;
export type CapacityConfig = z.output<typeof capacityOptionsSchema>;

export interface ThroughputCeiling {
  /** Service time of a request of the mean size, in seconds (0 in zero-latency mode). */
  readonly serviceTimeS: number;
  /** Requests per second with every slot busy (Infinity in zero-latency mode). */
  readonly requestsPerS: number;
  /** Completion tokens per second with every slot busy. */
  readonly completionTokensPerS: number;
  /** Prompt plus completion tokens per second with every slot busy. */
  readonly totalTokensPerS: number;
}

export interface CapacityStats {
  readonly inService: number;
  readonly queued: number;
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  /** Requests turned away because the queue was full. */
  readonly queueFull: number;
  /** Wall time during which at least one sequence was in service. */
  readonly busyMs: number;
  /** Slot-time held so far: the time integral of `inService` (busyMs × mean occupancy), running sequences included. */
  readonly sequenceMs: number;
  /** The time integral of `queued`: request-time spent waiting for a slot. */
  readonly queuedMs: number;
}

/** How `Capacity.serve` ended: served in full, refused for a full queue, or abandoned by the caller. */
export type ServeOutcome = 'served' | 'queue_full' | 'aborted';

export function resolveCapacity(options: CapacityOptions = {}): CapacityConfig {
  const parsed = capacityOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(
      `simulator capacity: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

export function serviceTimeMs(
  config: CapacityConfig,
  promptTokens: number,
  completionTokens: number,
): number {
  if (config.zeroLatency) return 0;
  return (
    (1000 * promptTokens) / config.prefillTokensPerS +
    (1000 * completionTokens) / config.decodeTokensPerSPerSequence
  );
}

/** The best the configured server can do for requests of the given mean size, every slot busy. */
export function throughputCeiling(
  config: CapacityConfig,
  load: { readonly meanPromptTokens: number; readonly meanReplyTokens: number },
): ThroughputCeiling {
  const serviceTimeS = serviceTimeMs(config, load.meanPromptTokens, load.meanReplyTokens) / 1000;
  const requestsPerS = serviceTimeS === 0 ? Infinity : config.maxConcurrentSequences / serviceTimeS;
  return {
    serviceTimeS,
    requestsPerS,
    completionTokensPerS: requestsPerS * load.meanReplyTokens,
    totalTokensPerS: requestsPerS * (load.meanPromptTokens + load.meanReplyTokens),
  };
}

interface Waiter {
  readonly start: () => void;
}

/** Slots, FIFO queue and the exact counters behind `SimulatorStats`. */
export class Capacity {
  readonly config: CapacityConfig;
  private readonly queue: Waiter[] = [];
  private inService = 0;
  private maxConcurrent = 0;
  private maxQueued = 0;
  private queueFull = 0;
  private busySince = 0;
  private busyMs = 0;
  /** Integrals of `inService` and `queue.length` over time, advanced before every change to either. */
  private sequenceMs = 0;
  private queuedMs = 0;
  private integratedTo = performance.now();

  constructor(options: CapacityOptions = {}) {
    this.config = resolveCapacity(options);
  }

  /**
   * Holds a slot for `serviceMs` (waiting in the queue for one first). Resolves, never rejects; the slot is
   * released early when `signal` aborts, as vLLM frees an aborted request's sequence. A function is called once the
   * slot is granted (what the server knows then, such as its prefix cache, may shorten the service).
   */
  async serve(serviceMs: number | (() => number), signal: AbortSignal): Promise<ServeOutcome> {
    if (signal.aborted) return 'aborted';
    if (this.inService >= this.config.maxConcurrentSequences) {
      if (this.queue.length >= this.config.maxQueue) {
        this.queueFull += 1;
        return 'queue_full';
      }
      if (!(await this.waitForSlot(signal))) return 'aborted';
    } else {
      this.occupy();
    }
    try {
      const ms = typeof serviceMs === 'function' ? serviceMs() : serviceMs;
      if (ms > 0) await sleep(ms, undefined, { signal });
      return 'served';
    } catch {
      return 'aborted';
    } finally {
      this.release();
    }
  }

  stats(): CapacityStats {
    const now = this.integrate();
    return {
      inService: this.inService,
      queued: this.queue.length,
      maxConcurrent: this.maxConcurrent,
      maxQueue: this.maxQueued,
      queueFull: this.queueFull,
      busyMs: this.busyMs + (this.inService > 0 ? now - this.busySince : 0),
      sequenceMs: this.sequenceMs,
      queuedMs: this.queuedMs,
    };
  }

  /** Resolves true once a slot was handed over, false if the signal aborted first. */
  private waitForSlot(signal: AbortSignal): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        start: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(true);
        },
      };
      const onAbort = (): void => {
        const index = this.queue.indexOf(waiter);
        if (index >= 0) {
          this.integrate();
          this.queue.splice(index, 1);
        }
        resolve(false);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.integrate();
      this.queue.push(waiter);
      this.maxQueued = Math.max(this.maxQueued, this.queue.length);
    });
  }

  private occupy(): void {
    const now = this.integrate();
    if (this.inService === 0) this.busySince = now;
    this.inService += 1;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.inService);
  }

  private release(): void {
    const now = this.integrate();
    // Hand the slot straight to the next waiter (synchronously, so the slot never idles while a request waits),
    // and a request arriving now cannot jump the queue.
    const next = this.queue.shift();
    if (next !== undefined) {
      next.start();
      return;
    }
    this.inService -= 1;
    if (this.inService === 0) this.busyMs += now - this.busySince;
  }

  /** Advances the integrals to now (call before `inService` or the queue changes); returns now. */
  private integrate(): number {
    const now = performance.now();
    const dt = now - this.integratedTo;
    this.sequenceMs += this.inService * dt;
    this.queuedMs += this.queue.length * dt;
    this.integratedTo = now;
    return now;
  }
}
