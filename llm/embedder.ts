/**
 * What diversity selection needs of a vector source: texts in, one vector per text out. The default is the
 * in-process hashing vectorizer; `llm/embeddings.ts` implements it over an OpenAI-compatible /v1/embeddings
 * endpoint. Operators see only this interface, never HTTP. It lives in llm/ (below operators/) so that its
 * HTTP implementation imports nothing from a higher floor.
 */
export interface Embedder {
  /** One line for logs and errors, e.g. `hashing(256)` or `embeddings (model at http://host/v1)`. */
  readonly description: string;
  /** Vector length when known before the first call (an endpoint's is learnt from its first answer). */
  readonly dimensions: number | undefined;
  /** Texts per `embed` call that suit this embedder. */
  readonly batchSize: number;
  /** `embed` calls that may be in flight at once to keep it busy (1 for in-thread work). */
  readonly concurrency: number;
  /** One vector per text, in order; rejects when the texts cannot be embedded. */
  embed(texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]>;
  close?(): Promise<void>;
}
