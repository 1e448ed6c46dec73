import { describe, expect, it } from 'vitest';
import type { CallRecord, CallRecorder } from '../llm/accounting.js';
import { Admission } from '../llm/admission.js';
import { MemoryResponseCache } from '../llm/cache.js';
import { endpointSchema, replicasOf, resolveEndpoint } from '../llm/endpoint.js';
import { LlmError } from '../llm/errors.js';
import { recordAnswers, recordFailures } from '../llm/layers/account.js';
import { adjust } from '../llm/layers/adjust.js';
import { admit } from '../llm/layers/admit.js';
import { cacheReplies } from '../llm/layers/cache.js';
import { wire, type Lane } from '../llm/layers/lane.js';
import { compose, type Call, type Complete, type Layer } from '../llm/layers/layer.js';
import { repair } from '../llm/layers/repair.js';
import { retryTransient } from '../llm/layers/retry.js';
import { ReplicaSet } from '../llm/replicas.js';
import type { ChatOptions, ChatResult } from '../llm/types.js';

// Each layer alone, against a scripted `next`: plain functions that answer or throw in order and keep the calls.

const endpoint = resolveEndpoint(
  'guidance',
  endpointSchema.parse({ model: 'm', baseUrl: 'http://127.0.0.1:9/v1', maxAttempts: 3 }),
);

function call(options: ChatOptions = {}, content = 'Write one instruction about bread.'): Call {
  return {
    request: { model: 'm', messages: [{ role: 'user', content }], temperature: 0, max_tokens: 100, seed: 0 },
    options,
  };
}

function reply(fields: Partial<ChatResult> = {}): ChatResult {
  return {
    text: 'an answer',
    finishReason: 'stop',
    usage: { promptTokens: 10, completionTokens: 5 },
    model: 'm',
    role: 'guidance',
    latencyMs: 1,
    cached: false,
    attempts: 1,
    ...fields,
  };
}

type Step = ChatResult | Error | (() => Promise<ChatResult>);

/** A `next` that plays `steps` in order (the last one repeats) and keeps every call it received. */
function scripted(...steps: Step[]): Complete & { calls: Call[] } {
  const calls: Call[] = [];
  const next = async (c: Call): Promise<ChatResult> => {
    calls.push(c);
    const step = steps[Math.min(calls.length, steps.length) - 1]!;
    if (step instanceof Error) throw step;
    return typeof step === 'function' ? step() : step;
  };
  return Object.assign(next, { calls });
}

/** A recorder that keeps what it was told, in order. */
function recorder(): CallRecorder & { records: CallRecord[]; errors: string[] } {
  const records: CallRecord[] = [];
  const errors: string[] = [];
  return {
    records,
    errors,
    record: (r) => void records.push(r),
    recordError: (role, model, code) => void errors.push(`${role}/${model}/${code}`),
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.unreachable('the call should fail'),
    (e: unknown) => e,
  );
}

const contextError = (): LlmError =>
  new LlmError('AIR_LLM_CONTEXT_LENGTH', 'maximum context length is 100 tokens (150 in the messages)', {
    status: 400,
  });
const serverError = (status = 500, retryAfterS?: number): LlmError =>
  new LlmError('AIR_LLM_SERVER_ERROR', `HTTP ${status}`, { status, retryAfterS });

describe('compose', () => {
  it('lists layers outermost first: a call goes down the list to the bottom and back up', async () => {
    const seen: string[] = [];
    const tag =
      (name: string): Layer =>
      (next) =>
      async (c) => {
        seen.push(`${name} down`);
        const result = await next(c);
        seen.push(`${name} up`);
        return result;
      };
    await compose([tag('a'), tag('b')], scripted(reply()))(call());
    expect(seen).toEqual(['a down', 'b down', 'b up', 'a up']);
  });
});

describe('cacheReplies', () => {
  it('answers a repeated request from the cache without calling next, recorded as a hit with no attempts', async () => {
    const rec = recorder();
    const next = scripted(reply({ text: 'first', latencyMs: 42, attempts: 2 }));
    const complete = cacheReplies(endpoint, new MemoryResponseCache(), rec)(next);
    expect((await complete(call())).text).toBe('first');
    const hit = await complete(call());
    expect(next.calls).toHaveLength(1);
    expect(hit).toEqual({
      text: 'first',
      finishReason: 'stop',
      usage: { promptTokens: 10, completionTokens: 5 },
      model: 'm',
      role: 'guidance',
      latencyMs: 0,
      cached: true,
      attempts: 0,
    });
    // Only the hit is recorded here: answered requests are recordAnswers' to record.
    expect(rec.records).toEqual([
      {
        role: 'guidance',
        model: 'm',
        promptTokens: 10,
        completionTokens: 5,
        latencyMs: 0,
        cached: true,
        attempts: 0,
      },
    ]);
  });

  it('keeps deliberate re-samples (options.attempt) and different schemas apart', async () => {
    const next = scripted(reply());
    const complete = cacheReplies(endpoint, new MemoryResponseCache(), undefined)(next);
    await complete(call());
    await complete(call({ attempt: 1 }));
    await complete(call({ schema: { name: 'x', schema: { type: 'object' } } }));
    await complete(call({ attempt: 1 }));
    expect(next.calls).toHaveLength(3);
  });

  it('caches a cut reply only when the caller accepts truncation', async () => {
    const next = scripted(reply({ finishReason: 'length' }));
    const complete = cacheReplies(endpoint, new MemoryResponseCache(), undefined)(next);
    await complete(call());
    await complete(call());
    expect(next.calls).toHaveLength(2);
    await complete(call({ acceptTruncated: true }));
    expect((await complete(call({ acceptTruncated: true }))).cached).toBe(true);
    expect(next.calls).toHaveLength(3);
  });

  it('is no layer at all without a cache', () => {
    const next = scripted(reply());
    expect(cacheReplies(endpoint, undefined, recorder())(next)).toBe(next);
  });
});

describe('adjust', () => {
  it('shortens a prompt the context refused once, counting the refused request as an attempt', async () => {
    const long = `${'word '.repeat(200)}end`;
    const next = scripted(contextError(), reply({ attempts: 2 }));
    const result = await adjust(endpoint)(next)(call({}, long));
    expect(result.attempts).toBe(2);
    expect(next.calls).toHaveLength(2);
    const sent = next.calls[1]!;
    expect(sent.spentAttempts).toBe(1);
    expect(sent.request.messages[0]!.content.length).toBeLessThan(long.length);
    expect(sent.request.messages[0]!.content.endsWith(' [...]')).toBe(true);
  });

  it('fails with the second context error: a prompt is shortened once', async () => {
    const second = contextError();
    const next = scripted(contextError(), second);
    expect(await rejection(adjust(endpoint)(next)(call()))).toBe(second);
    expect(next.calls).toHaveLength(2);
  });

  it('throws any other error at once, unchanged', async () => {
    const error = new LlmError('AIR_LLM_BAD_REQUEST', 'no such model', { status: 404 });
    const next = scripted(error);
    expect(await rejection(adjust(endpoint)(next)(call()))).toBe(error);
    expect(next.calls).toHaveLength(1);
  });

  it('asks again with twice max_tokens after a cut reply, carrying the attempts already made', async () => {
    const next = scripted(
      reply({ finishReason: 'length', attempts: 2 }),
      reply({ text: 'whole', attempts: 3 }),
    );
    const result = await adjust(endpoint)(next)(call());
    expect(result.text).toBe('whole');
    expect(next.calls.map((c) => c.request.max_tokens)).toEqual([100, 200]);
    expect(next.calls[1]!.spentAttempts).toBe(2);
  });

  it('fails with AIR_LLM_TRUNCATED and the raw text when the doubled budget is cut too', async () => {
    const next = scripted(reply({ finishReason: 'length', text: 'cut twice' }));
    const error = await rejection(adjust(endpoint)(next)(call()));
    expect(error).toBeInstanceOf(LlmError);
    expect((error as LlmError).code).toBe('AIR_LLM_TRUNCATED');
    expect((error as LlmError).message).toContain('max_tokens=200 twice');
    expect((error as LlmError).raw).toBe('cut twice');
    expect(next.calls).toHaveLength(2);
  });

  it('returns a cut reply as it is when the caller accepts truncation', async () => {
    const next = scripted(reply({ finishReason: 'length' }));
    const result = await adjust(endpoint)(next)(call({ acceptTruncated: true }));
    expect(result.finishReason).toBe('length');
    expect(next.calls).toHaveLength(1);
  });
});

describe('recordAnswers and recordFailures', () => {
  it('records each answered request: tokens, its latency, and the attempts of the whole call', async () => {
    const rec = recorder();
    const slow = async (): Promise<ChatResult> => {
      await new Promise((resolve) => setTimeout(resolve, 30));
      return reply({ attempts: 2, latencyMs: 1 });
    };
    const result = await recordAnswers(endpoint, rec)(scripted(slow))({ ...call(), spentAttempts: 1 });
    expect(result.attempts).toBe(3);
    expect(result.latencyMs).toBeGreaterThanOrEqual(25);
    expect(rec.records).toEqual([
      {
        role: 'guidance',
        model: 'm',
        promptTokens: 10,
        completionTokens: 5,
        latencyMs: result.latencyMs,
        cached: false,
        attempts: 3,
      },
    ]);
    expect(rec.errors).toEqual([]);
  });

  it('records nothing for a failed request: the error is recorded once, where the call ends', async () => {
    const rec = recorder();
    const answers = recordAnswers(endpoint, rec);
    const failures = recordFailures(endpoint, rec);
    const error = serverError();
    expect(await rejection(failures(answers(scripted(error)))(call()))).toBe(error);
    expect(rec.records).toEqual([]);
    expect(rec.errors).toEqual(['guidance/m/AIR_LLM_SERVER_ERROR']);
  });

  it('records only LlmErrors, and nothing for a success', async () => {
    const rec = recorder();
    const failures = recordFailures(endpoint, rec);
    await failures(scripted(reply()))(call());
    await rejection(failures(scripted(new TypeError('a bug')))(call()));
    expect(rec.errors).toEqual([]);
    expect(rec.records).toEqual([]);
  });
});

describe('retryTransient', () => {
  const backoff = { baseMs: 20, maxMs: 20 };

  it('retries transient failures with backoff, recording each retry, and counts the attempts', async () => {
    const rec = recorder();
    const reset = new LlmError('AIR_LLM_CONNECTION', 'reset');
    const next = scripted(serverError(), reset, reply());
    const started = performance.now();
    const result = await retryTransient(endpoint, rec, backoff)(next)(call());
    // Full jitter waits at least half the base before each retry.
    expect(performance.now() - started).toBeGreaterThanOrEqual(18);
    expect(result.attempts).toBe(3);
    expect(rec.errors).toEqual([
      'guidance/m/retry:AIR_LLM_SERVER_ERROR',
      'guidance/m/retry:AIR_LLM_CONNECTION',
    ]);
  });

  it('gives up after maxAttempts with the last error', async () => {
    const rec = recorder();
    const last = serverError(502);
    const next = scripted(serverError(), serverError(), last);
    expect(await rejection(retryTransient(endpoint, rec, backoff)(next)(call()))).toBe(last);
    expect(next.calls).toHaveLength(3);
    expect(rec.errors).toHaveLength(2);
  });

  it('throws a deterministic failure at once', async () => {
    const rec = recorder();
    const error = new LlmError('AIR_LLM_AUTH', 'refused', { status: 401 });
    const next = scripted(error);
    expect(await rejection(retryTransient(endpoint, rec, backoff)(next)(call()))).toBe(error);
    expect(next.calls).toHaveLength(1);
    expect(rec.errors).toEqual([]);
  });

  it('waits as long as Retry-After asks', async () => {
    const next = scripted(serverError(503, 0.08), reply());
    const started = performance.now();
    await retryTransient(endpoint, undefined, backoff)(next)(call());
    expect(performance.now() - started).toBeGreaterThanOrEqual(75);
  });

  it('stops waiting when the call is cancelled', async () => {
    const controller = new AbortController();
    const next = scripted(serverError(503, 60));
    const pending = retryTransient(endpoint, undefined, backoff)(next)(call({ signal: controller.signal }));
    setTimeout(() => controller.abort(new Error('cancelled')), 10);
    expect(((await rejection(pending)) as Error).message).toBe('cancelled');
  });
});

describe('admit', () => {
  let clock = 0;
  /** One replica (the endpoint's baseUrl); nothing is sent to it: `next` is scripted. */
  function replicaSet(): ReplicaSet & { admission: Admission } {
    const set = new ReplicaSet(
      resolveEndpoint('guidance', { ...endpoint, circuitBreakerSeconds: 1 }),
      replicasOf(endpoint),
      { now: () => clock },
    );
    return Object.assign(set, { admission: set.lanes[0]!.admission });
  }

  it('holds a permit for the attempt and gives it back on success', async () => {
    const l = replicaSet();
    let active = -1;
    const next = scripted(async () => {
      active = l.admission.active;
      return reply();
    });
    await admit(l)(next)(call());
    expect(active).toBe(1);
    expect(next.calls[0]!.lane).toBe(l.lanes[0]);
    expect(l.admission.active).toBe(0);
    expect(l.admission.limit).toBe(8);
    await l.close();
  });

  it('releases a 429 or a 503 as overloaded (the limit is cut), a 500 as a plain failure', async () => {
    for (const [error, cut] of [
      [new LlmError('AIR_LLM_RATE_LIMITED', 'slow down', { status: 429 }), true],
      [serverError(503), true],
      [serverError(500), false],
    ] as const) {
      const l = replicaSet();
      expect(await rejection(admit(l)(scripted(error))(call()))).toBe(error);
      expect(l.admission.active).toBe(0);
      expect(l.admission.counters.cuts).toBe(cut ? 1 : 0);
      await l.close();
    }
  });

  it('turns an unknown failure into a transient connection error', async () => {
    const l = replicaSet();
    const bug = new Error('socket hang up');
    const error = (await rejection(admit(l)(scripted(bug))(call()))) as LlmError;
    expect(error).toBeInstanceOf(LlmError);
    expect(error.code).toBe('AIR_LLM_CONNECTION');
    expect(error.transient).toBe(true);
    expect(error.cause).toBe(bug);
    await l.close();
  });

  it('feeds transient failures to the circuit, which then refuses before asking for a permit', async () => {
    clock = 0;
    const l = replicaSet();
    await rejection(admit(l)(scripted(new LlmError('AIR_LLM_BAD_REQUEST', 'bad', { status: 400 })))(call()));
    clock = 5000;
    await admit(l)(scripted(reply()))(call());
    await rejection(admit(l)(scripted(serverError()))(call()));
    clock = 10_000;
    const next = scripted(reply());
    const error = (await rejection(admit(l)(next)(call()))) as LlmError;
    expect(error.code).toBe('AIR_LLM_CIRCUIT_OPEN');
    expect(next.calls).toHaveLength(0);
    expect(l.admission.active).toBe(0);
    await l.close();
  });
});

describe('repair', () => {
  const schema = {
    name: 'answer',
    schema: {
      type: 'object',
      properties: { n: { type: 'integer' } },
      required: ['n'],
      additionalProperties: false,
    },
  };

  it('passes a call without a schema through untouched', async () => {
    const next = scripted(reply({ text: 'not json' }));
    expect((await repair(endpoint, 2)(next)(call())).text).toBe('not json');
  });

  it('returns the parsed JSON of a valid reply', async () => {
    const next = scripted(reply({ text: '{"n": 3}' }));
    const result = await repair(endpoint, 2)(next)(call({ schema }));
    expect(result.json).toEqual({ n: 3 });
    expect(next.calls).toHaveLength(1);
  });

  it('sends an invalid reply back with what was wrong', async () => {
    const next = scripted(reply({ text: '{"n": "three"}' }), reply({ text: '{"n": 3}' }));
    const result = await repair(endpoint, 2)(next)(call({ schema }));
    expect(result.json).toEqual({ n: 3 });
    const messages = next.calls[1]!.request.messages;
    expect(messages).toHaveLength(3);
    expect(messages[1]).toEqual({ role: 'assistant', content: '{"n": "three"}' });
    expect(messages[2]!.role).toBe('user');
    expect(messages[2]!.content).toMatch(/^That reply .+\. Answer again with only the JSON object/);
  });

  it('gives up after maxRepairs with AIR_LLM_INVALID_OUTPUT and the raw reply', async () => {
    const next = scripted(reply({ text: 'no json here' }));
    const error = (await rejection(repair(endpoint, 2)(next)(call({ schema })))) as LlmError;
    expect(error.code).toBe('AIR_LLM_INVALID_OUTPUT');
    expect(error.message).toContain('(after 2 repairs)');
    expect(error.raw).toBe('no json here');
    expect(next.calls).toHaveLength(3);
  });
});

describe('wire', () => {
  it('is one attempt over the transport, with the signal passed on', async () => {
    const controller = new AbortController();
    let signal: AbortSignal | undefined;
    const l: Lane = {
      endpoint,
      transport: {
        complete: async (_request, s) => {
          signal = s;
          return {
            text: 'hi',
            finishReason: 'stop',
            usage: { promptTokens: 1, completionTokens: 1 },
            model: 'm',
          };
        },
        close: async () => {},
      },
      admission: new Admission({ maxConcurrency: 1, initialConcurrency: 1 }),
    };
    const result = await wire({ ...call({ signal: controller.signal }), lane: l });
    expect(signal).toBe(controller.signal);
    expect(result).toMatchObject({ text: 'hi', role: 'guidance', cached: false, attempts: 1 });
    l.admission.close();
  });
});

describe('the stack below the cache', () => {
  it('records a cut reply and its longer retry as two answered requests, the second with both attempts', async () => {
    const rec = recorder();
    const complete = compose(
      [
        recordFailures(endpoint, rec),
        adjust(endpoint),
        recordAnswers(endpoint, rec),
        retryTransient(endpoint, rec, { baseMs: 1, maxMs: 1 }),
      ],
      scripted(reply({ finishReason: 'length' }), serverError(), reply()),
    );
    const result = await complete(call());
    expect(result.attempts).toBe(3);
    expect(rec.records.map((r) => r.attempts)).toEqual([1, 3]);
    expect(rec.errors).toEqual(['guidance/m/retry:AIR_LLM_SERVER_ERROR']);
  });
});
