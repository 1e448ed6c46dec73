import type { CallRecorder } from '../accounting.js';
import { describeEndpoint } from '../endpoint.js';
import { LlmError } from '../errors.js';
import type { ReplicaSet } from '../replicas.js';
import type { ChatCompletionRequest, ChatResult } from '../types.js';
import type { Layer } from './layer.js';

/**
 * One attempt on a role's replicas: refused at once while the role's circuit is open, then held until a replica
 * grants a permit, sent there, and its outcome handed back to that replica (llm/replicas.ts decides what a 429,
 * a 5xx or a refused connection means). Whatever the attempt throws leaves as an LlmError (an unknown one as a
 * connection failure, so it is retried, on whichever replica is then freest).
 */
export function admit(replicas: ReplicaSet, recorder?: CallRecorder): Layer {
  const { role, model } = replicas.endpoint;
  // Per-replica tallies only for a fleet: one server's are the role's own, under an address that may not last.
  const tally = replicas.lanes.length > 1 ? recorder?.recordAttempt?.bind(recorder) : undefined;
  return (next) => async (call) => {
    const lease = await replicas.acquire(estimateTokens(call.request));
    let result: ChatResult;
    try {
      result = await next({ ...call, lane: lease.replica.lane });
    } catch (error) {
      const failure =
        error instanceof LlmError
          ? error
          : new LlmError(
              'AIR_LLM_CONNECTION',
              `${describeEndpoint(lease.replica.lane.endpoint)}: ${String(error)}`,
              { cause: error },
            );
      replicas.release(lease, failure);
      tally?.(role, model, lease.replica.baseUrl, failure.code);
      throw failure;
    }
    replicas.release(lease, undefined, {
      tokens: result.usage.promptTokens + result.usage.completionTokens,
      latencyMs: result.latencyMs,
      completionTokens: result.usage.completionTokens,
    });
    tally?.(role, model, lease.replica.baseUrl);
    return result;
  };
}

/** ~4 characters per token plus the reply budget: what a call reserves from a TPM bucket. */
export function estimateTokens(request: ChatCompletionRequest): number {
  let chars = 0;
  for (const m of request.messages) chars += m.content.length;
  return Math.ceil(chars / 4) + (request.max_tokens ?? 1024);
}
