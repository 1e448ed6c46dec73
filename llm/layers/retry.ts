import type { CallRecorder } from '../accounting.js';
import type { ResolvedEndpoint } from '../endpoint.js';
import { LlmError } from '../errors.js';
import { backoffMs, sleep, type BackoffOptions } from '../retry.js';
import type { Layer, Named } from './layer.js';

/**
 * Sends a request again after a transient failure (429, 5xx, resets, timeouts, malformed bodies), with backoff,
 * up to the endpoint's `maxAttempts`; each retry is recorded as `retry:<code>`. Anything else is thrown at once:
 * repeating a deterministic failure unchanged would fail the same way. The result counts the attempts made.
 */
export function retryTransient(
  endpoint: Named & Pick<ResolvedEndpoint, 'maxAttempts'>,
  recorder: CallRecorder | undefined,
  backoff?: BackoffOptions,
): Layer {
  return (next) => async (call) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return { ...(await next(call)), attempts: attempt };
      } catch (error) {
        if (!(error instanceof LlmError) || !error.transient || attempt >= endpoint.maxAttempts) throw error;
        recorder?.recordError(endpoint.role, endpoint.model, `retry:${error.code}`);
        await sleep(backoffMs(attempt, error.retryAfterS, backoff), call.options.signal);
      }
    }
  };
}
