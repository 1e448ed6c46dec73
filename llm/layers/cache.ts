import type { CallRecorder } from '../accounting.js';
import type { CacheKeyInput, ResponseCache } from '../cache.js';
import type { Call, Layer, Named } from './layer.js';

/**
 * Answers a request seen before from the cache (recorded as a hit: no latency, no attempts) and stores every
 * answer the layers below accept. Above the adjustments, so the key is the request as asked, not as shortened.
 */
export function cacheReplies(
  endpoint: Named,
  cache: ResponseCache | undefined,
  recorder: CallRecorder | undefined,
): Layer {
  return (next) => {
    if (cache === undefined) return next;
    return async (call) => {
      const key = cache.key(keyInput(call));
      const hit = cache.get(key);
      if (hit !== undefined) {
        const { text, finishReason, usage, model } = hit;
        recorder?.record({
          role: endpoint.role,
          model: endpoint.model,
          promptTokens: usage.promptTokens,
          completionTokens: usage.completionTokens,
          latencyMs: 0,
          cached: true,
          attempts: 0,
        });
        return {
          text,
          finishReason,
          usage,
          model,
          role: endpoint.role,
          latencyMs: 0,
          cached: true,
          attempts: 0,
        };
      }
      const result = await next(call);
      // An accepted cut reply is the answer this request gets: cached like any other, so reruns repeat none.
      cache.put(key, result, { allowTruncated: call.options.acceptTruncated === true });
      return result;
    };
  };
}

/** What identifies a call's answer: the request as sent to the model, the schema and the re-sample index. */
function keyInput({ request, options }: Call): CacheKeyInput {
  return {
    model: request.model,
    messages: request.messages,
    sampling: {
      temperature: request.temperature,
      top_p: request.top_p,
      max_tokens: request.max_tokens,
      seed: request.seed,
    },
    schema: options.schema ?? null,
    // A repair is a different conversation (its messages differ); `attempt` keeps deliberate re-samples apart.
    attempt: options.attempt ?? 0,
  };
}
