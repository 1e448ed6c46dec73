import { describeEndpoint } from '../endpoint.js';
import { LlmError } from '../errors.js';
import { parseStructured } from '../structured.js';
import type { ChatCompletionRequest } from '../types.js';
import type { Layer, Named } from './layer.js';

/**
 * Structured calls (`options.schema`): the reply is parsed and validated; an invalid one is sent back with what
 * was wrong, at most `maxRepairs` times, then the call fails with AIR_LLM_INVALID_OUTPUT and the raw reply.
 */
export function repair(endpoint: Named, maxRepairs: number): Layer {
  return (next) => async (call) => {
    const { schema } = call.options;
    if (schema === undefined) return next(call);
    let request = call.request;
    for (let repairs = 0; ; repairs++) {
      const result = await next({ ...call, request });
      const parsed = parseStructured(result.text, schema.schema);
      if (parsed.ok) return { ...result, json: parsed.value };
      if (repairs >= maxRepairs) {
        throw new LlmError(
          'AIR_LLM_INVALID_OUTPUT',
          `${describeEndpoint(endpoint)}: the reply ${parsed.error} (after ${repairs} repairs)`,
          { raw: result.text.slice(0, 4000) },
        );
      }
      request = withRepair(request, result.text, parsed.error);
    }
  };
}

/** Sends the invalid reply back with what was wrong: models fix their JSON far more often than they repeat it. */
function withRepair(request: ChatCompletionRequest, reply: string, error: string): ChatCompletionRequest {
  return {
    ...request,
    messages: [
      ...request.messages,
      { role: 'assistant', content: reply },
      {
        role: 'user',
        content: `That reply ${error}. Answer again with only the JSON object, matching the schema exactly.`,
      },
    ],
  };
}
