import { describeEndpoint, type ResolvedEndpoint } from './endpoint.js';
import { LlmError } from './errors.js';
import { ChatHttp } from './http.js';
import type { ChatCompletionRequest } from './types.js';
import { mapConcurrent } from '../pipeline/concurrent.js';

/**
 * Measures an endpoint the way `air bench` reports it: for each concurrency level, a closed loop keeps exactly
 * that many requests in flight for `requestsPerLevel` requests, with no retries and no adaptive limit (the
 * point is to see the server, not air's admission). The knee is the last level whose throughput gain is still
 * worth its latency cost; it is the recommended `maxConcurrency`.
 */
export interface LoadTestOptions {
  readonly levels: readonly number[];
  readonly requestsPerLevel: number;
  readonly promptWords: number;
  readonly maxTokens: number;
  readonly seed?: number;
  readonly onLevel?: (level: LevelResult) => void;
}

export interface LevelResult {
  readonly concurrency: number;
  readonly requests: number;
  readonly errors: number;
  readonly errorsByCode: Record<string, number>;
  readonly wallS: number;
  readonly requestsPerS: number;
  readonly promptTokensPerS: number;
  readonly completionTokensPerS: number;
  readonly latencyMs: { p50: number; p95: number; p99: number; mean: number };
}

export interface LoadTestReport {
  readonly endpoint: string;
  readonly model: string;
  readonly startedAt: string;
  readonly levels: LevelResult[];
  readonly knee: number;
  readonly recommendedConcurrency: number;
}

export function concurrencyLevels(max: number): number[] {
  const levels: number[] = [];
  for (let c = 1; c < max; c *= 2) levels.push(c);
  levels.push(max);
  return levels;
}

export async function loadTest(
  endpoint: ResolvedEndpoint,
  options: LoadTestOptions,
): Promise<LoadTestReport> {
  const http = new ChatHttp({ ...endpoint, maxConcurrency: Math.max(...options.levels) });
  const startedAt = new Date().toISOString();
  const levels: LevelResult[] = [];
  try {
    for (const concurrency of options.levels) {
      const result = await runLevel(http, endpoint, concurrency, options);
      levels.push(result);
      options.onLevel?.(result);
    }
  } finally {
    await http.close();
  }
  const knee = findKnee(levels);
  return {
    endpoint: describeEndpoint(endpoint),
    model: endpoint.model,
    startedAt,
    levels,
    knee,
    recommendedConcurrency: knee,
  };
}

async function runLevel(
  http: ChatHttp,
  endpoint: ResolvedEndpoint,
  concurrency: number,
  options: LoadTestOptions,
): Promise<LevelResult> {
  const latencies: number[] = [];
  const errorsByCode: Record<string, number> = {};
  let promptTokens = 0;
  let completionTokens = 0;
  const started = performance.now();
  const indexes = Array.from({ length: options.requestsPerLevel }, (_, i) => i);
  await mapConcurrent(indexes, concurrency, async (index) => {
    const request = benchRequest(endpoint.model, options, concurrency, index);
    const t0 = performance.now();
    try {
      const completion = await http.complete(request);
      latencies.push(performance.now() - t0);
      promptTokens += completion.usage.promptTokens;
      completionTokens += completion.usage.completionTokens;
    } catch (error) {
      const code = error instanceof LlmError ? error.code : 'UNKNOWN';
      errorsByCode[code] = (errorsByCode[code] ?? 0) + 1;
    }
  });
  const wallS = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const errors = Object.values(errorsByCode).reduce((a, b) => a + b, 0);
  return {
    concurrency,
    requests: options.requestsPerLevel,
    errors,
    errorsByCode,
    wallS,
    requestsPerS: latencies.length / wallS,
    promptTokensPerS: promptTokens / wallS,
    completionTokensPerS: completionTokens / wallS,
    latencyMs: {
      p50: quantile(latencies, 0.5),
      p95: quantile(latencies, 0.95),
      p99: quantile(latencies, 0.99),
      mean: latencies.length === 0 ? Number.NaN : latencies.reduce((a, b) => a + b, 0) / latencies.length,
    },
  };
}

/** Distinct prompts (so no server-side prefix cache flatters the figures) of about `promptWords` words. */
function benchRequest(
  model: string,
  options: LoadTestOptions,
  level: number,
  index: number,
): ChatCompletionRequest {
  const words = Array.from(
    { length: options.promptWords },
    (_, i) => WORDS[(i * 7 + index * 13 + level) % WORDS.length],
  );
  return {
    model,
    messages: [{ role: 'user', content: `Request ${level}-${index}. Summarise: ${words.join(' ')}` }],
    max_tokens: options.maxTokens,
    temperature: 0.7,
    seed: (options.seed ?? 0) + index,
  };
}

const WORDS =
  'data model server token stream batch queue latency throughput memory parquet shard document instruction answer judge student refine constraint'.split(
    ' ',
  );

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/**
 * The knee: walking up the levels, stop at the first step that adds less than 10% throughput while p50 latency
 * grows by more than 30% (the server is saturated: more concurrency only queues), or that raises the error
 * rate above 1%. The level before that step is the knee.
 */
export function findKnee(levels: readonly LevelResult[]): number {
  if (levels.length === 0) return 1;
  let knee = levels[0]!.concurrency;
  for (let i = 1; i < levels.length; i++) {
    const prev = levels[i - 1]!;
    const cur = levels[i]!;
    const gain = cur.requestsPerS / Math.max(prev.requestsPerS, 1e-9) - 1;
    const latencyGrowth = cur.latencyMs.p50 / Math.max(prev.latencyMs.p50, 1e-9) - 1;
    const errorRate = cur.errors / Math.max(cur.requests, 1);
    if (errorRate > 0.01 || (gain < 0.1 && latencyGrowth > 0.3)) break;
    knee = cur.concurrency;
  }
  return knee;
}
