/**
 * Admission control for one endpoint, in two layers:
 *  - an adaptive concurrency limit (AIMD): it grows by one after a window of successes, is halved on the first
 *    429/503 of a burst, pauses for Retry-After until the delay passes or a call succeeds (whichever is first),
 *    remembers the level that failed and approaches it slowly, and never exceeds the configured maximum
 *    (self-hosted servers need a concurrency cap);
 *  - optional token buckets for requests and tokens per minute (hosted APIs): a call reserves an estimate and
 *    the difference is refunded when the real usage is known.
 * Waiting calls queue in FIFO order; the number of callers is bounded by the engine's stage concurrency, so a
 * saturated endpoint slows the pipeline down to the Parquet source instead of piling up promises.
 */
export interface AdmissionOptions {
  readonly maxConcurrency: number;
  readonly initialConcurrency: number;
  readonly minConcurrency?: number;
  readonly rpm?: number;
  readonly tpm?: number;
  /** Clock and timer, replaceable in tests. */
  readonly now?: () => number;
  /**
   * Called when a permit may have become free without a release (a pause ended, a bucket refilled), so a
   * dispatcher over several admissions (llm/replicas.ts) that uses `tryAcquire` can try again.
   */
  readonly onReady?: () => void;
}

export interface Permit {
  /** Tokens reserved from the TPM bucket (refunded by `release`). */
  readonly reservedTokens: number;
  /** The limit epoch the call started in: overload signals from older epochs are one burst. */
  readonly epoch: number;
}

export type Outcome = 'success' | 'overloaded' | 'failure';

export class Admission {
  private limitValue: number;
  private inFlight = 0;
  private successes = 0;
  private epoch = 0;
  /** The limit at which the endpoint last said it was overloaded. */
  private failedAt: number | undefined;
  private pausedUntil = 0;
  /** When the current Retry-After pause began (undefined: not paused). */
  private pausedSince: number | undefined;
  private readonly waiting: Array<{ tokens: number; resolve: (permit: Permit) => void }> = [];
  private readonly requests: TokenBucket | undefined;
  private readonly tokens: TokenBucket | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When `timer` fires, on the `now` clock (Infinity: no timer). */
  private timerAt = Infinity;
  private readonly now: () => number;
  /** Counters for accounting and tests. */
  readonly counters = { cuts: 0, peakLimit: 0, peakInFlight: 0, pauses: 0, pausedMs: 0 };

  constructor(private readonly options: AdmissionOptions) {
    this.now = options.now ?? (() => performance.now());
    this.limitValue = Math.min(options.initialConcurrency, options.maxConcurrency);
    this.counters.peakLimit = this.limitValue;
    if (options.rpm !== undefined)
      this.requests = new TokenBucket(options.rpm, options.rpm / 60_000, this.now);
    if (options.tpm !== undefined) this.tokens = new TokenBucket(options.tpm, options.tpm / 60_000, this.now);
  }

  get limit(): number {
    return this.limitValue;
  }

  get active(): number {
    return this.inFlight;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** True while a Retry-After pause holds new calls back. */
  get paused(): boolean {
    return this.pausedSince !== undefined && this.now() < this.pausedUntil;
  }

  /** Waits for a slot (and budget); `estimatedTokens` is reserved from the TPM bucket. */
  acquire(estimatedTokens = 0): Promise<Permit> {
    return new Promise((resolve) => {
      this.waiting.push({ tokens: estimatedTokens, resolve });
      this.pump();
    });
  }

  /**
   * A permit now if one is free (no pause, under the limit, budget left), else undefined; never queues. A pause
   * or an empty bucket arms the timer that calls `onReady`.
   */
  tryAcquire(estimatedTokens = 0): Permit | undefined {
    if (this.waiting.length > 0 || this.inFlight >= this.limitValue) return undefined;
    const now = this.now();
    if (this.pausedSince !== undefined) {
      if (now < this.pausedUntil) {
        this.wakeAt(this.pausedUntil - now);
        return undefined;
      }
      this.endPause(this.pausedUntil);
    }
    const wait = Math.max(this.requests?.waitFor(1) ?? 0, this.tokens?.waitFor(estimatedTokens) ?? 0);
    if (wait > 0) {
      this.wakeAt(wait);
      return undefined;
    }
    return this.grant(estimatedTokens);
  }

  /**
   * A saturation signal that comes without a refusal (the server queues: llm/saturation.ts): the limit goes down
   * to `to`, as on a refusal, but no pause. Calls in flight above it finish; none is sent until under it.
   */
  shrink(to: number): void {
    const target = Math.max(this.options.minConcurrency ?? 1, Math.floor(to));
    if (target >= this.limitValue) return;
    this.epoch++;
    this.counters.cuts++;
    this.failedAt = this.limitValue;
    this.limitValue = target;
    this.successes = 0;
  }

  /** Ends a call: adjusts the limit by its outcome and refunds the unused token reservation. */
  release(permit: Permit, outcome: Outcome, actualTokens?: number, retryAfterS?: number): void {
    this.inFlight--;
    if (this.tokens !== undefined && actualTokens !== undefined) {
      this.tokens.refund(permit.reservedTokens - actualTokens);
    }
    if (outcome === 'success') this.onSuccess();
    else if (outcome === 'overloaded') this.onOverload(permit, retryAfterS);
    this.pump();
  }

  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private onSuccess(): void {
    // A success shows the server is serving: a Retry-After pause ends here, and the limit (cut by the refusal)
    // decides what is sent. Held to its end, a pause after one refused call drains a server that is still
    // serving the others and then leaves every slot idle (bench/RESULTS-saturation.md: busy 0.86, not 0.98).
    if (this.pausedSince !== undefined) this.endPause(this.now());
    this.successes++;
    // One step per window of `limit` successes (additive increase per round of the window); at or above
    // the level that last failed, four windows, so the limit creeps back to it instead of hammering it.
    const nearFailure = this.failedAt !== undefined && this.limitValue + 1 >= this.failedAt;
    const window = this.limitValue * (nearFailure ? 4 : 1);
    if (this.successes < window || this.limitValue >= this.options.maxConcurrency) return;
    this.successes = 0;
    this.limitValue++;
    this.counters.peakLimit = Math.max(this.counters.peakLimit, this.limitValue);
  }

  private onOverload(permit: Permit, retryAfterS: number | undefined): void {
    if (retryAfterS !== undefined && retryAfterS > 0) {
      const now = this.now();
      if (this.pausedSince === undefined) {
        this.pausedSince = now;
        this.counters.pauses++;
      }
      this.pausedUntil = Math.max(this.pausedUntil, now + retryAfterS * 1000);
    }
    // Calls admitted before the last cut belong to the same burst: one cut per burst.
    if (permit.epoch < this.epoch) return;
    this.epoch++;
    this.counters.cuts++;
    this.failedAt = this.limitValue;
    this.limitValue = Math.max(this.options.minConcurrency ?? 1, Math.floor(this.limitValue / 2));
    this.successes = 0;
  }

  private pump(): void {
    const now = this.now();
    if (this.pausedSince !== undefined) {
      if (now < this.pausedUntil) return this.wakeAt(this.pausedUntil - now);
      this.endPause(this.pausedUntil);
    }
    while (this.waiting.length > 0 && this.inFlight < this.limitValue) {
      const next = this.waiting[0]!;
      const wait = Math.max(this.requests?.waitFor(1) ?? 0, this.tokens?.waitFor(next.tokens) ?? 0);
      if (wait > 0) return this.wakeAt(wait);
      this.waiting.shift();
      next.resolve(this.grant(next.tokens));
    }
  }

  private grant(tokens: number): Permit {
    this.requests?.take(1);
    this.tokens?.take(tokens);
    this.inFlight++;
    this.counters.peakInFlight = Math.max(this.counters.peakInFlight, this.inFlight);
    return { reservedTokens: tokens, epoch: this.epoch };
  }

  private endPause(at: number): void {
    if (this.pausedSince !== undefined) this.counters.pausedMs += at - this.pausedSince;
    this.pausedSince = undefined;
    this.pausedUntil = 0;
  }

  /** One timer for the earliest wake-up needed: a later request keeps it, an earlier one replaces it. */
  private wakeAt(ms: number): void {
    const at = this.now() + ms;
    if (this.timer !== undefined) {
      if (at >= this.timerAt) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.pump();
      this.options.onReady?.();
    }, Math.ceil(ms));
  }
}

/** A token bucket of `capacity`, refilled at `perMs`; reservations may exceed what is left (debt). */
export class TokenBucket {
  private level: number;
  private last: number;

  constructor(
    private readonly capacity: number,
    private readonly perMs: number,
    private readonly now: () => number,
  ) {
    this.level = capacity;
    this.last = now();
  }

  /** Milliseconds until `amount` is available (0 if now); a request larger than capacity waits for a full bucket. */
  waitFor(amount: number): number {
    this.refill();
    const need = Math.min(amount, this.capacity) - this.level;
    return need <= 0 ? 0 : need / this.perMs;
  }

  take(amount: number): void {
    this.refill();
    this.level -= amount;
  }

  refund(amount: number): void {
    this.refill();
    this.level = Math.min(this.capacity, this.level + amount);
  }

  private refill(): void {
    const now = this.now();
    this.level = Math.min(this.capacity, this.level + (now - this.last) * this.perMs);
    this.last = now;
  }
}
