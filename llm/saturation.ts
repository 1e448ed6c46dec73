import type { Admission } from './admission.js';
import { metricsUrl, schedulerGauges } from './prometheus.js';

/**
 * Keeps one replica's admission limit near what the server can serve at once when the server queues instead of
 * refusing (vLLM, SGLang and TGI never say 429 when saturated: they queue, and every call then takes its service
 * time plus the queue's). Successes still grow the limit (llm/admission.ts); this only says when to shrink it:
 *
 * - **gauges**: the server's own `/metrics` (`vllm:num_requests_running` / `_waiting`, or SGLang's, TGI's). A
 *   queue (waiting > 0) shrinks the limit to the share of this process's calls that the server is running
 *   (in flight x running / (running + waiting)). Every process on the server reads the same gauges and cuts by the
 *   same factor, while successes add the same step to each: additive increase and multiplicative decrease on a
 *   shared signal, which converges to equal shares (as TCP flows do on a shared link).
 * - **latency**, where there are no gauges: the latency per completion token over a window of calls against the
 *   lowest such figure seen (the no-load minimum), in the manner of TCP Vegas. Above `1 + tolerance` the calls
 *   are waiting somewhere: the limit shrinks by the ratio.
 *
 * After a cut, no other until the calls in flight are back under the new limit and one mean latency has passed:
 * the signal lags the cut.
 */
export type SaturationMode = 'auto' | 'gauges' | 'latency' | 'off';

/** Gauges: requests left waiting per running one (0.1: a queue wait of about a tenth of a service time). */
const QUEUE_ALLOWANCE = 0.1;

export interface SaturationOptions {
  readonly mode: SaturationMode;
  readonly intervalMs: number;
  /**
   * air processes known to share the server (the world size of a distributed run; 1: unknown). A process above
   * its equal share of what the server runs is cut to that share at a queue, so processes that started at other
   * times converge to equal shares in one cut instead of many.
   */
  readonly sharers?: number;
  /** What `auto` uses when the server has no gauges: latency, or nothing (a hosted API: see Replica). */
  readonly fallback?: 'latency' | 'off';
  /** Latency mode: excess latency over the no-load minimum tolerated (0.25: a queue wait of 1/4 service). */
  readonly tolerance?: number;
  /** For rounding a cut; seeded in tests. */
  readonly random?: () => number;
  /** Reads `/metrics` (tests and benchmarks may count or replace it); resolves to undefined when unreachable. */
  readonly fetchText?: (url: string) => Promise<string | undefined>;
}

export interface SaturationState {
  /** What the signal reads now: gauges, latency, nothing yet (auto, before the first scrape), or nothing. */
  readonly source: 'gauges' | 'latency' | 'pending' | 'off';
  readonly cuts: number;
  /** Latency mode: the no-load minimum and the last window's figure, in ms per completion token. */
  readonly minMsPerToken: number | undefined;
  readonly lastMsPerToken: number | undefined;
}

export class SaturationSignal {
  private source: SaturationState['source'];
  private timer: NodeJS.Timeout | undefined;
  private settling = false;
  private holdUntil = 0;
  /** Moving average of answered attempts' latency: how long a queue takes to be served. */
  private latencyMs: number | undefined;
  private cuts = 0;
  private windowMs = 0;
  private windowTokens = 0;
  private windowCalls = 0;
  private minPerToken: number | undefined;
  private lastPerToken: number | undefined;
  private readonly url: string;
  private readonly tolerance: number;
  private readonly random: () => number;
  private readonly fetchText: (url: string) => Promise<string | undefined>;

  constructor(
    baseUrl: string,
    private readonly admission: Admission,
    private readonly options: SaturationOptions,
  ) {
    this.url = metricsUrl(baseUrl);
    this.tolerance = options.tolerance ?? 0.25;
    this.random = options.random ?? Math.random;
    this.fetchText = options.fetchText ?? fetchMetrics;
    this.source = { auto: 'pending', gauges: 'gauges', latency: 'latency', off: 'off' }[options.mode] as
      'pending' | 'gauges' | 'latency' | 'off';
    if (this.source === 'pending' || this.source === 'gauges') this.schedule(0);
  }

  state(): SaturationState {
    return {
      source: this.source,
      cuts: this.cuts,
      minMsPerToken: this.minPerToken,
      lastMsPerToken: this.lastPerToken,
    };
  }

  /** One answered attempt: its latency (one HTTP attempt) and completion tokens. */
  observe(latencyMs: number, completionTokens: number): void {
    this.latencyMs = this.latencyMs === undefined ? latencyMs : 0.9 * this.latencyMs + 0.1 * latencyMs;
    if (this.source !== 'latency') return;
    // The minimum is per call: the first calls of a run meet free slots even when the window that follows
    // queues, so the no-load figure is seen once, at the start, whatever the load after.
    const callPerToken = latencyMs / (completionTokens + 1);
    this.minPerToken = Math.min(this.minPerToken ?? callPerToken, callPerToken);
    this.windowMs += latencyMs;
    this.windowTokens += completionTokens + 1;
    this.windowCalls += 1;
    if (this.windowCalls < Math.max(8, this.admission.limit)) return;
    const perToken = this.windowMs / this.windowTokens;
    this.windowMs = this.windowTokens = this.windowCalls = 0;
    this.lastPerToken = perToken;
    const ratio = perToken / this.minPerToken;
    if (ratio > 1 + this.tolerance) this.cut(this.admission.active / ratio);
    else this.settle();
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.source === 'pending' || this.source === 'gauges') this.source = 'off';
  }

  /** Reads the gauges once and decides; `auto` falls back to latency when the server has none. */
  async scrape(): Promise<void> {
    const text = await this.fetchText(this.url);
    if (this.source === 'off') return; // stopped meanwhile
    const gauges = text === undefined ? undefined : schedulerGauges(text);
    if (gauges === undefined) {
      if (this.source === 'pending') this.source = this.options.fallback ?? 'latency';
      return;
    }
    this.source = 'gauges';
    // A few waiting requests are kept on purpose: a slot freed by an answer is taken at once by a queued request,
    // not after the round trip of this process's next call (with none waiting, 32 slots ran 0.91 busy).
    const allowance = Math.max(1, Math.ceil(QUEUE_ALLOWANCE * gauges.running));
    if (gauges.waiting > allowance) {
      const factor = (gauges.running + allowance) / (gauges.running + gauges.waiting);
      const fair = (gauges.running + allowance) / (this.options.sharers ?? 1);
      const { active } = this.admission;
      // Everyone cuts by the same factor (so a queue of other tenants' is answered too); above its share, to it.
      this.cut(Math.min(active * factor, fair));
    } else this.settle();
  }

  private cut(to: number): void {
    this.settle();
    if (this.settling) return;
    const before = this.admission.limit;
    // Rounded at random, unbiased: N processes each cutting a queue of 1 by a whole call would cut N.
    this.admission.shrink(Math.floor(to + this.random()));
    if (this.admission.limit < before) {
      this.cuts++;
      this.settling = true;
      // The queue the cut answers drains as the calls in it are served, one latency on: other processes on the
      // server cut for it too, and a second cut before then would count the same queue twice.
      this.holdUntil = performance.now() + Math.max(this.options.intervalMs, this.latencyMs ?? 0);
    }
  }

  /** A cut has taken effect once the calls in flight are back under the limit and a latency has passed. */
  private settle(): void {
    if (this.settling && this.admission.active <= this.admission.limit && performance.now() >= this.holdUntil)
      this.settling = false;
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      void this.scrape().finally(() => {
        // Once found, gauges are read for good (a replica that is down answers none; it may come back).
        if (this.source === 'gauges') this.schedule(this.options.intervalMs);
      });
    }, ms);
    this.timer.unref();
  }
}

/** `GET /metrics`, or undefined for any failure (no such route, not reachable, too slow). */
async function fetchMetrics(url: string): Promise<string | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    if (!response.ok) {
      await response.body?.cancel();
      return undefined;
    }
    return await response.text();
  } catch {
    return undefined;
  }
}
