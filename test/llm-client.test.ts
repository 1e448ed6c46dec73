import { createServer } from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Accounting } from '../llm/accounting.js';
import { MemoryResponseCache } from '../llm/cache.js';
import { HttpLlmClient } from '../llm/client.js';
import { endpointSchema, resolveEndpoint, type EndpointConfig } from '../llm/endpoint.js';
import { LlmError } from '../llm/errors.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../llm/simulator/index.js';

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

async function setup(sim: SimulatorOptions, endpoint: Partial<EndpointConfig> = {}) {
  const simulator: Simulator = await startSimulator({ seed: 7, models: ['sim-model'], ...sim });
  open.push(simulator);
  const accounting = new Accounting({ 'sim-model': { inputPerMTok: 1, outputPerMTok: 2 } });
  const cache = new MemoryResponseCache();
  const config = endpointSchema.parse({ baseUrl: simulator.url, model: 'sim-model', ...endpoint });
  const client = new HttpLlmClient({
    endpoints: [resolveEndpoint('guidance', config)],
    cache,
    recorder: accounting,
    backoff: { baseMs: 5, maxMs: 50 },
  });
  open.push(client);
  return { simulator, client, accounting, cache };
}

const ask = (i: number) => [{ role: 'user' as const, content: `Write instruction number ${i} about bread.` }];

async function failure(promise: Promise<unknown>): Promise<LlmError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LlmError);
  return error as LlmError;
}

describe('HttpLlmClient against the simulator', () => {
  it("answers, and its accounting equals the simulator's own counts", async () => {
    const { simulator, client, accounting } = await setup({ zeroLatency: true });
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => client.chat('guidance', ask(i))));
    expect(results.every((r) => r.text.length > 0 && r.finishReason === 'stop' && !r.cached)).toBe(true);
    const stats = simulator.stats();
    const snap = accounting.snapshot();
    const row = snap.entries.find((r) => r.role === 'guidance')!;
    expect(row.calls).toBe(40);
    expect(row.promptTokens).toBe(stats.promptTokens);
    expect(row.completionTokens).toBe(stats.completionTokens);
    expect(stats.completions).toBe(40);
    expect(row.unpriced).toBe(false);
  });

  it('serves a repeated call from the cache: no second request, counted as a hit', async () => {
    const { simulator, client, cache, accounting } = await setup({ zeroLatency: true });
    const first = await client.chat('guidance', ask(1), { seed: 3 });
    const second = await client.chat('guidance', ask(1), { seed: 3 });
    const resample = await client.chat('guidance', ask(1), { seed: 3, attempt: 1 });
    expect(second.cached).toBe(true);
    expect(second.text).toBe(first.text);
    expect(resample.cached).toBe(false);
    expect(simulator.stats().completions).toBe(2);
    expect(cache.stats()).toMatchObject({ hits: 1 });
    expect(accounting.snapshot().entries[0]).toMatchObject({ calls: 3, cacheHits: 1 });
  });

  it('retries transient failures (429, 500, 503, resets, malformed bodies) until every call succeeds', async () => {
    const { simulator, client, accounting } = await setup(
      {
        zeroLatency: true,
        rate429: 0.1,
        retryAfterS: 0,
        rate500: 0.1,
        rate503: 0.1,
        rateReset: 0.1,
        rateMalformed: 0.1,
      },
      { maxAttempts: 12 },
    );
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => client.chat('guidance', ask(i))));
    expect(results).toHaveLength(60);
    const faults = simulator.stats().faults;
    const injected = Object.values(faults).reduce((a, b) => a + b, 0);
    expect(injected).toBeGreaterThan(5);
    const row = accounting.snapshot().entries[0]!;
    expect(row.retries).toBeGreaterThanOrEqual(injected - 2);
  });

  it('waits as long as Retry-After says before trying again', async () => {
    const { simulator, client } = await setup(
      { zeroLatency: true, rate429: 1, retryAfterS: 1 },
      { maxAttempts: 2 },
    );
    const started = performance.now();
    const error = await failure(client.chat('guidance', ask(1)));
    expect(error.code).toBe('AIR_LLM_RATE_LIMITED');
    expect(performance.now() - started).toBeGreaterThanOrEqual(1000);
    expect(simulator.stats().byStatus['429']).toBe(2);
  });

  it('never retries a deterministic failure unchanged: unknown model fails after one request', async () => {
    const { simulator, client } = await setup({ zeroLatency: true }, { model: 'no-such-model' });
    const error = await failure(client.chat('guidance', ask(1)));
    expect(error.code).toBe('AIR_LLM_BAD_REQUEST');
    expect(error.transient).toBe(false);
    expect(simulator.stats().requests).toBe(1);
  });

  it('shortens a prompt that overflows the context once, and sends it again', async () => {
    const { simulator, client } = await setup({
      zeroLatency: true,
      contextTokens: 1200,
      replyLength: 'fixed',
      meanReplyTokens: 20,
    });
    const long = Array.from({ length: 1500 }, (_, i) => `w${i}`).join(' ');
    const result = await client.chat('guidance', [{ role: 'user', content: long }], { max_tokens: 50 });
    expect(result.text.length).toBeGreaterThan(0);
    expect(simulator.stats().byStatus['400']).toBe(1);
    expect(simulator.stats().completions).toBe(1);
  });

  it('retries a reply cut at max_tokens once with twice the budget, then fails visibly with the raw text', async () => {
    const { simulator, client } = await setup({ zeroLatency: true, rateTruncated: 1 });
    const error = await failure(client.chat('guidance', ask(1), { max_tokens: 64 }));
    expect(error.code).toBe('AIR_LLM_TRUNCATED');
    expect(error.raw!.length).toBeGreaterThan(0);
    expect(simulator.stats().completions).toBe(2);
  });

  it('keeps a cut reply when the caller accepts truncation (one call, finish_reason length)', async () => {
    const { simulator, client } = await setup({ zeroLatency: true, rateTruncated: 1 });
    const result = await client.chat('guidance', ask(1), { max_tokens: 64, acceptTruncated: true });
    expect(result.finishReason).toBe('length');
    expect(result.text.length).toBeGreaterThan(0);
    expect(simulator.stats().completions).toBe(1);
    // The accepted reply is the answer: cached, so a rerun does not ask again.
    const again = await client.chat('guidance', ask(1), { max_tokens: 64, acceptTruncated: true });
    expect(again.cached).toBe(true);
    expect(simulator.stats().completions).toBe(1);
  });

  it('returns schema-valid JSON for structured calls', async () => {
    const { client } = await setup({ zeroLatency: true });
    const schema = {
      type: 'object',
      properties: {
        instruction: { type: 'string', minLength: 3 },
        score: { type: 'integer', minimum: 0, maximum: 5 },
        tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 3 },
      },
      required: ['instruction', 'score', 'tags'],
      additionalProperties: false,
    };
    const result = await client.chat('guidance', ask(1), { schema: { name: 'initial', schema } });
    expect(result.json).toMatchObject({ instruction: expect.any(String), score: expect.any(Number) });
  });

  it('repairs an invalid structured reply with the reason, a bounded number of times', async () => {
    // A scripted OpenAI-compatible server: prose first, then schema-invalid JSON, then a valid answer.
    const replies = ['Sure! The code is AIR-12.', '{"code": "AIR-12"}', '```json\n{"code": "AIR-1234"}\n```'];
    const seen: string[] = [];
    const server = createServer((req, res) => {
      // air reads GET /metrics once for scheduler gauges; this server has none.
      if (req.method === 'GET') return void res.writeHead(404).end();
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const request = JSON.parse(body) as { messages: Array<{ content: string }> };
        seen.push(request.messages.at(-1)!.content);
        const content = replies[Math.min(seen.length - 1, replies.length - 1)];
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            model: 'scripted',
            choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 10, completion_tokens: 5 },
          }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    open.push({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
    const port = (server.address() as AddressInfo).port;
    const client = new HttpLlmClient({
      endpoints: [
        resolveEndpoint(
          'guidance',
          endpointSchema.parse({ baseUrl: `http://127.0.0.1:${port}/v1`, model: 'scripted' }),
        ),
      ],
    });
    open.push(client);
    const schema = {
      type: 'object',
      properties: { code: { type: 'string', pattern: '^AIR-[0-9]{4}$' } },
      required: ['code'],
    };
    const result = await client.chat('guidance', ask(1), { schema: { name: 'code', schema } });
    expect(result.json).toEqual({ code: 'AIR-1234' });
    expect(seen).toHaveLength(3);
    expect(seen[1]).toMatch(/not valid JSON/);
    expect(seen[2]).toMatch(/must match pattern/);

    // With one repair allowed, the same script fails visibly and keeps the raw reply.
    seen.length = 0;
    const strict = new HttpLlmClient({
      endpoints: [
        resolveEndpoint(
          'guidance',
          endpointSchema.parse({ baseUrl: `http://127.0.0.1:${port}/v1`, model: 'scripted' }),
        ),
      ],
      maxRepairs: 1,
    });
    open.push(strict);
    const error = await failure(strict.chat('guidance', ask(1), { schema: { name: 'code', schema } }));
    expect(error.code).toBe('AIR_LLM_INVALID_OUTPUT');
    expect(error.raw).toBe('{"code": "AIR-12"}');
  });

  it('opens the circuit when the endpoint stays down, as a fatal error naming it', async () => {
    const { simulator, client } = await setup(
      { zeroLatency: true },
      { circuitBreakerSeconds: 0.3, maxAttempts: 1000 },
    );
    simulator.setDown(true);
    const error = await failure(client.chat('guidance', ask(1)));
    expect(error.code).toBe('AIR_LLM_CIRCUIT_OPEN');
    expect(error.fatal).toBe(true);
    expect(error.message).toMatch(/guidance \(sim-model at http:\/\/127\.0\.0\.1:\d+\/v1\) has failed for/);
    simulator.setDown(false);
    // Once open it stays open: the run stops instead of flapping.
    expect((await failure(client.chat('guidance', ask(2)))).code).toBe('AIR_LLM_CIRCUIT_OPEN');
  });

  it('a refused API key is fatal and the key appears in no error', async () => {
    process.env.AIR_TEST_WRONG_KEY = 'sk-planted-secret-123';
    const { client } = await setup(
      { zeroLatency: true, apiKey: 'the-right-key' },
      { apiKeyEnv: 'AIR_TEST_WRONG_KEY' },
    );
    const error = await failure(client.chat('guidance', ask(1)));
    expect(error.code).toBe('AIR_LLM_AUTH');
    expect(error.fatal).toBe(true);
    expect(`${error.message} ${error.raw ?? ''} ${JSON.stringify(error)}`).not.toContain(
      'sk-planted-secret-123',
    );
  });

  it('AIMD settles under a capacity-limited server without a sustained 429 storm', async () => {
    // 8 sequences, no queue: every request beyond 8 in service is refused with 429/503 + Retry-After.
    const { simulator, client } = await setup(
      {
        maxConcurrentSequences: 8,
        maxQueue: 0,
        prefillTokensPerS: 1e9,
        decodeTokensPerSPerSequence: 4000,
        meanReplyTokens: 20,
        replyLength: 'fixed',
      },
      { initialConcurrency: 32, maxConcurrency: 64, maxAttempts: 50 },
    );
    const calls = 600;
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < calls) await client.chat('guidance', ask(next++), { max_tokens: 40 });
      }),
    );
    const stats = simulator.stats();
    const refused = (stats.byStatus['429'] ?? 0) + (stats.byStatus['503'] ?? 0);
    const admission = client.admission('guidance')!;
    expect(stats.completions).toBe(calls);
    expect(refused / (refused + calls)).toBeLessThan(0.1);
    expect(admission.limit).toBeGreaterThanOrEqual(4);
    expect(admission.limit).toBeLessThanOrEqual(16);
  });
});

describe('HttpLlmClient with an embedded local: model', () => {
  it('answers through the same client, and a structured call is schema-valid or a visible failure', async () => {
    const gguf = path.resolve(import.meta.dirname, '../../shared/models/tiny-random-llama.gguf');
    const accounting = new Accounting();
    const client = new HttpLlmClient({
      endpoints: [
        resolveEndpoint(
          'student',
          endpointSchema.parse({
            model: `local:${gguf}`,
            local: { threads: 1, parallel: 2 },
            sampling: { max_tokens: 16, seed: 1 },
          }),
        ),
      ],
      recorder: accounting,
    });
    open.push(client);
    // Random weights never emit an end token: the reply is cut at max_tokens, retried once with twice the
    // budget, then fails visibly with the text it produced.
    const cut = await failure(client.chat('student', ask(1)));
    expect(cut.code).toBe('AIR_LLM_TRUNCATED');
    expect(cut.raw!.length).toBeGreaterThan(0);
    const schema = {
      type: 'object',
      properties: { ok: { type: 'boolean' }, level: { enum: ['low', 'high'] } },
      required: ['ok', 'level'],
      additionalProperties: false,
    };
    const structured = await client
      .chat('student', ask(2), { schema: { name: 'flags', schema }, max_tokens: 64 })
      .then(
        (r) => r.json,
        (e: unknown) => e,
      );
    if (structured instanceof LlmError) expect(structured.code).toMatch(/AIR_LLM_(INVALID_OUTPUT|TRUNCATED)/);
    else
      expect(structured).toMatchObject({ ok: expect.any(Boolean), level: expect.stringMatching(/low|high/) });
    const row = accounting.snapshot().entries[0]!;
    expect(row).toMatchObject({ role: 'student', model: `local:${gguf}` });
    expect(row.calls).toBeGreaterThanOrEqual(3);
    expect(row.completionTokens).toBeGreaterThan(16);
  });
});
