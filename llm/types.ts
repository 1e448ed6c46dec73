/**
 * The LLM layer's public shapes. Operators see only `LlmClient.chat(role, messages, options)`; endpoints,
 * admission, retries, the cache and accounting live behind it. Nothing here knows about Parquet or the engine.
 */

/** Named model roles; AIR uses a large `guidance` model and a small `student` model. */
export type Role = string;

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/** Sampling parameters sent with a request; unset fields fall back to the endpoint's defaults. */
export interface Sampling {
  readonly temperature?: number;
  readonly top_p?: number;
  readonly max_tokens?: number;
  readonly seed?: number;
}

/** A JSON Schema (the subset OpenAI-compatible servers accept for `response_format: json_schema`). */
export type JsonSchema = Readonly<Record<string, unknown>>;

export interface ChatOptions extends Sampling {
  /** Ask for JSON matching this schema; the reply is parsed and validated (with bounded repairs). */
  readonly schema?: { readonly name: string; readonly schema: JsonSchema };
  /** Distinguishes deliberate re-samples of the same prompt in the cache key (0 for the first). */
  readonly attempt?: number;
  /**
   * Keep a reply cut at max_tokens (finish_reason "length") instead of retrying with twice the budget and
   * then failing: for free text whose end does not matter, such as a student's answer that is only judged.
   */
  readonly acceptTruncated?: boolean;
  readonly signal?: AbortSignal;
  /** What the call is for (AIR: its prompt step): accounting adds its tokens up per step as well. */
  readonly step?: string;
}

export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls' | 'unknown';

export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  /**
   * Prompt tokens the server found in its prefix cache and did not compute again
   * (`usage.prompt_tokens_details.cached_tokens`); absent when the server does not say (vLLM says so only with
   * --enable-prompt-tokens-details).
   */
  readonly serverCachedTokens?: number;
}

/** The exact request sent to an OpenAI-compatible `/v1/chat/completions`. */
export interface ChatCompletionRequest {
  readonly model: string;
  readonly messages: readonly ChatMessage[];
  readonly temperature?: number;
  readonly top_p?: number;
  readonly max_tokens?: number;
  readonly seed?: number;
  readonly response_format?:
    | {
        readonly type: 'json_schema';
        readonly json_schema: { name: string; schema: JsonSchema; strict?: boolean };
      }
    | { readonly type: 'json_object' };
}

/** What the HTTP layer returns for one successful call. */
export interface ChatCompletion {
  readonly text: string;
  readonly finishReason: FinishReason;
  readonly usage: Usage;
  /** The model name the server reports. */
  readonly model: string;
}

export interface ChatResult extends ChatCompletion {
  readonly role: Role;
  /** Parsed and schema-valid JSON when `options.schema` was given. */
  readonly json?: unknown;
  /** Wall time of the call that produced the answer (0 for a cache hit). */
  readonly latencyMs: number;
  readonly cached: boolean;
  /** HTTP attempts made (retries included); 0 for a cache hit. */
  readonly attempts: number;
}

export interface LlmClient {
  chat(role: Role, messages: readonly ChatMessage[], options?: ChatOptions): Promise<ChatResult>;
}
