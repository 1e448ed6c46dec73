import { Pool, errors as undiciErrors } from 'undici';
import type { ResolvedEndpoint } from './endpoint.js';
import { describeEndpoint } from './endpoint.js';
import { LlmError } from './errors.js';
import type { ChatCompletion, ChatCompletionRequest, FinishReason } from './types.js';

/**
 * Plain undici over keep-alive connections, one pool per endpoint sized to its concurrency. Measured against
 * the openai SDK (bench/RESULTS.md §4): the SDK cost 0.49 ms of CPU per call against 0.07 ms here (1,389 vs
 * 6,561 calls/s on the same undici dispatcher); this layer's retries, limits and parsing are its own anyway.
 */
export class ChatHttp {
  private readonly route: Route;

  constructor(private readonly endpoint: ResolvedEndpoint) {
    this.route = openRoute(endpoint, 'chat/completions');
  }

  /** One HTTP attempt; every failure is an LlmError with a code saying whether a retry can help. */
  async complete(request: ChatCompletionRequest, signal?: AbortSignal): Promise<ChatCompletion> {
    const where = describeEndpoint(this.endpoint);
    return parseCompletion(where, await postJson(this.route, JSON.stringify(request), where, signal));
  }

  async close(): Promise<void> {
    await this.route.pool.close();
  }
}

/**
 * One POST of a JSON body to a route: the body of a 2xx answer as text, or an LlmError (transport or status)
 * whose code says whether a retry can help. `where` names the endpoint in the message.
 */
export async function postJson(
  route: Route,
  body: string,
  where: string,
  signal: AbortSignal | undefined,
): Promise<string> {
  let status: number;
  let text: string;
  let retryAfter: string | string[] | undefined;
  try {
    const response = await route.pool.request({
      path: route.path,
      method: 'POST',
      headers: route.headers,
      body,
      signal,
    });
    status = response.statusCode;
    retryAfter = response.headers['retry-after'];
    text = await response.body.text();
  } catch (error) {
    throw transportError(where, error);
  }
  if (status < 200 || status >= 300) throw statusError(where, status, text, retryAfter);
  return text;
}

/** What an OpenAI-compatible client needs to reach one route of an endpoint. */
export interface Route {
  readonly pool: Pool;
  readonly path: string;
  readonly headers: Record<string, string>;
}

/**
 * A keep-alive connection pool sized to the endpoint's concurrency, the route's path under the base URL, and
 * the JSON and (when there is a key) bearer headers: shared by the chat and embeddings clients.
 */
export function openRoute(
  endpoint: {
    readonly baseUrl: string;
    readonly maxConcurrency: number;
    readonly timeoutSeconds: number;
    readonly apiKey: string | undefined;
  },
  route: string,
): Route {
  const url = new URL(route, endpoint.baseUrl.endsWith('/') ? endpoint.baseUrl : `${endpoint.baseUrl}/`);
  const pool = new Pool(url.origin, {
    connections: endpoint.maxConcurrency,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: endpoint.timeoutSeconds * 1000,
    bodyTimeout: endpoint.timeoutSeconds * 1000,
  });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (endpoint.apiKey !== undefined) headers.authorization = `Bearer ${endpoint.apiKey}`;
  return { pool, path: url.pathname, headers };
}

/** A failure before any HTTP answer, as an LlmError (shared by the chat and embeddings clients). */
export function transportError(where: string, error: unknown): LlmError {
  const detail = error instanceof Error ? error.message : String(error);
  if (error instanceof Error && error.name === 'AbortError') {
    return new LlmError('AIR_LLM_CANCELLED', `${where}: request cancelled`, { cause: error });
  }
  if (
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError ||
    error instanceof undiciErrors.ConnectTimeoutError
  ) {
    return new LlmError('AIR_LLM_TIMEOUT', `${where}: no answer in time (${detail})`, { cause: error });
  }
  return new LlmError('AIR_LLM_CONNECTION', `${where}: connection failed (${detail})`, { cause: error });
}

/** A non-2xx answer as an LlmError with the code its retry class needs. */
export function statusError(
  where: string,
  status: number,
  body: string,
  retryAfter: string | string[] | undefined,
): LlmError {
  const message = errorMessageOf(body);
  const details = { status, raw: body.slice(0, 2000), retryAfterS: parseRetryAfter(retryAfter) };
  if (status === 429)
    return new LlmError('AIR_LLM_RATE_LIMITED', `${where}: 429 rate limited: ${message}`, details);
  if (status >= 500) return new LlmError('AIR_LLM_SERVER_ERROR', `${where}: ${status}: ${message}`, details);
  if (status === 401 || status === 403) {
    return new LlmError('AIR_LLM_AUTH', `${where}: ${status}: the API key was refused: ${message}`, details);
  }
  if (isContextLengthError(body)) {
    return new LlmError(
      'AIR_LLM_CONTEXT_LENGTH',
      `${where}: the prompt does not fit the context: ${message}`,
      details,
    );
  }
  return new LlmError('AIR_LLM_BAD_REQUEST', `${where}: ${status}: ${message}`, details);
}

/** vLLM, SGLang, llama.cpp and OpenAI word it differently; these cover the ones seen. */
export function isContextLengthError(body: string): boolean {
  return /context_length_exceeded|maximum context length|context length|too many tokens|exceeds the context|prompt is too long/i.test(
    body,
  );
}

/** Retry-After in seconds: a number of seconds or an HTTP date. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === '') return undefined;
  const seconds = Number(text);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - now) / 1000);
}

function errorMessageOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof parsed.error === 'string') return parsed.error;
    if (typeof parsed.error?.message === 'string') return parsed.error.message;
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // not JSON: fall through to the raw text
  }
  return body.slice(0, 300).replace(/\s+/g, ' ');
}

const FINISH: ReadonlySet<string> = new Set(['stop', 'length', 'content_filter', 'tool_calls']);

/** Checks the OpenAI response shape; a 2xx body that is not it is a malformed (retryable) answer. */
export function parseCompletion(where: string, body: string): ChatCompletion {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new LlmError('AIR_LLM_MALFORMED_RESPONSE', `${where}: the answer is not JSON`, {
      raw: body.slice(0, 2000),
    });
  }
  const root = parsed as {
    model?: unknown;
    choices?: Array<{ message?: { content?: unknown }; finish_reason?: unknown }>;
    usage?: {
      prompt_tokens?: unknown;
      completion_tokens?: unknown;
      prompt_tokens_details?: { cached_tokens?: unknown } | null;
    };
  };
  const choice = Array.isArray(root.choices) ? root.choices[0] : undefined;
  const content = choice?.message?.content;
  if (choice === undefined || (typeof content !== 'string' && content !== null)) {
    throw new LlmError(
      'AIR_LLM_MALFORMED_RESPONSE',
      `${where}: the answer has no choices[0].message.content`,
      {
        raw: body.slice(0, 2000),
      },
    );
  }
  const reason = typeof choice.finish_reason === 'string' ? choice.finish_reason : 'unknown';
  const cached = root.usage?.prompt_tokens_details?.cached_tokens;
  return {
    text: content ?? '',
    finishReason: (FINISH.has(reason) ? reason : 'unknown') as FinishReason,
    usage: {
      promptTokens: toCount(root.usage?.prompt_tokens),
      completionTokens: toCount(root.usage?.completion_tokens),
      ...(typeof cached === 'number' ? { serverCachedTokens: toCount(cached) } : {}),
    },
    model: typeof root.model === 'string' ? root.model : '',
  };
}

function toCount(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : 0;
}
