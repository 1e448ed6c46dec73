import { AirError } from '../pipeline/errors.js';

/**
 * Every failure of an LLM call, with a stable code. `transient` errors are retried with backoff;
 * the others are deterministic: repeating the same request would fail the same way.
 */
export type LlmErrorCode =
  /** 429: the endpoint asks us to slow down (transient). */
  | 'AIR_LLM_RATE_LIMITED'
  /** 5xx (transient). */
  | 'AIR_LLM_SERVER_ERROR'
  /** No answer within the request timeout (transient). */
  | 'AIR_LLM_TIMEOUT'
  /** Connection refused, reset or closed mid-answer (transient). */
  | 'AIR_LLM_CONNECTION'
  /** A 2xx answer whose body is not the OpenAI shape (transient: proxies and overloaded servers do this). */
  | 'AIR_LLM_MALFORMED_RESPONSE'
  /** 400/404/422 and other 4xx: the request itself is wrong (deterministic). */
  | 'AIR_LLM_BAD_REQUEST'
  /** 401/403: the API key is missing or wrong (deterministic, stops the run). */
  | 'AIR_LLM_AUTH'
  /** The prompt does not fit the model's context (deterministic). */
  | 'AIR_LLM_CONTEXT_LENGTH'
  /** The reply was cut at max_tokens (finish_reason "length"). */
  | 'AIR_LLM_TRUNCATED'
  /** The reply is not valid JSON, or not valid against the schema, after the allowed repairs. */
  | 'AIR_LLM_INVALID_OUTPUT'
  /** The endpoint has failed for longer than the circuit breaker allows: the run stops. */
  | 'AIR_LLM_CIRCUIT_OPEN'
  /** The call was cancelled by the run. */
  | 'AIR_LLM_CANCELLED';

const TRANSIENT: ReadonlySet<LlmErrorCode> = new Set([
  'AIR_LLM_RATE_LIMITED',
  'AIR_LLM_SERVER_ERROR',
  'AIR_LLM_TIMEOUT',
  'AIR_LLM_CONNECTION',
  'AIR_LLM_MALFORMED_RESPONSE',
]);

export class LlmError extends AirError<LlmErrorCode> {
  /** HTTP status, when the server answered. */
  readonly status: number | undefined;
  /** Seconds the server asked us to wait (Retry-After), when it said. */
  readonly retryAfterS: number | undefined;
  /** The raw reply text, kept for failure rows (never an API key: requests are not stored here). */
  readonly raw: string | undefined;

  constructor(
    code: LlmErrorCode,
    message: string,
    details: { status?: number; retryAfterS?: number; raw?: string; cause?: unknown } = {},
  ) {
    super(code, message, { cause: details.cause });
    this.name = 'LlmError';
    this.status = details.status;
    this.retryAfterS = details.retryAfterS;
    this.raw = details.raw;
  }

  get transient(): boolean {
    return TRANSIENT.has(this.code);
  }

  /** A refused key or a dead endpoint stops the run instead of failing one record after another. */
  get fatal(): boolean {
    return this.code === 'AIR_LLM_AUTH' || this.code === 'AIR_LLM_CIRCUIT_OPEN';
  }
}

export function isTransient(error: unknown): boolean {
  return error instanceof LlmError && error.transient;
}
