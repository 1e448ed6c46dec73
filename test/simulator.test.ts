import { Command, CommanderError } from 'commander';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { registerSimCommand } from '../cli/sim-command.js';
import {
  Capacity,
  countPromptTokens,
  countTokens,
  parseMetrics,
  replyTokens,
  resolveCapacity,
  serviceTimeMs,
  startSimulator,
  throughputCeiling,
  type Simulator,
} from '../llm/simulator/index.js';
import { useSimulators } from './helpers/simulators.js';

const sim = useSimulators();

interface Completion {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: Array<{ index: number; message: { role: string; content: string }; finish_reason: string }>;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

interface ErrorBody {
  error: { message: string; type: string; code: string };
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

async function post(
  simulator: Simulator,
  path: string,
  body: unknown,
  init: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Answer> {
  const response = await fetch(`${simulator.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: init.signal,
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

async function chat(simulator: Simulator, body: Record<string, unknown>): Promise<Completion> {
  const answer = await post(simulator, '/chat/completions', { model: 'air-sim', ...body });
  expect(answer.status, answer.text).toBe(200);
  return JSON.parse(answer.text) as Completion;
}

const user = (content: string) => [{ role: 'user', content }];
const PROMPT = user('Explain how sourdough bread rises, and why the starter needs feeding every day.');

async function eventually(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i += 1) await new Promise((resolve) => setTimeout(resolve, 25));
  expect(check()).toBe(true);
}

describe('simulator: chat completions', () => {
  it('answers in the OpenAI shape, with usage counted by its tokenizer and equal to its own stats', async () => {
    const simulator = await sim();
    const reply = await chat(simulator, { messages: PROMPT });
    expect(reply).toMatchObject({ object: 'chat.completion', model: 'air-sim' });
    expect(reply.id).toMatch(/^chatcmpl-/);
    expect(Number.isInteger(reply.created)).toBe(true);
    expect(reply.choices).toHaveLength(1);
    const [choice] = reply.choices;
    expect(choice).toMatchObject({ index: 0, message: { role: 'assistant' }, finish_reason: 'stop' });
    const content = choice!.message.content;
    expect(content.length).toBeGreaterThan(0);
    // Replies are made of the prompt's words (the last one may be cut to fit the sampled length).
    const promptWords = new Set(PROMPT[0]!.content.toLowerCase().match(/[a-z]+/g));
    const replyWords = content.toLowerCase().match(/[a-z]+/g) ?? [];
    expect(replyWords.length).toBeGreaterThan(1);
    for (const word of replyWords.slice(0, -1)) expect(promptWords).toContain(word);
    expect(reply.usage).toEqual({
      prompt_tokens: countPromptTokens(PROMPT),
      completion_tokens: replyTokens(content),
      total_tokens: countPromptTokens(PROMPT) + replyTokens(content),
    });
    expect(simulator.stats()).toMatchObject({
      requests: 1,
      completions: 1,
      byStatus: { '200': 1 },
      promptTokens: reply.usage.prompt_tokens,
      completionTokens: reply.usage.completion_tokens,
      internalErrors: 0,
    });
  });

  it('is deterministic: same request and seed, same reply; another seed or prompt, another reply', async () => {
    const a = await sim({ seed: 11 });
    const b = await sim({ seed: 11 });
    const c = await sim({ seed: 12 });
    const request = { messages: PROMPT, temperature: 0.7 };
    const first = await chat(a, request);
    expect((await chat(a, request)).choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    expect((await chat(b, request)).choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    expect((await chat(c, request)).choices[0]!.message.content).not.toBe(first.choices[0]!.message.content);
    const otherPrompt = await chat(a, { ...request, messages: user('Explain how rye bread rises.') });
    expect(otherPrompt.choices[0]!.message.content).not.toBe(first.choices[0]!.message.content);
    const otherSampling = await chat(a, { ...request, temperature: 0.2 });
    expect(otherSampling.choices[0]!.message.content).not.toBe(first.choices[0]!.message.content);
  });

  it('cuts a reply at max_tokens with finish_reason "length", as a prefix of the uncapped reply', async () => {
    const simulator = await sim({ replyLength: 'fixed', meanReplyTokens: 100 });
    const full = await chat(simulator, { messages: PROMPT });
    expect(full.choices[0]!.finish_reason).toBe('stop');
    expect(full.usage.completion_tokens).toBe(100);
    const capped = await chat(simulator, { messages: PROMPT, max_tokens: 10 });
    expect(capped.choices[0]!.finish_reason).toBe('length');
    expect(capped.usage.completion_tokens).toBe(10);
    expect(full.choices[0]!.message.content.startsWith(capped.choices[0]!.message.content)).toBe(true);
    const exact = await chat(simulator, { messages: PROMPT, max_completion_tokens: 100 });
    expect(exact.choices[0]!.finish_reason).toBe('stop');
  });

  it('draws heavy-tailed reply lengths with the configured mean (log-normal and Pareto)', async () => {
    for (const replyLength of ['lognormal', 'pareto'] as const) {
      const simulator = await sim({ meanReplyTokens: 200, replyLength, contextTokens: 100_000 });
      const lengths: number[] = [];
      for (let batch = 0; batch < 10; batch += 1) {
        const replies = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            chat(simulator, { messages: user(`Question ${batch * 50 + i}: why is the sky blue at noon?`) }),
          ),
        );
        lengths.push(...replies.map((r) => r.usage.completion_tokens));
      }
      const sorted = [...lengths].sort((x, y) => x - y);
      const mean = lengths.reduce((x, y) => x + y, 0) / lengths.length;
      const median = sorted[Math.floor(sorted.length / 2)]!;
      const max = sorted[sorted.length - 1]!;
      expect(mean, replyLength).toBeGreaterThan(170);
      expect(mean, replyLength).toBeLessThan(230);
      expect(max / median, replyLength).toBeGreaterThan(4);
      // The client's sum of usage and the server's own count agree exactly.
      expect(simulator.stats().completionTokens).toBe(lengths.reduce((x, y) => x + y, 0));
    }
  });
});

describe('simulator: structured replies', () => {
  const ajv = new Ajv2020({ strict: true });
  const schemas: Record<string, Record<string, unknown>> = {
    flat: {
      type: 'object',
      properties: {
        instruction: { type: 'string', minLength: 10, maxLength: 40 },
        score: { type: 'integer', minimum: 1, maximum: 5 },
        confidence: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
        ok: { type: 'boolean' },
        nothing: { type: 'null' },
      },
      required: ['instruction', 'score', 'confidence', 'ok', 'nothing'],
      additionalProperties: false,
    },
    nested: {
      type: 'object',
      properties: {
        items: {
          type: 'array',
          minItems: 2,
          maxItems: 5,
          items: {
            type: 'object',
            properties: {
              kind: { enum: ['rewrite', 'expand', 'constrain'] },
              version: { const: 2 },
              tags: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 3 },
              note: { type: ['string', 'null'] },
            },
            required: ['kind', 'version', 'tags'],
            additionalProperties: false,
          },
        },
        meta: {
          type: 'object',
          properties: { depth: { type: 'integer', minimum: -3, maximum: -1 } },
          required: ['depth'],
          additionalProperties: false,
        },
      },
      required: ['items', 'meta'],
      additionalProperties: false,
    },
    choices: {
      type: 'object',
      properties: {
        answer: {
          oneOf: [
            {
              type: 'object',
              properties: { text: { type: 'string' } },
              required: ['text'],
              additionalProperties: false,
            },
            { type: 'array', items: { type: 'integer' }, minItems: 1 },
          ],
        },
        maybe: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }] },
      },
      required: ['answer', 'maybe'],
      additionalProperties: false,
    },
    recursive: {
      $defs: {
        node: {
          type: 'object',
          properties: {
            label: { type: 'string' },
            children: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 2 },
          },
          required: ['label', 'children'],
          additionalProperties: false,
        },
      },
      $ref: '#/$defs/node',
    },
  };

  for (const [name, schema] of Object.entries(schemas)) {
    it(`produces valid instances of a json_schema (${name})`, async () => {
      const simulator = await sim();
      const validate = ajv.compile(schema);
      for (let i = 0; i < 25; i += 1) {
        const reply = await chat(simulator, {
          messages: user(`Make item ${i} about tea, coffee and the weather.`),
          response_format: { type: 'json_schema', json_schema: { name, schema, strict: true } },
        });
        expect(reply.choices[0]!.finish_reason).toBe('stop');
        const instance: unknown = JSON.parse(reply.choices[0]!.message.content);
        expect(validate(instance), JSON.stringify(validate.errors)).toBe(true);
      }
    });
  }

  it('answers json_object with a JSON object', async () => {
    const reply = await chat(await sim(), { messages: PROMPT, response_format: { type: 'json_object' } });
    const value: unknown = JSON.parse(reply.choices[0]!.message.content);
    expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
  });

  it('ignores keywords outside its subset (the instance may break them) and rejects unsatisfiable schemas', async () => {
    const simulator = await sim();
    const pattern = {
      type: 'object',
      properties: { code: { type: 'string', pattern: '^AIR-[0-9]{4}$' } },
      required: ['code'],
    };
    const reply = await chat(simulator, {
      messages: PROMPT,
      response_format: { type: 'json_schema', json_schema: { name: 'code', schema: pattern } },
    });
    expect(ajv.validate(pattern, JSON.parse(reply.choices[0]!.message.content))).toBe(false);

    const impossible = { type: 'string', minLength: 5, maxLength: 2 };
    const answer = await post(simulator, '/chat/completions', {
      model: 'air-sim',
      messages: PROMPT,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: impossible } },
    });
    expect(answer.status).toBe(400);
    expect((JSON.parse(answer.text) as ErrorBody).error.code).toBe('invalid_json_schema');
  });

  it('cuts a JSON reply at max_tokens, leaving it unparseable with finish_reason "length"', async () => {
    const reply = await chat(await sim(), {
      messages: PROMPT,
      max_tokens: 3,
      response_format: { type: 'json_schema', json_schema: { name: 'nested', schema: schemas.nested! } },
    });
    expect(reply.choices[0]!.finish_reason).toBe('length');
    expect(reply.usage.completion_tokens).toBe(3);
    expect(() => JSON.parse(reply.choices[0]!.message.content)).toThrow();
  });
});

describe('simulator: request validation', () => {
  it('answers 400 with an OpenAI error body to invalid JSON and to a missing "messages"', async () => {
    const simulator = await sim();
    for (const body of ['{"model": "air-sim", ', { model: 'air-sim' }, { model: 'air-sim', messages: [] }]) {
      const answer = await post(simulator, '/chat/completions', body);
      expect(answer.status).toBe(400);
      const { error } = JSON.parse(answer.text) as ErrorBody;
      expect(error.type).toBe('invalid_request_error');
      expect(typeof error.message).toBe('string');
      expect(typeof error.code).toBe('string');
    }
    const unknown = await post(simulator, '/chat/completions', { model: 'gpt-9', messages: PROMPT });
    expect(unknown.status).toBe(404);
    expect((JSON.parse(unknown.text) as ErrorBody).error.code).toBe('model_not_found');
  });

  it('refuses a prompt beyond the context length with context_length_exceeded', async () => {
    const simulator = await sim({ contextTokens: 1000 });
    const long = await post(simulator, '/chat/completions', {
      model: 'air-sim',
      messages: user('word '.repeat(1000)),
    });
    expect(long.status).toBe(400);
    const { error } = JSON.parse(long.text) as ErrorBody;
    expect(error.code).toBe('context_length_exceeded');
    expect(error.message).toContain('maximum context length');
    // Prompt plus max_tokens counts, as on vLLM and OpenAI.
    const budget = await post(simulator, '/chat/completions', {
      model: 'air-sim',
      messages: user('short prompt'),
      max_tokens: 998,
    });
    expect(budget.status).toBe(400);
    expect(simulator.stats().byStatus).toEqual({ '400': 2 });
  });

  it('requires the API key when one is configured (401 otherwise)', async () => {
    const simulator = await sim({ apiKey: 'sk-sim-test' });
    const missing = await post(simulator, '/chat/completions', { model: 'air-sim', messages: PROMPT });
    expect(missing.status).toBe(401);
    expect((JSON.parse(missing.text) as ErrorBody).error.code).toBe('invalid_api_key');
    const wrong = await post(
      simulator,
      '/chat/completions',
      { model: 'air-sim', messages: PROMPT },
      { headers: { authorization: 'Bearer nope' } },
    );
    expect(wrong.status).toBe(401);
    expect((await fetch(`${simulator.url}/models`)).status).toBe(401);
    const right = await post(
      simulator,
      '/chat/completions',
      { model: 'air-sim', messages: PROMPT },
      { headers: { authorization: 'Bearer sk-sim-test' } },
    );
    expect(right.status).toBe(200);
  });
});

describe('simulator: faults', () => {
  const request = { model: 'air-sim', messages: PROMPT };

  it('429 with a Retry-After header', async () => {
    const simulator = await sim({ rate429: 1, retryAfterS: 3 });
    const answer = await post(simulator, '/chat/completions', request);
    expect(answer.status).toBe(429);
    expect(answer.headers.get('retry-after')).toBe('3');
    expect((JSON.parse(answer.text) as ErrorBody).error.type).toBe('rate_limit_error');
    expect(simulator.stats().faults.status429).toBe(1);
  });

  it('500 and 503', async () => {
    for (const [options, status] of [
      [{ rate500: 1 }, 500],
      [{ rate503: 1 }, 503],
    ] as const) {
      const simulator = await sim(options);
      const answer = await post(simulator, '/chat/completions', request);
      expect(answer.status).toBe(status);
      expect((JSON.parse(answer.text) as ErrorBody).error.type).toBe('server_error');
    }
  });

  it('a connection reset mid-answer is a client-side error', async () => {
    const simulator = await sim({ rateReset: 1 });
    await expect(post(simulator, '/chat/completions', request)).rejects.toThrow();
    expect(simulator.stats()).toMatchObject({ faults: { reset: 1 }, completions: 0 });
    expect(simulator.stats().byStatus).toEqual({});
  });

  it('a stall outlasts a short client timeout, and the server counts the dropped request', async () => {
    const simulator = await sim({ rateStall: 1 });
    const signal = AbortSignal.timeout(200);
    await expect(post(simulator, '/chat/completions', request, { signal })).rejects.toThrow();
    await eventually(() => simulator.stats().dropped === 1);
    expect(simulator.stats()).toMatchObject({ faults: { stall: 1 }, completions: 0 });

    const late = await sim({ rateStall: 1, stallMs: 50 });
    expect((await post(late, '/chat/completions', request)).status).toBe(200);
  });

  it('a malformed body: 200 whose body is not JSON', async () => {
    const simulator = await sim({ rateMalformed: 1 });
    const answer = await post(simulator, '/chat/completions', request);
    expect(answer.status).toBe(200);
    expect(answer.text.length).toBeGreaterThan(0);
    expect(() => JSON.parse(answer.text)).toThrow();
    expect(simulator.stats()).toMatchObject({
      faults: { malformed: 1 },
      completions: 0,
      completionTokens: 0,
    });
  });

  it('a truncated reply: half the tokens, finish_reason "length"', async () => {
    const options = { replyLength: 'fixed', meanReplyTokens: 40 } as const;
    const whole = await chat(await sim(options), { messages: PROMPT });
    const cut = await chat(await sim({ ...options, rateTruncated: 1 }), { messages: PROMPT });
    expect(cut.choices[0]!.finish_reason).toBe('length');
    expect(cut.usage.completion_tokens).toBe(20);
    expect(whole.choices[0]!.message.content.startsWith(cut.choices[0]!.message.content)).toBe(true);
  });

  it('draws faults deterministically: the same seed gives the same sequence of statuses', async () => {
    const statuses = async (): Promise<number[]> => {
      const simulator = await sim({ seed: 5, rate429: 0.3, rate500: 0.2 });
      const out: number[] = [];
      for (let i = 0; i < 30; i += 1) out.push((await post(simulator, '/chat/completions', request)).status);
      return out;
    };
    const first = await statuses();
    expect(await statuses()).toEqual(first);
    expect(new Set(first)).toEqual(new Set([200, 429, 500]));
  });

  it('rejects fault rates that add up to more than 1', async () => {
    await expect(startSimulator({ rate429: 0.6, rate500: 0.6 })).rejects.toThrow(/add up to more than 1/);
  });

  it('setDown(true) answers 503 to everything, setDown(false) restores service', async () => {
    const simulator = await sim();
    simulator.setDown(true);
    expect((await post(simulator, '/chat/completions', request)).status).toBe(503);
    expect((await fetch(`${simulator.url}/models`)).status).toBe(503);
    simulator.setDown(false);
    expect((await post(simulator, '/chat/completions', request)).status).toBe(200);
  });

  it('setDown(true) in "close" mode closes every connection; setDown(false) restores service', async () => {
    const simulator = await sim({ downMode: 'close' });
    expect((await post(simulator, '/chat/completions', request)).status).toBe(200);
    simulator.setDown(true);
    await expect(post(simulator, '/chat/completions', request)).rejects.toThrow();
    expect(simulator.stats().refusedConnections).toBeGreaterThanOrEqual(1);
    simulator.setDown(false);
    expect((await post(simulator, '/chat/completions', request)).status).toBe(200);
  });
});

describe('simulator: capacity', () => {
  it('serves at most maxConcurrentSequences at once: 16 requests on 4 slots take about 4 service times', async () => {
    const options = {
      zeroLatency: false,
      maxConcurrentSequences: 4,
      prefillTokensPerS: 1e9,
      decodeTokensPerSPerSequence: 200,
      replyLength: 'fixed',
      meanReplyTokens: 50,
    } as const;
    const simulator = await sim(options);
    const serviceMs = serviceTimeMs(resolveCapacity(options), countPromptTokens(PROMPT), 50);
    expect(serviceMs).toBeCloseTo(250, 0);
    const started = performance.now();
    const replies = await Promise.all(
      Array.from({ length: 16 }, () => chat(simulator, { messages: PROMPT })),
    );
    const ratio = (performance.now() - started) / serviceMs;
    expect(replies).toHaveLength(16);
    // 16 requests / 4 slots = 4 rounds; timers never fire early by more than a millisecond, lateness only adds.
    expect(ratio).toBeGreaterThan(3.9);
    expect(ratio).toBeLessThan(12);
    const stats = simulator.stats();
    expect(stats.maxConcurrent).toBe(4);
    expect(stats.maxQueue).toBeGreaterThanOrEqual(1);
    expect(stats.maxQueue).toBeLessThanOrEqual(12);
    expect(stats.sequenceMs).toBeGreaterThan(16 * serviceMs * 0.98);
    expect(stats.busyMs).toBeGreaterThan(4 * serviceMs * 0.98);
    expect(stats).toMatchObject({ completions: 16, inService: 0, queued: 0, queueFull: 0 });
  });

  it('hands a freed slot to the next queued request at once: every slot stays busy while requests wait', async () => {
    const capacity = new Capacity({ maxConcurrentSequences: 4, maxQueue: 64 });
    const never = new AbortController().signal;
    const violations: string[] = [];
    // Observed as each request ends: a slot handed over later (a timer, the next tick) shows up as an idle
    // slot with requests still queued.
    const check = (): void => {
      const { inService, queued } = capacity.stats();
      if (queued > 0 && inService < 4) violations.push(`${inService} in service, ${queued} queued`);
    };
    const outcomes = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        capacity.serve(10 + (i % 5), never).then((outcome) => (check(), outcome)),
      ),
    );
    expect(outcomes.every((o) => o === 'served')).toBe(true);
    expect(violations).toEqual([]);
    const stats = capacity.stats();
    expect(stats).toMatchObject({ inService: 0, queued: 0, maxConcurrent: 4, maxQueue: 12 });
    // Slot-time held is at least the service time asked for; requests did wait.
    expect(stats.sequenceMs).toBeGreaterThanOrEqual(16 * 10 + 3 * (1 + 2 + 3 + 4) - 16);
    expect(stats.queuedMs).toBeGreaterThan(0);
  });

  it('serves /metrics as vLLM does: running and waiting gauges, and their time integrals', async () => {
    const options = {
      zeroLatency: false,
      maxConcurrentSequences: 4,
      prefillTokensPerS: 1e9,
      decodeTokensPerSPerSequence: 500,
      replyLength: 'fixed',
      meanReplyTokens: 50,
    } as const;
    const simulator = await sim(options);
    const scrape = async () => {
      const response = await fetch(simulator.url.replace(/\/v1$/, '/metrics'));
      expect(response.headers.get('content-type')).toContain('text/plain');
      return parseMetrics(await response.text());
    };
    const before = await scrape();
    expect(before).toMatchObject({ requests_running: 0, requests_waiting: 0, sequence_seconds_total: 0 });
    const replies = Promise.all(Array.from({ length: 12 }, () => chat(simulator, { messages: PROMPT })));
    while (simulator.stats().inService + simulator.stats().queued < 12) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(await scrape()).toMatchObject({ requests_running: 4, requests_waiting: 8 });
    await replies;
    const after = await scrape();
    const serviceS = serviceTimeMs(resolveCapacity(options), countPromptTokens(PROMPT), 50) / 1000;
    expect(after).toMatchObject({ requests_running: 0, requests_waiting: 0, completions_total: 12 });
    expect(after.completion_tokens_total).toBe(12 * 50);
    // Node's timers may fire up to a millisecond early against performance.now(): 2% of slack.
    expect(after.sequence_seconds_total).toBeGreaterThanOrEqual(12 * serviceS * 0.98);
    // 12 requests on 4 slots: 8 wait about one service time, 4 of them a second one (less the few ms between
    // their arrivals, plus any timer lateness).
    expect(after.waiting_seconds_total).toBeGreaterThan(4 * serviceS);
    expect(after.uptime_seconds).toBeGreaterThan(before.uptime_seconds + 3 * serviceS * 0.98);
  });

  it('refuses with 503 and Retry-After when the queue is full', async () => {
    const simulator = await sim({
      zeroLatency: false,
      maxConcurrentSequences: 1,
      maxQueue: 1,
      replyLength: 'fixed',
      meanReplyTokens: 100,
      decodeTokensPerSPerSequence: 100,
    });
    const answers = await Promise.all(
      Array.from({ length: 3 }, () =>
        post(simulator, '/chat/completions', { model: 'air-sim', messages: PROMPT }),
      ),
    );
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([200, 200, 503]);
    expect(answers.find((a) => a.status === 503)!.headers.get('retry-after')).toBe('1');
    expect(simulator.stats()).toMatchObject({ queueFull: 1, maxConcurrent: 1, maxQueue: 1 });
  });

  it('states its throughput ceiling: slots / mean service time', () => {
    const ceiling = throughputCeiling(resolveCapacity({}), { meanPromptTokens: 0, meanReplyTokens: 200 });
    expect(ceiling.serviceTimeS).toBe(5);
    expect(ceiling.requestsPerS).toBeCloseTo(12.8);
    expect(ceiling.completionTokensPerS).toBeCloseTo(2560);
    const withPrompt = throughputCeiling(resolveCapacity({}), {
      meanPromptTokens: 2000,
      meanReplyTokens: 200,
    });
    expect(withPrompt.serviceTimeS).toBeCloseTo(5.1);
    expect(
      throughputCeiling(resolveCapacity({ zeroLatency: true }), { meanPromptTokens: 0, meanReplyTokens: 200 })
        .requestsPerS,
    ).toBe(Infinity);
  });
});

describe('simulator: models and embeddings', () => {
  it('lists the configured models', async () => {
    const simulator = await sim({ models: ['guidance-sim', 'student-sim'] });
    const response = await fetch(`${simulator.url}/models`);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { object: string; data: Array<{ id: string; object: string }> };
    expect(body.object).toBe('list');
    expect(body.data.map((m) => m.id)).toEqual(['guidance-sim', 'student-sim']);
    expect(body.data.every((m) => m.object === 'model')).toBe(true);
  });

  it('embeds inputs as deterministic unit vectors of the configured dimension', async () => {
    const simulator = await sim();
    type Embeddings = {
      object: string;
      data: Array<{ object: string; index: number; embedding: number[] }>;
      usage: { prompt_tokens: number; total_tokens: number };
    };
    const embed = async (body: Record<string, unknown>) => {
      const answer = await post(simulator, '/embeddings', { model: 'air-sim', ...body });
      expect(answer.status, answer.text).toBe(200);
      return JSON.parse(answer.text) as Embeddings;
    };
    const inputs = ['a cup of tea', 'a cup of coffee'];
    const batch = await embed({ input: inputs });
    expect(batch.object).toBe('list');
    expect(batch.data.map((d) => [d.object, d.index, d.embedding.length])).toEqual([
      ['embedding', 0, 384],
      ['embedding', 1, 384],
    ]);
    for (const { embedding } of batch.data) {
      expect(Math.hypot(...embedding)).toBeCloseTo(1, 9);
    }
    const batchTokens = countTokens(inputs[0]!) + countTokens(inputs[1]!);
    expect(batch.usage).toEqual({ prompt_tokens: batchTokens, total_tokens: batchTokens });
    const again = await embed({ input: 'a cup of tea' });
    expect(again.data[0]!.embedding).toEqual(batch.data[0]!.embedding);
    expect(again.data[0]!.embedding).not.toEqual(batch.data[1]!.embedding);

    const small = await embed({ input: 'x', dimensions: 8 });
    expect(small.data[0]!.embedding).toHaveLength(8);
    const base64 = (await embed({ input: 'a cup of tea', encoding_format: 'base64' })) as unknown as {
      data: Array<{ embedding: string }>;
    };
    const bytes = Buffer.from(base64.data[0]!.embedding, 'base64');
    const floats = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    expect(floats).toHaveLength(384);
    expect(floats[5]).toBeCloseTo(batch.data[0]!.embedding[5]!, 6);
    expect(simulator.stats()).toMatchObject({
      embeddingInputs: 5,
      embeddingTokens: batchTokens + 2 * countTokens(inputs[0]!) + countTokens('x'),
    });
  });
});

describe('air sim command', () => {
  function program(): Command {
    return new Command('air').exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
  }

  it('prints one start-up line with the URL, models and ceiling, serves until stopped, then prints stats', async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    const air = program();
    registerSimCommand(air, { stdout: (text) => lines.push(text), signal: stop.signal });
    const done = air.parseAsync(
      ['sim', '--port', '0', '--model', 'guidance', 'student', '--rate-429', '0.05'],
      {
        from: 'user',
      },
    );
    await eventually(() => lines.length > 0);
    expect(lines).toHaveLength(1);
    const [start] = lines;
    expect(start).toMatch(/SIMULATOR/);
    expect(start).toContain('guidance, student');
    expect(start).toContain('ceiling 12.8 req/s = 2,560 completion tok/s');
    expect(start).toContain('faults: 429 5%');
    const url = /(http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(start!)![1]!;
    const models = (await (await fetch(`${url}/models`)).json()) as { data: Array<{ id: string }> };
    expect(models.data.map((m) => m.id)).toEqual(['guidance', 'student']);
    stop.abort();
    await done;
    const report = lines.slice(1).join('');
    expect(report).toMatch(/stopped after .* 1 requests \(200×1\)/);
    expect(report).toContain('faults injected');
    await expect(fetch(`${url}/models`)).rejects.toThrow();
  });

  it('listens on 127.0.0.1 only and rejects bad flag values', async () => {
    for (const args of [
      ['sim', '--host', '0.0.0.0'],
      ['sim', '--rate-500', '1.5'],
      ['sim', '--max-concurrency', '0'],
      ['sim', '--port', '70000'],
      ['sim', '--port', '0', '--rate-429', '0.6', '--rate-500', '0.6'],
    ]) {
      const air = program();
      registerSimCommand(air, { stdout: () => {} });
      await expect(air.parseAsync(args, { from: 'user' }), args.join(' ')).rejects.toBeInstanceOf(
        CommanderError,
      );
    }
  });

  it('refuses an unset --api-key-env variable with a usage error', async () => {
    const air = program();
    registerSimCommand(air, { stdout: () => {} });
    delete process.env.AIR_SIM_TEST_UNSET_KEY;
    const parsing = air.parseAsync(['sim', '--port', '0', '--api-key-env', 'AIR_SIM_TEST_UNSET_KEY'], {
      from: 'user',
    });
    await expect(parsing).rejects.toMatchObject({ exitCode: 2 });
  });
});
