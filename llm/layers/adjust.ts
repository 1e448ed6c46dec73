import { describeEndpoint } from '../endpoint.js';
import { LlmError } from '../errors.js';
import type { ChatCompletionRequest, ChatResult } from '../types.js';
import type { Call, Layer, Named } from './layer.js';

/**
 * The two deterministic failures that one change of the request can fix, each tried once: a prompt too long for
 * the context is shortened, and a reply cut at max_tokens is asked for again with twice the budget (unless the
 * caller accepts cut replies). A second cut reply fails with AIR_LLM_TRUNCATED and the raw text.
 */
export function adjust(endpoint: Named): Layer {
  return (next) => async (call) => {
    let current = call;
    let shortened = false;
    let lengthened = false;
    for (;;) {
      let result: ChatResult;
      try {
        result = await next(current);
      } catch (error) {
        if (!(error instanceof LlmError) || error.code !== 'AIR_LLM_CONTEXT_LENGTH' || shortened) throw error;
        shortened = true;
        current = withShorterPrompt(current, error.message);
        continue;
      }
      if (result.finishReason !== 'length' || call.options.acceptTruncated === true) return result;
      if (lengthened) {
        throw new LlmError(
          'AIR_LLM_TRUNCATED',
          `${describeEndpoint(endpoint)}: the reply was cut at max_tokens=${current.request.max_tokens ?? 'default'} twice`,
          { raw: result.text.slice(0, 4000) },
        );
      }
      // Sending the same request again would be cut the same way: retry once with twice the budget.
      lengthened = true;
      const max_tokens = (current.request.max_tokens ?? 1024) * 2;
      current = { ...current, request: { ...current.request, max_tokens }, spentAttempts: result.attempts };
    }
  };
}

/** The call again with its longest message cut to fit; the refused request counts as one attempt. */
function withShorterPrompt(call: Call, contextError: string): Call {
  const request = shortenLongestMessage(call.request, keepFractionFor(call.request, contextError));
  return { ...call, request, spentAttempts: (call.spentAttempts ?? 0) + 1 };
}

/**
 * How much of the longest message to keep so the prompt fits. OpenAI and vLLM say the limit and the counts
 * ("maximum context length is 8192 tokens ... (8000 in the messages, 1024 in the completion)"): then cut exactly
 * what is needed plus 10%; otherwise keep 60%.
 */
export function keepFractionFor(request: ChatCompletionRequest, message: string): number {
  const limit = /maximum context length is (\d+)/i.exec(message);
  const inMessages = /\((\d+) in the messages/i.exec(message);
  if (limit === null || inMessages === null) return 0.6;
  const budget = Number(limit[1]) - (request.max_tokens ?? 0);
  const excess = Number(inMessages[1]) - budget;
  let longest = 0;
  let total = 0;
  for (const m of request.messages) {
    total += m.content.length;
    longest = Math.max(longest, m.content.length);
  }
  if (excess <= 0 || total === 0 || longest === 0) return 0.6;
  // Characters of the longest message to drop, at the prompt's own characters-per-token ratio.
  const dropChars = (excess * 1.1 * total) / Number(inMessages[1]);
  return Math.max(0.05, Math.min(0.9, 1 - dropChars / longest));
}

/** Keeps the first `keep` fraction of the longest message, cut at a word boundary, and marks the cut. */
export function shortenLongestMessage(request: ChatCompletionRequest, keep = 0.6): ChatCompletionRequest {
  let longest = 0;
  request.messages.forEach((m, i) => {
    if (m.content.length > request.messages[longest]!.content.length) longest = i;
  });
  const messages = request.messages.map((m, i) => {
    if (i !== longest) return m;
    const cut = m.content.slice(0, Math.floor(m.content.length * keep));
    const atWord = cut.slice(0, Math.max(cut.lastIndexOf(' '), Math.floor(cut.length * 0.9)));
    return { ...m, content: `${atWord} [...]` };
  });
  return { ...request, messages };
}
