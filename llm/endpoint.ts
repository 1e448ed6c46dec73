import { z } from 'zod';
import { ConfigError } from '../pipeline/errors.js';

/**
 * One OpenAI-compatible endpoint serving one role. The API key is never part of the config: the config names
 * the environment variable that holds it, and the key is read once, when the client is built.
 */
export const samplingSchema = z.strictObject({
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  max_tokens: z.number().int().positive().optional(),
  seed: z.number().int().optional(),
});

export const localModelSchema = z.strictObject({
  /** CPU threads; always set (node-llama-cpp's default oversubscribes small machines: 24 tokens took 6.5 s). */
  threads: z.number().int().positive().default(1),
  /** Requests evaluated at once, each on its own context sequence. */
  parallel: z.number().int().positive().default(1),
  /** Context tokens per sequence. */
  contextSize: z.number().int().positive().default(4096),
  /** Where model URIs (local:hf:...) are downloaded to and found again; node-llama-cpp's default when unset. */
  modelsDir: z.string().min(1).optional(),
});

/** One replica of a role's model: a server of the fleet. */
export const replicaSchema = z.strictObject({
  baseUrl: z.url(),
  /** Relative share at equal load: a replica of weight 2 is sent twice the calls of one of weight 1. */
  weight: z.number().positive().default(1),
  /** This replica's cap on requests in flight; the role's `maxConcurrency` when unset. */
  maxConcurrency: z.number().int().positive().optional(),
});

export type ReplicaConfig = z.output<typeof replicaSchema>;

export const endpointSchema = z.strictObject({
  /** Base URL up to and including `/v1`, e.g. http://127.0.0.1:8000/v1. Not used by `local:` models. */
  baseUrl: z.url().default('http://127.0.0.1:8000/v1'),
  /**
   * Several replicas of the same model (a fleet): each call goes to the one with the most free capacity. When
   * set, it replaces `baseUrl`; every other setting here applies to each replica.
   */
  endpoints: z.array(replicaSchema).min(1).optional(),
  /** The model name sent to the server, or `local:<path.gguf>` to run a GGUF model inside air. */
  model: z.string().min(1),
  /** Settings of an embedded `local:` model. */
  local: localModelSchema.default({ threads: 1, parallel: 1, contextSize: 4096 }),
  /** Name of the environment variable holding the API key; omit for servers without auth. */
  apiKeyEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
    .optional(),
  /** Defaults sent with every request of this role (a call may override them). */
  sampling: samplingSchema.default({ temperature: 0.2, top_p: 0.9, max_tokens: 1024, seed: 0 }),
  /** Requests in flight at most; the adaptive limit never goes above it. */
  maxConcurrency: z.number().int().positive().default(64),
  /** Where the adaptive limit starts; it grows on success and is cut on 429/503. */
  initialConcurrency: z.number().int().positive().default(8),
  /** Optional hosted-API limits: requests and tokens per minute. */
  rpm: z.number().positive().optional(),
  tpm: z.number().positive().optional(),
  /** One request's time limit (headers and body), in seconds. */
  timeoutSeconds: z.number().positive().default(300),
  /** Attempts for transient failures (429, 5xx, resets, timeouts), the first included. */
  maxAttempts: z.number().int().positive().default(6),
  /** The run stops when the endpoint has answered nothing usable for this long. */
  circuitBreakerSeconds: z.number().positive().default(120),
  /**
   * How a server that queues instead of refusing (vLLM, SGLang, TGI) is kept from queueing: `auto` reads its
   * `/metrics` gauges when it has them, else compares latency with the no-load minimum; `gauges` or `latency`
   * only; `off`: only 429/503 cut the limit.
   */
  saturation: z.enum(['auto', 'gauges', 'latency', 'off']).default('auto'),
  /** How often `/metrics` is read, per replica. */
  metricsIntervalMs: z.number().int().positive().default(500),
  /** The model's context window in tokens, when known (used to shorten prompts that cannot fit). */
  contextTokens: z.number().int().positive().optional(),
});

export type EndpointConfig = z.output<typeof endpointSchema>;

export interface ResolvedEndpoint extends EndpointConfig {
  readonly role: string;
  /** The key itself, held only in memory; undefined when the endpoint needs none. */
  readonly apiKey: string | undefined;
}

/** Reads the endpoint's API key from the environment; the error names the variable, never a value. */
export function resolveEndpoint(
  role: string,
  config: EndpointConfig,
  env: NodeJS.ProcessEnv = process.env,
  /** Where the user set the variable's name, for the error (a config key by default, or a flag). */
  setting = `llm.${role}.apiKeyEnv`,
): ResolvedEndpoint {
  let apiKey: string | undefined;
  if (config.apiKeyEnv !== undefined) {
    apiKey = env[config.apiKeyEnv];
    if (apiKey === undefined || apiKey.length === 0) {
      throw new ConfigError(
        `${setting}: the environment variable ${config.apiKeyEnv} is not set (it should hold the API key)`,
      );
    }
  }
  return { ...config, role, apiKey };
}

/** One replica of a role, resolved: the role's settings with the replica's URL and cap, and its weight. */
export interface ReplicaEndpoint extends ResolvedEndpoint {
  readonly weight: number;
}

/** The replicas a role's calls are spread over: its `endpoints`, or its one `baseUrl`. */
export function replicasOf(endpoint: ResolvedEndpoint): ReplicaEndpoint[] {
  const { endpoints, ...shared } = endpoint;
  if (endpoints === undefined) return [{ ...shared, weight: 1 }];
  return endpoints.map((replica) => {
    const maxConcurrency = replica.maxConcurrency ?? shared.maxConcurrency;
    return {
      ...shared,
      baseUrl: replica.baseUrl,
      maxConcurrency,
      initialConcurrency: Math.min(shared.initialConcurrency, maxConcurrency),
      weight: replica.weight,
    };
  });
}

/** A one-line description for logs and errors: role, model and URL(s), never the key. */
export function describeEndpoint(
  endpoint: Pick<ResolvedEndpoint, 'role' | 'model' | 'baseUrl'> & { readonly endpoints?: unknown },
): string {
  if (endpoint.model.startsWith('local:')) return `${endpoint.role} (${endpoint.model})`;
  const urls = Array.isArray(endpoint.endpoints)
    ? (endpoint.endpoints as ReplicaConfig[]).map((r) => r.baseUrl).join(', ')
    : endpoint.baseUrl;
  return `${endpoint.role} (${endpoint.model} at ${urls})`;
}
