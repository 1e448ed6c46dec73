import { Admission } from '../admission.js';
import { CircuitBreaker } from '../circuit.js';
import { describeEndpoint, type ResolvedEndpoint } from '../endpoint.js';
import { ChatHttp } from '../http.js';
import { isLocalSpec, LocalModel, parseLocalSpec } from '../local.js';
import { resolveModelFile } from '../model-files.js';
import type { ChatCompletion, ChatCompletionRequest } from '../types.js';
import type { Complete } from './layer.js';

/** What carries one request: an HTTP endpoint or an embedded model. */
export interface Transport {
  complete(request: ChatCompletionRequest, signal?: AbortSignal): Promise<ChatCompletion>;
  close(): Promise<void>;
}

/**
 * One endpoint with its own limits: the transport, its admission (adaptive concurrency, rate buckets) and its
 * circuit breaker. `admit(lane)` around `wire(lane)` is the bottom of the client's stack; the layers above see
 * only a `Complete`, so a set of replica lanes can take its place without them changing.
 */
export interface Lane {
  readonly endpoint: ResolvedEndpoint;
  readonly transport: Transport;
  readonly admission: Admission;
  readonly circuit: CircuitBreaker;
}

export function openLane(endpoint: ResolvedEndpoint): Lane {
  const local = isLocalSpec(endpoint.model);
  return {
    endpoint,
    transport: local ? new LazyLocalModel(endpoint) : new ChatHttp(endpoint),
    admission: new Admission({
      // An embedded model runs `parallel` sequences: more in flight would only queue inside it.
      maxConcurrency: local ? endpoint.local.parallel : endpoint.maxConcurrency,
      initialConcurrency: local ? endpoint.local.parallel : endpoint.initialConcurrency,
      rpm: endpoint.rpm,
      tpm: endpoint.tpm,
    }),
    circuit: new CircuitBreaker(describeEndpoint(endpoint), endpoint.circuitBreakerSeconds * 1000),
  };
}

export async function closeLane(lane: Lane): Promise<void> {
  lane.admission.close();
  await lane.transport.close();
}

/** One request over the lane's transport, as a result of one attempt (its latency that attempt's). */
export function wire(lane: Lane): Complete {
  return async ({ request, options }) => {
    const started = performance.now();
    const completion = await lane.transport.complete(request, options.signal);
    const latencyMs = performance.now() - started;
    return { ...completion, role: lane.endpoint.role, latencyMs, cached: false, attempts: 1 };
  };
}

/**
 * A `local:<path.gguf>` model, loaded on its first call (node-llama-cpp is an optional dependency, imported only
 * then).
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
