import { z } from 'zod';
import type { Embedder } from './embedder.js';
import { ConfigError } from '../pipeline/errors.js';
import { CircuitBreaker } from './circuit.js';
import type { CallRecorder } from './accounting.js';
import { LlmError } from './errors.js';
import { openRoute, postJson, transportError, type Route } from './http.js';
import { backoffMs, sleep, type BackoffOptions } from './retry.js';

/**
 * An OpenAI-compatible `POST /v1/embeddings` endpoint (OpenAI, vLLM, TEI, llama.cpp, the simulator) for
 * diversity selection. As for chat endpoints (llm/endpoint.ts), the config names the environment variable that
 * holds the API key, never the key.
 */
export const embeddingsEndpointSchema = z.strictObject({
  /** Base URL up to and including `/v1`. */
  baseUrl: z.url().default('http://127.0.0.1:8000/v1'),
  /** Model name sent with every request, e.g. `sentence-transformers/all-MiniLM-L6-v2` (the reference's). */
  model: z.string().min(1),
  /** Name of the environment variable holding the API key; omit for servers without auth. */
  apiKeyEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
    .optional(),
  /** Sent as `dimensions` (models that can shorten their vectors) and checked on every answer. */
  dimensions: z.number().int().positive().optional(),
  /** Texts per request. */
  batchSize: z.number().int().positive().default(64),
  /** Requests in flight at once. */
  maxConcurrency: z.number().int().positive().default(4),
  /**
   * Each text is cut to this many characters before it is sent: embedding models read a few hundred tokens
   * (MiniLM: 256) and servers answer 400 to longer inputs instead of truncating.
   */
  maxInputChars: z.number().int().positive().default(4000),
  /** `base64` (little-endian float32) is smaller and faster to parse; not every server supports it. */
  encodingFormat: z.enum(['float', 'base64']).default('float'),
  /** One request's time limit (headers and body), in seconds. */
  timeoutSeconds: z.number().positive().default(120),
  /** Attempts for transient failures (429, 5xx, resets, timeouts), the first included. */
  maxAttempts: z.number().int().positive().default(6),
  /** The run stops when the endpoint has answered nothing usable for this long. */
  circuitBreakerSeconds: z.number().positive().default(120),
});

export type EmbeddingsEndpointConfig = z.output<typeof embeddingsEndpointSchema>;

export interface ResolvedEmbeddingsEndpoint extends EmbeddingsEndpointConfig {
  /** The key itself, held only in memory; undefined when the endpoint needs none. */
  readonly apiKey: string | undefined;
}

/** Reads the API key from the environment; the error names the variable, never a value. */
export function resolveEmbeddingsEndpoint(
  config: EmbeddingsEndpointConfig,
  env: NodeJS.ProcessEnv = process.env,
  key = 'sample.diversity.embeddings',
): ResolvedEmbeddingsEndpoint {
  let apiKey: string | undefined;
  if (config.apiKeyEnv !== undefined) {
    apiKey = env[config.apiKeyEnv];
    if (apiKey === undefined || apiKey.length === 0) {
      throw new ConfigError(
        `${key}.apiKeyEnv: the environment variable ${config.apiKeyEnv} is not set (it should hold the API key)`,
      );
    }
  }
  return { ...config, apiKey };
}

export interface EmbeddingsClientOptions {
  /** Backoff tuning (tests shorten it). */
  readonly backoff?: BackoffOptions;
  /** Where calls are accounted (tokens, latency, retries), under `role`. */
  readonly recorder?: CallRecorder;
  /** Default `embeddings`. */
  readonly role?: string;
}

/** What the client has done so far. */
export interface EmbeddingsStats {
  readonly requests: number;
  readonly inputs: number;
  readonly promptTokens: number;
  readonly retries: number;
}

/** The `embeddings` route of an OpenAI base URL (`.../v1` → `.../v1/embeddings`). */
/** `text` cut to at most `max` UTF-16 code units, never inside a surrogate pair. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

/**
 * The embeddings client: undici keep-alive pool, inputs in batches of `batchSize` with `maxConcurrency` requests
 * in flight, transient failures retried with the chat client's jittered backoff (llm/retry.ts) and Retry-After,
 * and a circuit breaker (llm/circuit.ts). Every failure is an LlmError with the chat client's codes.
 */
export class EmbeddingsClient implements Embedder {
  readonly description: string;
  readonly batchSize: number;
  readonly concurrency: number;
  private learnedDimensions: number | undefined;
  private readonly route: Route;
  private readonly circuit: CircuitBreaker;
  private readonly role: string;
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private counts = { requests: 0, inputs: 0, promptTokens: 0, retries: 0 };
  private closing: Promise<void> | undefined;

  constructor(
    private readonly endpoint: ResolvedEmbeddingsEndpoint,
    private readonly options: EmbeddingsClientOptions = {},
  ) {
    this.route = openRoute(endpoint, 'embeddings');
    this.description = `embeddings (${endpoint.model} at ${endpoint.baseUrl})`;
    this.batchSize = endpoint.batchSize;
    this.concurrency = endpoint.maxConcurrency;
    this.learnedDimensions = endpoint.dimensions;
    this.role = options.role ?? 'embeddings';
    this.circuit = new CircuitBreaker(this.description, endpoint.circuitBreakerSeconds * 1000);
  }

  /** The configured vector length, else the one the endpoint answered with first. */
  get dimensions(): number | undefined {
    return this.learnedDimensions;
  }

  stats(): EmbeddingsStats {
    return { ...this.counts };
  }

  async embed(texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]> {
    const batches: Array<Promise<Float32Array[]>> = [];
    for (let i = 0; i < texts.length; i += this.batchSize) {
      batches.push(this.limited(() => this.request(texts.slice(i, i + this.batchSize), signal)));
    }
    return (await Promise.all(batches)).flat();
  }

  /** Idempotent: the diversity stage closes its embedder, and so may whoever made it. */
  async close(): Promise<void> {
    this.closing ??= this.route.pool.close();
    await this.closing;
  }

  /** Runs `task` when fewer than maxConcurrency requests are in flight (FIFO). */
  private async limited<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.active--;
    }
  }

  /** One batch: attempts with backoff on transient errors, accounted once it succeeds or fails for good. */
  private async request(texts: readonly string[], signal: AbortSignal | undefined): Promise<Float32Array[]> {
    // Servers reject an empty input; an empty text has no content to place anyway.
    const input = texts.map((t) => (t.length === 0 ? ' ' : cutText(t, this.endpoint.maxInputChars)));
    const body = JSON.stringify({
      model: this.endpoint.model,
      input,
      encoding_format: this.endpoint.encodingFormat,
      ...(this.endpoint.dimensions === undefined ? {} : { dimensions: this.endpoint.dimensions }),
    });
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      try {
        this.circuit.check();
        this.counts.requests++;
        const { vectors, promptTokens } = await this.post(body, texts.length, signal);
        this.circuit.success();
        this.counts.inputs += texts.length;
        this.counts.promptTokens += promptTokens;
        this.options.recorder?.record({
          role: this.role,
          model: this.endpoint.model,
          promptTokens,
          completionTokens: 0,
          latencyMs: performance.now() - started,
          cached: false,
          attempts: attempt,
        });
        return vectors;
      } catch (error) {
        const failure = error instanceof LlmError ? error : transportError(this.description, error);
        if (failure.transient && attempt < this.endpoint.maxAttempts) {
          this.circuit.failure(failure);
          this.counts.retries++;
          await sleep(backoffMs(attempt, failure.retryAfterS, this.options.backoff), signal);
          continue;
        }
        this.options.recorder?.recordError(this.role, this.endpoint.model, failure.code, attempt);
        throw failure;
      }
    }
  }

  private async post(
    body: string,
    expected: number,
    signal: AbortSignal | undefined,
  ): Promise<{ vectors: Float32Array[]; promptTokens: number }> {
    const text = await postJson(this.route, body, this.description, signal);
    const parsed = parseEmbeddings(this.description, text, expected);
    const d = parsed.vectors[0]?.length;
    if (d !== undefined) {
      if (this.endpoint.dimensions !== undefined && d !== this.endpoint.dimensions) {
        throw new LlmError(
          'AIR_LLM_BAD_REQUEST',
          `${this.description}: answered vectors of ${d} dimensions, configured ${this.endpoint.dimensions}`,
          { raw: text.slice(0, 2000) },
        );
      }
      this.learnedDimensions ??= d;
    }
    return parsed;
  }
}

/**
 * Checks the OpenAI embeddings answer: `data` holds one item per input, each with its `index` and an
 * `embedding` (numbers, or base64 little-endian float32), all of one length. A 2xx body that is not that is a
 * malformed (transient) answer, as for chat.
 */
export function parseEmbeddings(
  where: string,
  body: string,
  expected: number,
): { vectors: Float32Array[]; promptTokens: number } {
  const malformed = (what: string): LlmError =>
    new LlmError('AIR_LLM_MALFORMED_RESPONSE', `${where}: ${what}`, { raw: body.slice(0, 2000) });
  let root: { data?: unknown; usage?: { prompt_tokens?: unknown } };
  try {
    root = JSON.parse(body) as typeof root;
  } catch {
    throw malformed('the answer is not JSON');
  }
  if (!Array.isArray(root.data) || root.data.length !== expected) {
    throw malformed(
      `expected ${expected} embeddings in data, got ${Array.isArray(root.data) ? root.data.length : 'none'}`,
    );
  }
  const vectors: Array<Float32Array | undefined> = new Array(expected);
  let dimensions: number | undefined;
  for (const item of root.data as Array<{ index?: unknown; embedding?: unknown }>) {
    const index = item?.index;
    if (
      typeof index !== 'number' ||
      !Number.isInteger(index) ||
      index < 0 ||
      index >= expected ||
      vectors[index]
    ) {
      throw malformed(`an embedding has a missing, repeated or out-of-range index (${String(index)})`);
    }
    const vector = decodeEmbedding(item.embedding);
    if (vector === undefined) throw malformed(`embedding ${index} is neither a list of numbers nor base64`);
    dimensions ??= vector.length;
    if (vector.length !== dimensions || dimensions === 0) {
      throw malformed(`embeddings have different lengths (${dimensions} and ${vector.length})`);
    }
    vectors[index] = vector;
  }
  const tokens = root.usage?.prompt_tokens;
  return {
    vectors: vectors as Float32Array[],
    promptTokens: typeof tokens === 'number' && Number.isFinite(tokens) && tokens >= 0 ? tokens : 0,
  };
}

function decodeEmbedding(value: unknown): Float32Array | undefined {
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'base64');
    if (bytes.length % 4 !== 0) return undefined;
    // Copy into an aligned buffer; Float32Array needs a 4-byte aligned offset. Little-endian, as on x86 and ARM.
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  }
  if (!Array.isArray(value)) return undefined;
  const vector = new Float32Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const x: unknown = value[i];
    if (typeof x !== 'number' || !Number.isFinite(x)) return undefined;
    vector[i] = x;
  }
  return vector;
}
