import type { Admission } from '../admission.js';
import type { ResolvedEndpoint } from '../endpoint.js';
import type { ChatCompletion, ChatCompletionRequest, ChatOptions, ChatResult } from '../types.js';

/**
 * The LLM client is a stack of layers around a lane, in the manner of undici's interceptors: a layer takes the
 * next one's `Complete` and returns its own, so each does one thing and is tested alone against a scripted next.
 */
export interface Call {
  readonly request: ChatCompletionRequest;
  readonly options: ChatOptions;
  /**
   * HTTP attempts the logical call made before this request (set when a request is shortened or lengthened and
   * sent again; 0 when unset), so that a result's `attempts` counts the whole call, as accounting expects.
   */
  readonly spentAttempts?: number;
  /** The replica an attempt was admitted to (set by `admit`, read by `wire`). */
  readonly lane?: Lane;
}

export type Complete = (call: Call) => Promise<ChatResult>;

export type Layer = (next: Complete) => Complete;

/** What a layer above the lane names a call by: role and model for accounting, the URL too for messages. */
export type Named = Pick<ResolvedEndpoint, 'role' | 'model' | 'baseUrl'>;

/** `layers` outermost first, so the list reads in the order a call goes down to `bottom`. */
export function compose(layers: readonly Layer[], bottom: Complete): Complete {
  return layers.reduceRight<Complete>((next, layer) => layer(next), bottom);
}

/** What carries one request: an HTTP endpoint or an embedded model. */
export interface Transport {
  complete(request: ChatCompletionRequest, signal?: AbortSignal): Promise<ChatCompletion>;
  close(): Promise<void>;
}

/**
 * One endpoint (a replica) with its own limits: the transport and its admission (adaptive concurrency, rate
 * buckets). A role's replica set (llm/replicas.ts) holds one lane per replica; `admit(replicas)` picks a
 * lane per attempt and `wire` sends over it: the bottom of the client's stack. The layers above see only a
 * `Complete`.
 */
export interface Lane {
  readonly endpoint: ResolvedEndpoint;
  readonly transport: Transport;
  readonly admission: Admission;
}
