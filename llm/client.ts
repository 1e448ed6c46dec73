import { ConfigError } from '../pipeline/errors.js';
import type { CallRecorder } from './accounting.js';
import type { Admission } from './admission.js';
import type { ResponseCache } from './cache.js';
import { replicasOf, type ResolvedEndpoint } from './endpoint.js';
import { recordAnswers, recordFailures } from './layers/account.js';
import { adjust } from './layers/adjust.js';
import { admit } from './layers/admit.js';
import { cacheReplies } from './layers/cache.js';
import { wire } from './layers/lane.js';
import { compose, type Complete } from './layers/layer.js';
import { repair } from './layers/repair.js';
import { retryTransient } from './layers/retry.js';
import { ReplicaSet, type ReplicaOptions, type ReplicaState } from './replicas.js';
import type {
  ChatCompletionRequest,
  ChatMessage,
  ChatOptions,
  ChatResult,
  LlmClient,
  Role,
} from './types.js';

export interface LlmClientOptions {
  readonly endpoints: readonly ResolvedEndpoint[];
  readonly cache?: ResponseCache;
  readonly recorder?: CallRecorder;
  /** Repairs of an invalid structured reply before the call fails (default 2). */
  readonly maxRepairs?: number;
  /** Backoff tuning (tests shorten it). */
  readonly backoff?: { baseMs?: number; maxMs?: number };
  /** Ejection and probing of replicas (tests shorten it). */
  readonly replicas?: ReplicaOptions;
}

/**
 * The one door to LLM calls: per role, a stack of layers (llm/layers/) around the role's replicas (one lane
 * each). Everything that still fails becomes an LlmError with a code and the raw reply.
 */
export class HttpLlmClient implements LlmClient {
  private readonly roles = new Map<
    Role,
    { readonly endpoint: ResolvedEndpoint; readonly replicas: ReplicaSet; readonly complete: Complete }
  >();

  constructor(private readonly options: LlmClientOptions) {
    for (const endpoint of options.endpoints) {
      const replicas = new ReplicaSet(endpoint, replicasOf(endpoint), options.replicas);
      this.roles.set(endpoint.role, { endpoint, replicas, complete: this.stack(endpoint, replicas) });
    }
  }

  /** The admission state of a role's first replica (for progress displays and tests). */
  admission(role: Role): Admission | undefined {
    return this.roles.get(role)?.replicas.lanes[0]?.admission;
  }

  /** Each replica of a role: health, limit, calls in flight and what it did. */
  replicaStates(role: Role): ReplicaState[] {
    return this.roles.get(role)?.replicas.states() ?? [];
  }

  async chat(role: Role, messages: readonly ChatMessage[], options: ChatOptions = {}): Promise<ChatResult> {
    const found = this.roles.get(role);
    if (found === undefined) {
      throw new ConfigError(
        `no endpoint is configured for the role "${role}" (roles: ${[...this.roles.keys()].join(', ')})`,
      );
    }
    return found.complete({ request: buildRequest(found.endpoint, messages, options), options });
  }

  async close(): Promise<void> {
    for (const { replicas } of this.roles.values()) await replicas.close();
  }

  /** The layers a call goes down, outermost first; `admit` picks a replica per attempt, `wire` sends there. */
  private stack(endpoint: ResolvedEndpoint, replicas: ReplicaSet): Complete {
    const { cache, recorder, backoff, maxRepairs = 2 } = this.options;
    return compose(
      [
        recordFailures(endpoint, recorder), // the code of the error that ends a call
        repair(endpoint, maxRepairs), // structured replies validated; invalid ones sent back
        cacheReplies(endpoint, cache, recorder), // a request seen before answered from the cache
        adjust(endpoint), // context overflow shortened once, a cut reply asked again with 2x max_tokens
        recordAnswers(endpoint, recorder), // tokens, latency and attempts of every answered request
        retryTransient(endpoint, recorder, backoff), // 429, 5xx, resets: backoff and again
        admit(replicas, recorder), // the role's circuit, then a permit on the freest healthy replica, per attempt
      ],
      wire,
    );
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
