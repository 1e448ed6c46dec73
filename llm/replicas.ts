import type { Permit } from './admission.js';
import { CircuitBreaker } from './circuit.js';
import { describeEndpoint, type ReplicaEndpoint, type ResolvedEndpoint } from './endpoint.js';
import type { LlmError } from './errors.js';
import { closeLane, openLane, type Lane } from './layers/lane.js';
import { isLocalSpec } from './local.js';
import { SaturationSignal, type SaturationOptions, type SaturationState } from './saturation.js';

/**
 * The replicas of one role (a fleet serving the same model), each with its own lane: admission limit, health and
 * transport. A call goes to the healthy replica with the most free capacity, its calls in flight relative to its
 * limit and weight (never round robin: LLM call durations are heavy-tailed, so equal counts are unequal loads).
 *
 * Health: a replica that refuses connections (its process is gone) is taken out at once; one that fails
 * otherwise (5xx, timeouts, resets) after `failuresToEject` failures in a row. 429/503 are not failures of
 * health: they say "too many at once" and only cut that replica's admission limit. An ejected replica is probed
 * after a delay that doubles per failed probe (up to `ejectMaxMs`): one call goes to it, and its answer brings the
 * replica back. Calls wait while no replica can take them. The role's circuit opens (the run stops, every replica
 * named) only when no replica has answered for `circuitBreakerSeconds`.
 */
export interface ReplicaOptions {
  readonly now?: () => number;
  /** First ejection's length; doubled per failed probe. */
  readonly ejectBaseMs?: number;
  readonly ejectMaxMs?: number;
  /** Consecutive failures (other than a refused connection) that take a replica out. */
  readonly failuresToEject?: number;
  /** Replaces how `/metrics` is read (tests, benchmarks). */
  readonly fetchMetrics?: SaturationOptions['fetchText'];
  /** air processes sharing the servers (see SaturationOptions.sharers). */
  readonly sharers?: number;
}

/** What a replica did, for accounting and `air bench`. */
export interface ReplicaCounts {
  /** Attempts sent to it. */
  readonly attempts: number;
  /** Attempts it answered (2xx). */
  readonly answered: number;
  /** Attempts that failed there, by error code. */
  readonly failed: Readonly<Record<string, number>>;
  /** Times it was taken out, and times a probe brought it back. */
  readonly ejections: number;
  readonly returns: number;
}

export interface ReplicaState extends ReplicaCounts {
  readonly baseUrl: string;
  readonly weight: number;
  readonly health: 'up' | 'ejected';
  readonly limit: number;
  readonly inFlight: number;
  readonly saturation: SaturationState;
}

/** A permit on one replica: what `release` needs back. */
export interface Lease {
  readonly replica: Replica;
  readonly permit: Permit;
}

export class Replica {
  ejectedUntil: number | undefined;
  probing = false;
  consecutive = 0;
  backoffs = 0;
  attempts = 0;
  answered = 0;
  ejections = 0;
  returns = 0;
  readonly failed = new Map<string, number>();
  readonly saturation: SaturationSignal;

  constructor(
    readonly lane: Lane,
    readonly weight: number,
    options: ReplicaOptions,
  ) {
    const { endpoint } = lane;
    this.saturation = new SaturationSignal(endpoint.baseUrl, lane.admission, {
      mode: isLocalSpec(endpoint.model) ? 'off' : endpoint.saturation,
      intervalMs: endpoint.metricsIntervalMs,
      // A hosted API (rate buckets set) has no gauges, and its latency says nothing of a queue of ours.
      fallback: endpoint.rpm === undefined && endpoint.tpm === undefined ? 'latency' : 'off',
      fetchText: options.fetchMetrics,
      sharers: options.sharers,
    });
  }

  get baseUrl(): string {
    return this.lane.endpoint.baseUrl;
  }

  /** Calls in flight per unit of (limit × weight) once one more is sent: lower is freer. */
  load(): number {
    const { admission } = this.lane;
    return (admission.active + 1) / (admission.limit * this.weight);
  }
}

export class ReplicaSet {
  readonly circuit: CircuitBreaker;
  private readonly replicas: Replica[];
  private readonly waiting: Array<{
    readonly tokens: number;
    readonly resolve: (lease: Lease) => void;
    readonly reject: (error: unknown) => void;
  }> = [];
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private readonly ejectBaseMs: number;
  private readonly ejectMaxMs: number;
  private readonly failuresToEject: number;

  constructor(
    readonly endpoint: ResolvedEndpoint,
    replicas: readonly ReplicaEndpoint[],
    options: ReplicaOptions = {},
  ) {
    this.now = options.now ?? (() => performance.now());
    this.ejectBaseMs = options.ejectBaseMs ?? 1000;
    this.ejectMaxMs = options.ejectMaxMs ?? 15_000;
    this.failuresToEject = options.failuresToEject ?? 5;
    this.replicas = replicas.map(
      (r) =>
        new Replica(
          openLane(r, () => this.pump()),
          r.weight,
          options,
        ),
    );
    const describe =
      replicas.length === 1
        ? describeEndpoint(replicas[0]!)
        : `every replica of ${describeEndpoint(endpoint)}`;
    this.circuit = new CircuitBreaker(describe, endpoint.circuitBreakerSeconds * 1000, this.now);
  }

  /** The lanes, in configuration order. */
  get lanes(): readonly Lane[] {
    return this.replicas.map((r) => r.lane);
  }

  /** Waits for a permit on the freest healthy replica; rejects once the role's circuit is open. */
  acquire(estimatedTokens: number): Promise<Lease> {
    this.circuit.check();
    return new Promise<Lease>((resolve, reject) => {
      this.waiting.push({ tokens: estimatedTokens, resolve, reject });
      this.pump();
    });
  }

  /**
   * Ends an attempt: the replica's admission, saturation signal and health, and the role's circuit, learn its
   * outcome (an answer's latency and completion tokens in `answer`).
   */
  release(
    lease: Lease,
    error: LlmError | undefined,
    answer: { tokens: number; latencyMs: number; completionTokens: number } = {
      tokens: 0,
      latencyMs: 0,
      completionTokens: 0,
    },
  ): void {
    const { replica, permit } = lease;
    const { admission } = replica.lane;
    if (error === undefined) {
      replica.answered++;
      replica.saturation.observe(answer.latencyMs, answer.completionTokens);
      admission.release(permit, 'success', answer.tokens);
      this.answered(replica);
      this.circuit.success();
    } else {
      replica.failed.set(error.code, (replica.failed.get(error.code) ?? 0) + 1);
      const overloaded = error.code === 'AIR_LLM_RATE_LIMITED' || error.status === 503;
      admission.release(permit, overloaded ? 'overloaded' : 'failure', 0, error.retryAfterS);
      // A refusal or a deterministic error still shows a live server: no ejection for it.
      if (overloaded || !error.transient) this.answered(replica);
      else this.failed(replica, error);
      if (error.transient) this.failCircuit(error);
    }
    this.pump();
  }

  states(): ReplicaState[] {
    return this.replicas.map((r) => ({
      baseUrl: r.baseUrl,
      weight: r.weight,
      health: r.ejectedUntil === undefined ? 'up' : 'ejected',
      limit: r.lane.admission.limit,
      inFlight: r.lane.admission.active,
      attempts: r.attempts,
      answered: r.answered,
      failed: Object.fromEntries(r.failed),
      ejections: r.ejections,
      returns: r.returns,
      saturation: r.saturation.state(),
    }));
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    for (const r of this.replicas) {
      r.saturation.stop();
      await closeLane(r.lane);
    }
  }

  private answered(replica: Replica): void {
    replica.consecutive = 0;
    if (replica.ejectedUntil !== undefined) {
      replica.ejectedUntil = undefined;
      replica.returns++;
    }
    replica.probing = false;
    replica.backoffs = 0;
  }

  private failed(replica: Replica, error: LlmError): void {
    replica.consecutive++;
    const probe = replica.probing;
    replica.probing = false;
    if (probe || refusedConnection(error) || replica.consecutive >= this.failuresToEject) {
      if (replica.ejectedUntil === undefined || probe) this.eject(replica);
    }
  }

  /** Every transient failure counts for the role's circuit; once it opens, waiting calls fail with it. */
  private failCircuit(error: LlmError): void {
    this.circuit.failure(error);
    try {
      this.circuit.check();
    } catch (open) {
      for (const waiter of this.waiting.splice(0)) waiter.reject(open);
    }
  }

  private eject(replica: Replica): void {
    const ms = Math.min(this.ejectMaxMs, this.ejectBaseMs * 2 ** replica.backoffs);
    if (replica.ejectedUntil === undefined) replica.ejections++;
    replica.backoffs++;
    replica.ejectedUntil = this.now() + ms;
  }

  /** Hands permits to waiting calls, freest replica first, while any replica has one free. */
  private pump(): void {
    while (this.waiting.length > 0) {
      const lease = this.lease(this.waiting[0]!.tokens);
      if (lease === undefined) break;
      lease.replica.attempts++;
      this.waiting.shift()!.resolve(lease);
    }
    this.armProbeTimer();
  }

  /** A permit on a replica due for a probe, else on the up replica with the lowest load that has one free. */
  private lease(tokens: number): Lease | undefined {
    const now = this.now();
    for (const replica of this.replicas) {
      if (replica.ejectedUntil === undefined || replica.probing || now < replica.ejectedUntil) continue;
      const permit = replica.lane.admission.tryAcquire(tokens);
      if (permit === undefined) continue;
      replica.probing = true;
      return { replica, permit };
    }
    const up = this.replicas.filter((r) => r.ejectedUntil === undefined).sort((a, b) => a.load() - b.load());
    for (const replica of up) {
      const permit = replica.lane.admission.tryAcquire(tokens);
      if (permit !== undefined) return { replica, permit };
    }
    return undefined;
  }

  /** While calls wait, a timer for the earliest probe due. */
  private armProbeTimer(): void {
    if (this.timer !== undefined || this.waiting.length === 0) return;
    const due = this.replicas
      .filter((r) => r.ejectedUntil !== undefined && !r.probing)
      .map((r) => r.ejectedUntil!);
    if (due.length === 0) return;
    const ms = Math.max(0, Math.min(...due) - this.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, Math.ceil(ms));
  }
}

/** The server's process is gone (nothing listens): no use sending it more until a probe says otherwise. */
function refusedConnection(error: LlmError): boolean {
  for (let cause: unknown = error.cause; cause instanceof Error; cause = cause.cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ECONNREFUSED') return true;
  }
  return false;
}
