/**
 * `GET /metrics` in the Prometheus text format, as vLLM serves it: the scheduler's gauges under vLLM's own names
 * (`vllm:num_requests_running` / `vllm:num_requests_waiting`, labelled with the model, so a client that reads a
 * vLLM server reads the simulator unchanged) and under `air_sim_` names with their time integrals, so a scraper
 * can compute the exact mean occupancy and queue length between two scrapes instead of sampling a gauge.
 */
import type { CapacityStats } from './capacity.js';

/** What the exposition is made from: the capacity counters, the answers so far and the server's clock. */
export interface MetricsSource extends CapacityStats {
  readonly completions: number;
  readonly completionTokens: number;
  readonly promptTokens: number;
  /** Milliseconds since the server started: the clock the integrals are read against. */
  readonly uptimeMs: number;
  /** The `model_name` label of vLLM's gauges (vLLM serves one model). */
  readonly modelName: string;
}

/** vLLM's scheduler gauges, with vLLM's help text. */
const VLLM_GAUGES = [
  ['vllm:num_requests_running', 'Number of requests in model execution batches.'],
  ['vllm:num_requests_waiting', 'Number of requests waiting to be processed.'],
] as const;

/** Metric names, without the `air_sim_` prefix, and what they say. */
const METRICS = [
  ['requests_running', 'gauge', 'Chat requests holding a sequence slot.'],
  ['requests_waiting', 'gauge', 'Chat requests queued for a slot.'],
  ['sequence_seconds_total', 'counter', 'Time integral of requests_running (slot-seconds held).'],
  ['waiting_seconds_total', 'counter', 'Time integral of requests_waiting (request-seconds queued).'],
  ['queue_full_total', 'counter', 'Requests refused because the queue was full.'],
  ['completions_total', 'counter', 'Chat completions answered 200.'],
  ['prompt_tokens_total', 'counter', 'Prompt tokens of the answered completions.'],
  ['completion_tokens_total', 'counter', 'Completion tokens of the answered completions.'],
  ['uptime_seconds', 'gauge', 'Seconds since the server started, on the clock of the integrals.'],
] as const;

export type MetricName = (typeof METRICS)[number][0];

export function metricsText(source: MetricsSource): string {
  const values: Record<MetricName, number> = {
    requests_running: source.inService,
    requests_waiting: source.queued,
    sequence_seconds_total: source.sequenceMs / 1000,
    waiting_seconds_total: source.queuedMs / 1000,
    queue_full_total: source.queueFull,
    completions_total: source.completions,
    prompt_tokens_total: source.promptTokens,
    completion_tokens_total: source.completionTokens,
    uptime_seconds: source.uptimeMs / 1000,
  };
  const label = `{model_name=${JSON.stringify(source.modelName)}}`;
  const vllm = VLLM_GAUGES.map(
    ([name, help], i) =>
      `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name}${label} ${i === 0 ? source.inService : source.queued}\n`,
  );
  const own = METRICS.map(
    ([name, type, help]) =>
      `# HELP air_sim_${name} ${help}\n# TYPE air_sim_${name} ${type}\nair_sim_${name} ${values[name]}\n`,
  );
  return [...vllm, ...own].join('');
}

/** Reads the exposition back (for benchmarks and tests); a metric that is missing is an error. */
export function parseMetrics(text: string): Record<MetricName, number> {
  const found = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^air_sim_(\w+) (\S+)$/.exec(line);
    if (match !== null) found.set(match[1]!, Number(match[2]));
  }
  const values = {} as Record<MetricName, number>;
  for (const [name] of METRICS) {
    const value = found.get(name);
    if (value === undefined || Number.isNaN(value)) throw new Error(`simulator metrics: no air_sim_${name}`);
    values[name] = value;
  }
  return values;
}
