import type { CallRecorder } from '../accounting.js';
import { LlmError } from '../errors.js';
import type { Layer, Named } from './layer.js';

/**
 * Records every request the server answered (tokens are billed even for a reply that a layer above rejects):
 * latency from the first attempt to the answer, backoff included, and the attempts of the whole logical call.
 */
export function recordAnswers(endpoint: Named, recorder: CallRecorder | undefined): Layer {
  return (next) => async (call) => {
    const started = performance.now();
    const result = await next(call);
    const latencyMs = performance.now() - started;
    const attempts = (call.spentAttempts ?? 0) + result.attempts;
    recorder?.record({
      role: endpoint.role,
      model: endpoint.model,
      promptTokens: result.usage.promptTokens,
      completionTokens: result.usage.completionTokens,
      serverCachedTokens: result.usage.serverCachedTokens,
      step: call.options.step,
      latencyMs,
      cached: false,
      attempts,
    });
    return { ...result, latencyMs, cached: false, attempts };
  };
}

/**
 * Records the code of the error that ends a call. Outermost, so it counts each failed call once and never an
 * error a layer below recovered from (a shortened prompt, a retried 503).
 */
export function recordFailures(endpoint: Named, recorder: CallRecorder | undefined): Layer {
  return (next) => async (call) => {
    try {
      return await next(call);
    } catch (error) {
      if (error instanceof LlmError) recorder?.recordError(endpoint.role, endpoint.model, error.code);
      throw error;
    }
  };
}
