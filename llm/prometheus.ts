/**
 * Reads an inference server's scheduler gauges from its Prometheus text exposition (`GET /metrics`): how many
 * requests it is running and how many wait for a slot. These say "saturated" on servers that queue instead of
 * refusing, where no 429/503 ever comes.
 */

/** Gauge names of the servers air knows, tried in this order: vLLM, SGLang, TGI. */
export const SCHEDULER_GAUGES = [
  { server: 'vllm', running: 'vllm:num_requests_running', waiting: 'vllm:num_requests_waiting' },
  { server: 'sglang', running: 'sglang:num_running_reqs', waiting: 'sglang:num_queue_reqs' },
  { server: 'tgi', running: 'tgi_batch_current_size', waiting: 'tgi_queue_size' },
] as const;

export interface SchedulerGauges {
  /** Which server's names were found. */
  readonly server: (typeof SCHEDULER_GAUGES)[number]['server'];
  readonly running: number;
  readonly waiting: number;
}

// name, optional {labels} (quoted values may hold braces and escaped quotes), value, optional timestamp.
const SAMPLE = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$/;

/**
 * Every sample of the exposition, summed per metric name over its label sets (a server that serves several
 * models reports one series per model; its scheduler is shared). Comments, blank lines and lines that are not
 * samples are skipped; a value that is not a number (Prometheus allows NaN, +Inf) leaves the name out.
 */
export function parsePrometheusText(text: string): Map<string, number> {
  const sums = new Map<string, number>();
  const bad = new Set<string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (match === null) continue;
    const name = match[1]!;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) bad.add(name);
    else sums.set(name, (sums.get(name) ?? 0) + value);
  }
  for (const name of bad) sums.delete(name);
  return sums;
}

/** The running and waiting gauges of the first known server whose two names are both there; else undefined. */
export function schedulerGauges(text: string): SchedulerGauges | undefined {
  const samples = parsePrometheusText(text);
  for (const names of SCHEDULER_GAUGES) {
    const running = samples.get(names.running);
    const waiting = samples.get(names.waiting);
    if (running !== undefined && waiting !== undefined && running >= 0 && waiting >= 0) {
      return { server: names.server, running, waiting };
    }
  }
  return undefined;
}

/** `/metrics` beside an OpenAI base URL: vLLM and SGLang serve it at the root, not under `/v1`. */
export function metricsUrl(baseUrl: string): string {
  const url = new URL(baseUrl);
  url.pathname = '/metrics';
  url.search = '';
  return url.toString();
}
