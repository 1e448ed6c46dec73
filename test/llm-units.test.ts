import { afterEach, describe, expect, it, vi } from 'vitest';
import { Admission, TokenBucket } from '../llm/admission.js';
import { CircuitBreaker } from '../llm/circuit.js';
import { HttpLlmClient } from '../llm/client.js';
import { shortenLongestMessage } from '../llm/layers/adjust.js';
import { estimateTokens } from '../llm/layers/admit.js';
import { endpointSchema, resolveEndpoint } from '../llm/endpoint.js';
import { LlmError } from '../llm/errors.js';
import { isContextLengthError, parseCompletion, parseRetryAfter } from '../llm/http.js';
import { backoffMs } from '../llm/retry.js';
import { startSimulator } from '../llm/simulator/index.js';
import { parseJsonReply, parseStructured } from '../llm/structured.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('Admission (AIMD)', () => {
  it('admits up to the limit and queues the rest in order', async () => {
    const a = new Admission({ maxConcurrency: 10, initialConcurrency: 2 });
    const p1 = await a.acquire();
    await a.acquire();
    let third = false;
    const p3 = a.acquire().then((p) => ((third = true), p));
    await Promise.resolve();
    expect(third).toBe(false);
    expect(a.queued).toBe(1);
    a.release(p1, 'success');
    await p3;
    expect(third).toBe(true);
    a.close();
  });

  it('grows by one per window of successes and never above the maximum', async () => {
    const a = new Admission({ maxConcurrency: 5, initialConcurrency: 2 });
    for (let i = 0; i < 200; i++) a.release(await a.acquire(), 'success');
    expect(a.limit).toBe(5);
    a.close();
  });

  it('halves once per burst of 429s, remembers the failed level and approaches it slowly', async () => {
    const a = new Admission({ maxConcurrency: 64, initialConcurrency: 16 });
    const permits = await Promise.all(Array.from({ length: 16 }, () => a.acquire()));
    // A burst: every call admitted before the cut reports 429; only the first cuts.
    for (const p of permits) a.release(p, 'overloaded');
    expect(a.limit).toBe(8);
    expect(a.counters.cuts).toBe(1);
    // Back to 15 quickly (one window each), then four windows per step at the failed level (16).
    let calls = 0;
    while (a.limit < 15) {
      a.release(await a.acquire(), 'success');
      calls++;
    }
    const fast = calls;
    calls = 0;
    while (a.limit < 16) {
      a.release(await a.acquire(), 'success');
      calls++;
    }
    expect(calls).toBeGreaterThanOrEqual(4 * 15);
    expect(fast).toBeLessThan(8 + 9 + 10 + 11 + 12 + 13 + 14 + 1);
    a.close();
  });

  it('pauses admission for Retry-After', async () => {
    let now = 0;
    const a = new Admission({ maxConcurrency: 4, initialConcurrency: 4, now: () => now });
    a.release(await a.acquire(), 'overloaded', 0, 2);
    let admitted = false;
    void a.acquire().then(() => (admitted = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(admitted).toBe(false);
    now = 2001;
    await new Promise((r) => setTimeout(r, 2100));
    expect(admitted).toBe(true);
    a.close();
  });

  it('a success ends a Retry-After pause at once, and the cut limit decides what is sent', async () => {
    let now = 0;
    const a = new Admission({ maxConcurrency: 4, initialConcurrency: 4, now: () => now });
    const [p1, p2, p3] = await Promise.all([a.acquire(), a.acquire(), a.acquire(), a.acquire()]);
    // One refusal while the server still serves the other three: cut to 2 and pause for 2 s.
    a.release(p1!, 'overloaded', 0, 2);
    expect(a.limit).toBe(2);
    expect(a.paused).toBe(true);
    let admitted = false;
    void a.acquire().then(() => (admitted = true));
    now = 10;
    a.release(p2!, 'success');
    await Promise.resolve();
    expect(a.paused).toBe(false);
    expect(a.counters).toMatchObject({ pauses: 1, pausedMs: 10 });
    // Not paused any more, but 2 calls are still in flight at the limit of 2.
    expect(admitted).toBe(false);
    a.release(p3!, 'success');
    await Promise.resolve();
    expect(admitted).toBe(true);
    a.close();
  });

  it('wakes a waiter at the earliest time it can go, not at a later timer already set', async () => {
    vi.useFakeTimers();
    // 60,000 tokens per minute: one token per millisecond.
    const a = new Admission({ maxConcurrency: 4, initialConcurrency: 4, tpm: 60_000, now: () => Date.now() });
    const p1 = await a.acquire(0);
    const p2 = await a.acquire(0);
    await a.acquire(60_000); // empties the bucket
    a.release(p1, 'overloaded', 0, 1); // a 1 s pause: a timer for its end
    let admitted = false;
    void a.acquire(10).then(() => (admitted = true));
    a.release(p2, 'success', 0); // ends the pause; the waiter now needs only 10 ms of tokens
    await vi.advanceTimersByTimeAsync(20);
    expect(admitted).toBe(true);
    a.close();
  });

  it('token buckets reserve an estimate and refund the difference', () => {
    let now = 0;
    const bucket = new TokenBucket(1000, 1000 / 60_000, () => now);
    expect(bucket.waitFor(800)).toBe(0);
    bucket.take(800);
    expect(bucket.waitFor(800)).toBeGreaterThan(0);
    bucket.refund(700); // the call used 100 of its 800
    expect(bucket.waitFor(800)).toBe(0);
    bucket.take(900);
    now = 30_000; // half a minute refills half the bucket
    expect(bucket.waitFor(500)).toBe(0);
    expect(bucket.waitFor(600)).toBeCloseTo(6000, 5);
  });
});

describe('retry and circuit breaker', () => {
  it('backs off exponentially with jitter, and at least as long as Retry-After', () => {
    const mid = () => 0.5;
    expect(backoffMs(1, undefined, { baseMs: 100, random: mid })).toBe(75);
    expect(backoffMs(4, undefined, { baseMs: 100, random: mid })).toBe(600);
    expect(backoffMs(20, undefined, { baseMs: 100, maxMs: 1000, random: mid })).toBe(750);
    expect(backoffMs(1, 3, { baseMs: 100, random: mid })).toBe(3000);
  });

  it('opens after failing without a success for longer than its window, naming the endpoint and error', () => {
    let now = 0;
    const breaker = new CircuitBreaker('guidance (m at http://127.0.0.1:1/v1)', 1000, () => now);
    breaker.failure(new LlmError('AIR_LLM_SERVER_ERROR', '503 overloaded'));
    now = 900;
    breaker.check();
    breaker.success();
    now = 5000;
    breaker.check();
    breaker.failure(new LlmError('AIR_LLM_CONNECTION', 'connection refused'));
    now = 6001;
    expect(() => breaker.check()).toThrow(/guidance .* has failed for 1s .* last error: connection refused/);
    expect(breaker.isOpen).toBe(true);
  });

  it('marks a refused key and an open circuit as fatal, 429/5xx/resets as transient', () => {
    expect(new LlmError('AIR_LLM_AUTH', 'x').fatal).toBe(true);
    expect(new LlmError('AIR_LLM_CIRCUIT_OPEN', 'x').fatal).toBe(true);
    for (const code of [
      'AIR_LLM_RATE_LIMITED',
      'AIR_LLM_SERVER_ERROR',
      'AIR_LLM_CONNECTION',
      'AIR_LLM_TIMEOUT',
    ] as const) {
      expect(new LlmError(code, 'x').transient).toBe(true);
    }
    for (const code of ['AIR_LLM_BAD_REQUEST', 'AIR_LLM_CONTEXT_LENGTH', 'AIR_LLM_TRUNCATED'] as const) {
      expect(new LlmError(code, 'x').transient).toBe(false);
    }
  });
});

describe('HTTP reply parsing', () => {
  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('7')).toBe(7);
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30);
  });

  it('recognises context-length errors as vLLM, OpenAI and llama.cpp word them', () => {
    expect(isContextLengthError('{"error":{"code":"context_length_exceeded"}}')).toBe(true);
    expect(isContextLengthError("This model's maximum context length is 8192 tokens")).toBe(true);
    expect(isContextLengthError('the request exceeds the available context size')).toBe(false);
    expect(isContextLengthError('invalid temperature')).toBe(false);
  });

  it('parses the OpenAI shape and rejects what is not it', () => {
    const ok = parseCompletion(
      'x',
      JSON.stringify({
        model: 'm',
        choices: [{ message: { content: 'hi' }, finish_reason: 'length' }],
        usage: { prompt_tokens: 3, completion_tokens: 1 },
      }),
    );
    expect(ok).toEqual({
      text: 'hi',
      finishReason: 'length',
      usage: { promptTokens: 3, completionTokens: 1 },
      model: 'm',
    });
    for (const bad of ['', '{', '{"choices":[]}', '{"choices":[{"message":{}}]}', '<html>502</html>']) {
      expect(() => parseCompletion('x', bad)).toThrow(LlmError);
    }
  });
});

describe('structured replies', () => {
  const schema = {
    type: 'object',
    properties: {
      instruction: { type: 'string', minLength: 3 },
      score: { type: 'integer', minimum: 0, maximum: 5 },
    },
    required: ['instruction', 'score'],
    additionalProperties: false,
  };

  it('finds JSON in fences, prose and trailing text', () => {
    expect(parseJsonReply('{"a":1}')).toEqual({ ok: true, value: { a: 1 } });
    expect(parseJsonReply('Sure!\n```json\n{"a": [1, 2]}\n```\nDone.')).toEqual({
      ok: true,
      value: { a: [1, 2] },
    });
    expect(parseJsonReply('Here: {"a": "b}"} hope it helps')).toEqual({ ok: true, value: { a: 'b}' } });
  });

  it('fails malformed and truncated JSON with a reason', () => {
    for (const bad of ['', 'no json here', '{"a": 1', '```json\n{"a": \n```', '{"a": [1, 2}']) {
      const result = parseJsonReply(bad);
      expect(result.ok, bad).toBe(false);
    }
  });

  it('validates against the schema and names the violations', () => {
    expect(parseStructured('{"instruction":"Write a poem","score":4}', schema).ok).toBe(true);
    const bad = parseStructured('{"instruction":"Wr","score":9,"extra":1}', schema);
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.error).toMatch(/\/instruction must NOT have fewer than 3 characters/);
    expect(!bad.ok && bad.error).toMatch(/\/score must be <= 5/);
  });
});

describe('request adjustments', () => {
  it('shortens the longest message at a word boundary and marks it', () => {
    const long = Array.from({ length: 1000 }, (_, i) => `word${i}`).join(' ');
    const request = {
      model: 'm',
      messages: [
        { role: 'system' as const, content: 'be brief' },
        { role: 'user' as const, content: long },
      ],
    };
    const shorter = shortenLongestMessage(request);
    expect(shorter.messages[0]!.content).toBe('be brief');
    expect(shorter.messages[1]!.content.length).toBeLessThan(long.length * 0.61);
    expect(shorter.messages[1]!.content.endsWith(' [...]')).toBe(true);
    expect(estimateTokens({ ...request, max_tokens: 100 })).toBe(Math.ceil((8 + long.length) / 4) + 100);
  });
});

describe('admission against a capacity-limited simulator', () => {
  it('AIMD finds the level the server refuses without a 429/503 storm, and no pause runs its full Retry-After', async () => {
    // 4 slots and a queue of 8: the 13th request in flight is refused with 503 and Retry-After: 1.
    const simulator = await startSimulator({
      seed: 3,
      models: ['sim-model'],
      maxConcurrentSequences: 4,
      maxQueue: 8,
      prefillTokensPerS: 1e9,
      decodeTokensPerSPerSequence: 1000,
      meanReplyTokens: 20,
      replyLength: 'fixed',
    });
    const client = new HttpLlmClient({
      endpoints: [
        resolveEndpoint(
          'guidance',
          endpointSchema.parse({
            baseUrl: simulator.url,
            model: 'sim-model',
            initialConcurrency: 4,
            maxConcurrency: 64,
            maxAttempts: 50,
            saturation: 'off', // refusals alone: the gauges would keep the queue from filling (llm-fleet.test.ts)
          }),
        ),
      ],
      backoff: { baseMs: 5, maxMs: 50 },
    });
    try {
      const calls = 400;
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next < calls) {
            const i = next++;
            await client.chat('guidance', [{ role: 'user', content: `Call ${i} about bread.` }]);
          }
        }),
      );
      const stats = simulator.stats();
      const refused = (stats.byStatus['429'] ?? 0) + (stats.byStatus['503'] ?? 0);
      const admission = client.admission('guidance')!;
      expect(stats.completions).toBe(calls);
      expect(refused).toBeGreaterThanOrEqual(1);
      expect(refused / (refused + calls)).toBeLessThan(0.05);
      // Cut to about half of the refused level (13), never down to where slots idle for good.
      expect(admission.counters.cuts).toBeGreaterThanOrEqual(1);
      expect(admission.counters.cuts).toBeLessThanOrEqual(refused);
      expect(admission.limit).toBeGreaterThanOrEqual(4);
      expect(admission.limit).toBeLessThanOrEqual(13);
      // Refusals paused admission, and the next success ended each pause long before its 1 s: held for the
      // whole second, a pause empties the server (bench/RESULTS-saturation.md).
      expect(admission.counters.pauses).toBeGreaterThanOrEqual(1);
      expect(admission.counters.pausedMs).toBeLessThan(500 * admission.counters.pauses);
    } finally {
      await client.close();
      await simulator.close();
    }
  });
});
