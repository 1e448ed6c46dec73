import { ConfigError } from '../pipeline/errors.js';
import type { Accounting } from './accounting.js';
import { Admission, type Permit } from './admission.js';
import { CircuitBreaker } from './circuit.js';
import { describeEndpoint, type ResolvedEndpoint } from './endpoint.js';
import { LlmError } from './errors.js';
import { ChatHttp } from './http.js';
import { isLocalSpec, LocalModel, parseLocalSpec } from './local.js';
import { resolveModelFile } from './model-files.js';
import type { ResponseCache } from './cache.js';
import { backoffMs, sleep } from './retry.js';
import { parseStructured } from './structured.js';
import type {
  ChatCompletion,
  ChatCompletionRequest,
  ChatMessage,
  ChatOptions,
  ChatResult,
  LlmClient,
  Role,
} from './types.js';

/** What the client reports to (see llm/accounting.ts). */
export type CallRecorder = Pick<Accounting, 'record' | 'recordError'>;

export interface LlmClientOptions {
  readonly endpoints: readonly ResolvedEndpoint[];
  readonly cache?: ResponseCache;
  readonly recorder?: CallRecorder;
  /** Repairs of an invalid structured reply before the call fails (default 2). */
  readonly maxRepairs?: number;
  /** Backoff tuning (tests shorten it). */
  readonly backoff?: { baseMs?: number; maxMs?: number };
}

/** What carries one request: an HTTP endpoint or an embedded model. */
interface Transport {
  complete(request: ChatCompletionRequest, signal?: AbortSignal): Promise<ChatCompletion>;
  close(): Promise<void>;
}

interface Lane {
  readonly endpoint: ResolvedEndpoint;
  readonly http: Transport;
  readonly admission: Admission;
  readonly circuit: CircuitBreaker;
}

/**
 * The one door to LLM calls. Per call: cache lookup; admission (adaptive concurrency, rate buckets); the HTTP
 * attempt; transient failures retried with backoff; a prompt too long for the context shortened once; a reply
 * cut at max_tokens retried once with twice the budget; structured replies validated and repaired; every answer
 * accounted and cached. Everything that still fails becomes an LlmError with a code and the raw reply.
 */
export class HttpLlmClient implements LlmClient {
  private readonly lanes = new Map<Role, Lane>();

  constructor(private readonly options: LlmClientOptions) {
    for (const endpoint of options.endpoints) {
      this.lanes.set(endpoint.role, {
        endpoint,
        http: isLocalSpec(endpoint.model) ? new LazyLocalModel(endpoint) : new ChatHttp(endpoint),
        admission: new Admission({
          maxConcurrency: isLocalSpec(endpoint.model) ? endpoint.local.parallel : endpoint.maxConcurrency,
          initialConcurrency: isLocalSpec(endpoint.model)
            ? endpoint.local.parallel
            : endpoint.initialConcurrency,
          rpm: endpoint.rpm,
          tpm: endpoint.tpm,
        }),
        circuit: new CircuitBreaker(describeEndpoint(endpoint), endpoint.circuitBreakerSeconds * 1000),
      });
    }
  }

  /** The admission state of a role (for progress displays and tests). */
  admission(role: Role): Admission | undefined {
    return this.lanes.get(role)?.admission;
  }

  async chat(role: Role, messages: readonly ChatMessage[], options: ChatOptions = {}): Promise<ChatResult> {
    const lane = this.lanes.get(role);
    if (lane === undefined) {
      throw new ConfigError(
        `no endpoint is configured for the role "${role}" (roles: ${[...this.lanes.keys()].join(', ')})`,
      );
    }
    let request = buildRequest(lane.endpoint, messages, options);
    const maxRepairs = options.schema === undefined ? 0 : (this.options.maxRepairs ?? 2);
    for (let repair = 0; ; repair++) {
      const result = await this.complete(lane, request, options);
      if (options.schema === undefined) return result;
      const parsed = parseStructured(result.text, options.schema.schema);
      if (parsed.ok) return { ...result, json: parsed.value };
      if (repair >= maxRepairs) {
        this.options.recorder?.recordError(role, lane.endpoint.model, 'AIR_LLM_INVALID_OUTPUT');
        throw new LlmError(
          'AIR_LLM_INVALID_OUTPUT',
          `${describeEndpoint(lane.endpoint)}: the reply ${parsed.error} (after ${repair} repairs)`,
          { raw: result.text.slice(0, 4000) },
        );
      }
      request = withRepair(request, result.text, parsed.error);
    }
  }

  async close(): Promise<void> {
    for (const lane of this.lanes.values()) {
      lane.admission.close();
      await lane.http.close();
    }
  }

  /** One logical completion: cached, or fetched with retries and the one-time adjustments. */
  private async complete(
    lane: Lane,
    request: ChatCompletionRequest,
    options: ChatOptions,
  ): Promise<ChatResult> {
    const { endpoint } = lane;
    const cache = this.options.cache;
    const key = cache?.key({
      model: request.model,
      messages: request.messages,
      sampling: {
        temperature: request.temperature,
        top_p: request.top_p,
        max_tokens: request.max_tokens,
        seed: request.seed,
      },
      schema: options.schema ?? null,
      // A repair is a different conversation (its messages differ); `attempt` keeps deliberate re-samples apart.
      attempt: options.attempt ?? 0,
    });
    const hit = key === undefined ? undefined : cache!.get(key);
    if (hit !== undefined) {
      this.options.recorder?.record({
        role: endpoint.role,
        model: endpoint.model,
        promptTokens: hit.usage.promptTokens,
        completionTokens: hit.usage.completionTokens,
        latencyMs: 0,
        cached: true,
        attempts: 0,
      });
      const { text, finishReason, usage, model } = hit;
      return {
        text,
        finishReason,
        usage,
        model,
        role: endpoint.role,
        latencyMs: 0,
        cached: true,
        attempts: 0,
      };
    }

    let current = request;
    let shortened = false;
    let lengthened = false;
    let attempts = 0;
    for (;;) {
      const started = performance.now();
      let completion: ChatCompletion;
      try {
        const sent = await this.send(lane, current, options.signal);
        completion = sent.completion;
        attempts += sent.attempts;
      } catch (error) {
        if (error instanceof LlmError) {
          attempts += 1;
          // Deterministic, but fixable once: a prompt too long for the context is shortened and sent again.
          if (error.code === 'AIR_LLM_CONTEXT_LENGTH' && !shortened) {
            shortened = true;
            current = shortenLongestMessage(current, keepFractionFor(current, error.message));
            continue;
          }
          this.options.recorder?.recordError(endpoint.role, endpoint.model, error.code);
        }
        throw error;
      }
      const latencyMs = performance.now() - started;
      this.options.recorder?.record({
        role: endpoint.role,
        model: endpoint.model,
        promptTokens: completion.usage.promptTokens,
        completionTokens: completion.usage.completionTokens,
        latencyMs,
        cached: false,
        attempts,
      });
      if (completion.finishReason === 'length' && options.acceptTruncated !== true) {
        // Sending the same request again would be cut the same way: retry once with twice the budget.
        if (!lengthened) {
          lengthened = true;
          current = { ...current, max_tokens: (current.max_tokens ?? 1024) * 2 };
          continue;
        }
        this.options.recorder?.recordError(endpoint.role, endpoint.model, 'AIR_LLM_TRUNCATED');
        throw new LlmError(
          'AIR_LLM_TRUNCATED',
          `${describeEndpoint(endpoint)}: the reply was cut at max_tokens=${current.max_tokens ?? 'default'} twice`,
          { raw: completion.text.slice(0, 4000) },
        );
      }
      // An accepted cut reply is the answer this request gets: cached like any other, so reruns repeat none.
      if (key !== undefined) {
        cache!.put(key, { ...completion, latencyMs }, { allowTruncated: options.acceptTruncated === true });
      }
      return { ...completion, role: endpoint.role, latencyMs, cached: false, attempts };
    }
  }

  /** HTTP attempts with admission, backoff on transient errors and the circuit breaker. */
  private async send(
    lane: Lane,
    request: ChatCompletionRequest,
    signal: AbortSignal | undefined,
  ): Promise<{ completion: ChatCompletion; attempts: number }> {
    const { endpoint, admission, circuit } = lane;
    for (let attempt = 1; ; attempt++) {
      circuit.check();
      const permit: Permit = await admission.acquire(estimateTokens(request));
      try {
        const completion = await lane.http.complete(request, signal);
        admission.release(
          permit,
          'success',
          completion.usage.promptTokens + completion.usage.completionTokens,
        );
        circuit.success();
        return { completion, attempts: attempt };
      } catch (error) {
        const failure =
          error instanceof LlmError
            ? error
            : new LlmError('AIR_LLM_CONNECTION', `${describeEndpoint(endpoint)}: ${String(error)}`, {
                cause: error,
              });
        const overloaded = failure.code === 'AIR_LLM_RATE_LIMITED' || failure.status === 503;
        admission.release(permit, overloaded ? 'overloaded' : 'failure', 0, failure.retryAfterS);
        if (!failure.transient) throw failure;
        circuit.failure(failure);
        if (attempt >= endpoint.maxAttempts) throw failure;
        this.options.recorder?.recordError(endpoint.role, endpoint.model, `retry:${failure.code}`);
        await sleep(backoffMs(attempt, failure.retryAfterS, this.options.backoff), signal);
      }
    }
  }
}

/**
 * A `local:<path.gguf>` model, loaded on its first call (node-llama-cpp is an optional dependency, imported only
 * then). Its admission limit is its `parallel` sequences.
 */
class LazyLocalModel implements Transport {
  private model: Promise<LocalModel> | undefined;

  constructor(private readonly endpoint: ResolvedEndpoint) {}

  async complete(request: ChatCompletionRequest, signal?: AbortSignal): Promise<ChatCompletion> {
    this.model ??= resolveModelFile(parseLocalSpec(this.endpoint.model).path, {
      directory: this.endpoint.local.modelsDir,
    }).then((file) =>
      LocalModel.load({
        path: file,
        threads: this.endpoint.local.threads,
        parallel: this.endpoint.local.parallel,
        contextSize: this.endpoint.local.contextSize,
      }),
    );
    return (await this.model).complete(request, signal);
  }

  async close(): Promise<void> {
    if (this.model !== undefined) await (await this.model).close();
  }
}

function buildRequest(
  endpoint: ResolvedEndpoint,
  messages: readonly ChatMessage[],
  options: ChatOptions,
): ChatCompletionRequest {
  const pick = <K extends 'temperature' | 'top_p' | 'max_tokens' | 'seed'>(k: K) =>
    options[k] ?? endpoint.sampling[k];
  return {
    model: endpoint.model,
    messages,
    temperature: pick('temperature'),
    top_p: pick('top_p'),
    max_tokens: pick('max_tokens'),
    seed: pick('seed'),
    ...(options.schema === undefined
      ? {}
      : {
          response_format: {
            type: 'json_schema',
            json_schema: { name: options.schema.name, schema: options.schema.schema, strict: true },
          },
        }),
  };
}

/** Sends the invalid reply back with what was wrong: models fix their JSON far more often than they repeat it. */
function withRepair(request: ChatCompletionRequest, reply: string, error: string): ChatCompletionRequest {
  return {
    ...request,
    messages: [
      ...request.messages,
      { role: 'assistant', content: reply },
      {
        role: 'user',
        content: `That reply ${error}. Answer again with only the JSON object, matching the schema exactly.`,
      },
    ],
  };
}

/**
 * How much of the longest message to keep so the prompt fits. OpenAI and vLLM say the limit and the counts
 * ("maximum context length is 8192 tokens ... (8000 in the messages, 1024 in the completion)"): then cut exactly
 * what is needed plus 10%; otherwise keep 60%.
 */
export function keepFractionFor(request: ChatCompletionRequest, message: string): number {
  const limit = /maximum context length is (\d+)/i.exec(message);
  const inMessages = /\((\d+) in the messages/i.exec(message);
  if (limit === null || inMessages === null) return 0.6;
  const budget = Number(limit[1]) - (request.max_tokens ?? 0);
  const excess = Number(inMessages[1]) - budget;
  let longest = 0;
  let total = 0;
  for (const m of request.messages) {
    total += m.content.length;
    longest = Math.max(longest, m.content.length);
  }
  if (excess <= 0 || total === 0 || longest === 0) return 0.6;
  // Characters of the longest message to drop, at the prompt's own characters-per-token ratio.
  const dropChars = (excess * 1.1 * total) / Number(inMessages[1]);
  return Math.max(0.05, Math.min(0.9, 1 - dropChars / longest));
}

/** Keeps the first `keep` fraction of the longest message, cut at a word boundary, and marks the cut. */
export function shortenLongestMessage(request: ChatCompletionRequest, keep = 0.6): ChatCompletionRequest {
  let longest = 0;
  request.messages.forEach((m, i) => {
    if (m.content.length > request.messages[longest]!.content.length) longest = i;
  });
  const messages = request.messages.map((m, i) => {
    if (i !== longest) return m;
    const cut = m.content.slice(0, Math.floor(m.content.length * keep));
    const atWord = cut.slice(0, Math.max(cut.lastIndexOf(' '), Math.floor(cut.length * 0.9)));
    return { ...m, content: `${atWord} [...]` };
  });
  return { ...request, messages };
}

/** ~4 characters per token plus the reply budget: what a call reserves from a TPM bucket. */
export function estimateTokens(request: ChatCompletionRequest): number {
  let chars = 0;
  for (const m of request.messages) chars += m.content.length;
  return Math.ceil(chars / 4) + (request.max_tokens ?? 1024);
}
