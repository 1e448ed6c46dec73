import { describeEndpoint } from '../endpoint.js';
import { LlmError } from '../errors.js';
import type { ChatCompletionRequest, ChatResult } from '../types.js';
import type { Layer } from './layer.js';
import type { Lane } from './lane.js';

/**
 * One attempt on a lane: refused at once while its circuit is open, then held until its admission grants a
 * permit. The outcome goes back to both: a 429 or 503 says "too many at once" (the limit is cut, Retry-After
 * honoured), another failure says nothing about capacity, and only transient failures feed the circuit.
 * Whatever the attempt throws leaves as an LlmError (an unknown one as a connection failure, so it is retried).
 */
export function admit(lane: Lane): Layer {
  const { endpoint, admission, circuit } = lane;
  return (next) => async (call) => {
    circuit.check();
    const permit = await admission.acquire(estimateTokens(call.request));
    let result: ChatResult;
    try {
      result = await next(call);
    } catch (error) {
      const failure =
        error instanceof LlmError
          ? error
          : new LlmError('AIR_LLM_CONNECTION', `${describeEndpoint(endpoint)}: ${String(error)}`, {
              cause: error,
            });
      const overloaded = failure.code === 'AIR_LLM_RATE_LIMITED' || failure.status === 503;
      admission.release(permit, overloaded ? 'overloaded' : 'failure', 0, failure.retryAfterS);
      if (failure.transient) circuit.failure(failure);
      throw failure;
    }
    admission.release(permit, 'success', result.usage.promptTokens + result.usage.completionTokens);
    circuit.success();
    return result;
  };
}

/** ~4 characters per token plus the reply budget: what a call reserves from a TPM bucket. */
export function estimateTokens(request: ChatCompletionRequest): number {
  let chars = 0;
  for (const m of request.messages) chars += m.content.length;
  return Math.ceil(chars / 4) + (request.max_tokens ?? 1024);
}
