import { Admission } from '../admission.js';
import type { ResolvedEndpoint } from '../endpoint.js';
import { ChatHttp } from '../http.js';
import { isLocalSpec, LocalModel, parseLocalSpec } from '../local.js';
import { resolveModelFile } from '../model-files.js';
import type { ChatCompletion, ChatCompletionRequest } from '../types.js';
import type { Complete, Lane, Transport } from './layer.js';

export type { Lane, Transport } from './layer.js';

/** `onReady`: see AdmissionOptions (the replica set over the lane tries again when a pause ends). */
export function openLane(endpoint: ResolvedEndpoint, onReady?: () => void): Lane {
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
      onReady,
    }),
  };
}

export async function closeLane(lane: Lane): Promise<void> {
  lane.admission.close();
  await lane.transport.close();
}

/**
 * One request over the transport of the lane `admit` chose, as a result of one attempt (its latency that
 * attempt's).
 */
export const wire: Complete = async ({ request, options, lane }) => {
  if (lane === undefined) throw new Error('wire: no lane chosen (admit must be the layer above)');
  const started = performance.now();
  const completion = await lane.transport.complete(request, options.signal);
  const latencyMs = performance.now() - started;
  return { ...completion, role: lane.endpoint.role, latencyMs, cached: false, attempts: 1 };
};

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
