import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlmError } from '../llm/errors.js';
import { importNodeLlamaCpp, isLocalSpec, LocalModel, parseLocalSpec } from '../llm/local.js';
import type { ChatCompletionRequest, JsonSchema } from '../llm/types.js';
import { ConfigError } from '../pipeline/errors.js';

// Random weights: every reply is gibberish, which is fine, since these tests pin down the plumbing (templates,
// sampling, grammar, pooling, accounting), not the answers. Nothing here needs the network: the model is a
// local file and node-llama-cpp loads its bundled linux-x64 binary (LocalModel uses build: 'never').
const projectRoot = fileURLToPath(new URL('..', import.meta.url));
const MODEL_PATH = resolve(projectRoot, '../shared/models/tiny-random-llama.gguf');

function chat(content: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest {
  return {
    model: `local:${MODEL_PATH}`,
    messages: [
      { role: 'system', content: 'You write complex instructions.' },
      { role: 'user', content },
    ],
    ...extra,
  };
}

function jsonRequest(schema: JsonSchema, extra: Partial<ChatCompletionRequest>): ChatCompletionRequest {
  return chat('Answer with the JSON object.', {
    response_format: { type: 'json_schema', json_schema: { name: 'answer', schema, strict: true } },
    ...extra,
  });
}

describe('parseLocalSpec', () => {
  it('returns the path of a local:<file.gguf> spec, absolute or relative', () => {
    expect(parseLocalSpec('local:/x/y.gguf')).toEqual({ path: '/x/y.gguf' });
    expect(parseLocalSpec('local:models/Tiny.GGUF')).toEqual({ path: 'models/Tiny.GGUF' });
    expect(isLocalSpec('local:/x/y.gguf')).toBe(true);
    expect(isLocalSpec('gpt-4o-mini')).toBe(false);
  });

  it('rejects other specs with a ConfigError that says what is expected', () => {
    expect(() => parseLocalSpec('gpt-4o-mini')).toThrow(ConfigError);
    expect(() => parseLocalSpec('gpt-4o-mini')).toThrow(/expected local:<path to a \.gguf file>/);
    expect(() => parseLocalSpec('local:')).toThrow(/names no file/);
    expect(() => parseLocalSpec('local:/x/y.bin')).toThrow(/must be a \.gguf file/);
    expect(() => parseLocalSpec('LOCAL:/x/y.gguf')).toThrow(ConfigError);
  });
});

describe('loading', () => {
  it('names the missing file', async () => {
    const missing = resolve(projectRoot, 'no/such/model.gguf');
    const error = await LocalModel.load({ path: missing }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(`local model file not found: ${missing}`);
  });

  it('rejects a file that is not a GGUF model with the path in the message', async () => {
    const error = await LocalModel.load({ path: fileURLToPath(import.meta.url), gpu: false }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(
      `cannot load the local model ${fileURLToPath(import.meta.url)}`,
    );
  });

  it('rejects thread and pool sizes that are not positive integers', async () => {
    await expect(LocalModel.load({ path: MODEL_PATH, threads: 0 })).rejects.toThrow(
      /threads must be a positive/,
    );
    await expect(LocalModel.load({ path: MODEL_PATH, parallel: 1.5 })).rejects.toThrow(/parallel must be/);
  });

  it('without node-llama-cpp installed, says how to install it', async () => {
    const notInstalled = Object.assign(new Error("Cannot find package 'node-llama-cpp'"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    const error = await importNodeLlamaCpp(() => Promise.reject(notInstalled)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain('`npm install node-llama-cpp@3.21.1`');
    // Any other failure is not hidden behind the install hint.
    await expect(importNodeLlamaCpp(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  });
});

describe('LocalModel with a random-weight GGUF', () => {
  let model: LocalModel;

  beforeAll(async () => {
    model = await LocalModel.load({
      path: MODEL_PATH,
      threads: 1,
      parallel: 2,
      contextSize: 512,
      gpu: false,
    });
  });

  afterAll(async () => {
    await model?.close();
  });

  it('loads with the requested threads, pool and context', () => {
    expect(model.path).toBe(MODEL_PATH);
    expect(model.threads).toBe(1);
    expect(model.parallel).toBe(2);
    expect(model.contextSize).toBeGreaterThanOrEqual(512);
  });

  it('generates through the chat template and reports length when max_tokens is reached', async () => {
    const reply = await model.complete(chat('Write one instruction.', { max_tokens: 8, temperature: 0 }));
    expect(reply.text.length).toBeGreaterThan(0);
    expect(reply.finishReason).toBe('length');
    expect(reply.usage.completionTokens).toBe(8);
    // System and user text plus the template's markers: more than the 9 words of content.
    expect(reply.usage.promptTokens).toBeGreaterThan(9);
    expect(reply.model).toBe(`local:${MODEL_PATH}`);
  });

  it('is deterministic for a fixed seed, greedy or sampled', async () => {
    const greedy = chat('Same prompt.', { max_tokens: 24, temperature: 0, seed: 7 });
    expect((await model.complete(greedy)).text).toBe((await model.complete(greedy)).text);
    const sampled = chat('Same prompt.', { max_tokens: 24, temperature: 0.9, top_p: 0.9, seed: 7 });
    const first = await model.complete(sampled);
    expect((await model.complete(sampled)).text).toBe(first.text);
    const otherSeed = await model.complete({ ...sampled, seed: 8 });
    expect(otherSeed.text).not.toBe(first.text);
  });

  it('runs requests concurrently, queues beyond the pool, and keeps each request independent', async () => {
    const a = chat('alpha', { max_tokens: 32, temperature: 0 });
    const b = chat('beta gamma delta', { max_tokens: 32, temperature: 0 });
    const alone = await model.complete(a);
    // Three requests on two sequences: the third waits; none sees another's tokens, so both "a" replies
    // equal the one produced alone.
    const running = Promise.all([model.complete(a), model.complete(b), model.complete(a)]);
    await new Promise((r) => setImmediate(r));
    expect(model.queued).toBe(1);
    const [a1, b1, a2] = await running;
    expect(a1.text).toBe(alone.text);
    expect(a2.text).toBe(alone.text);
    expect(b1.text).not.toBe(alone.text);
    for (const reply of [a1, b1, a2]) expect(reply.usage.completionTokens).toBe(32);
  });

  it('constrains output to a JSON schema: every reply validates, even from random weights', async () => {
    // Every value is an enum, a boolean or a bounded array of enums, so the grammar alone decides validity
    // (free-text strings are covered by the next test).
    const schema = {
      type: 'object',
      properties: {
        level: { enum: ['easy', 'medium', 'hard'] },
        complex: { type: 'boolean' },
        constraints: {
          type: 'array',
          items: { enum: ['length', 'format', 'tone', 'keywords'] },
          minItems: 1,
          maxItems: 3,
        },
        meta: {
          type: 'object',
          properties: { language: { enum: ['en', 'de'] }, note: { type: 'null' } },
          required: ['language', 'note'],
          additionalProperties: false,
        },
      },
      required: ['level', 'complex', 'constraints', 'meta'],
      additionalProperties: false,
    };
    const validate = new Ajv({ strict: false }).compile(schema);
    for (let seed = 1; seed <= 5; seed++) {
      const reply = await model.complete(jsonRequest(schema, { max_tokens: 200, temperature: 1, seed }));
      expect(reply.finishReason).toBe('stop');
      const value: unknown = JSON.parse(reply.text);
      expect(validate(value), `${reply.text}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
  });

  it('with free-text strings, finished replies are JSON; length limits can miss, and only on broken UTF-8', async () => {
    // The grammar counts a malformed UTF-8 byte sequence as one character, but it decodes to several U+FFFD,
    // so maxLength can be exceeded. Random weights emit such byte tokens often (about 1 reply in 10 here);
    // real models rarely do. The reply is returned as is and the client's validation fails it visibly
    // (AIR_LLM_INVALID_OUTPUT), so this pins down exactly that honest behaviour.
    const schema = {
      type: 'object',
      properties: {
        title: { type: 'string', maxLength: 16 },
        constraints: { type: 'array', items: { type: 'string', maxLength: 12 }, minItems: 1, maxItems: 3 },
      },
      required: ['title', 'constraints'],
      additionalProperties: false,
    };
    const validate = new Ajv({ strict: false }).compile(schema);
    for (let seed = 1; seed <= 8; seed++) {
      const reply = await model.complete(jsonRequest(schema, { max_tokens: 200, temperature: 1, seed }));
      expect(reply.finishReason).toBe('stop');
      const value: unknown = JSON.parse(reply.text);
      if (!validate(value)) {
        expect(validate.errors?.every((e) => e.keyword === 'maxLength')).toBe(true);
        expect(reply.text).toContain('\uFFFD');
      }
    }
  });

  it('a JSON reply cut at max_tokens is reported as length, not passed off as finished', async () => {
    const schema = { type: 'object', properties: { title: { type: 'string' } }, required: ['title'] };
    const reply = await model.complete(jsonRequest(schema, { max_tokens: 6, temperature: 0 }));
    expect(reply.finishReason).toBe('length');
    expect(() => JSON.parse(reply.text) as unknown).toThrow();
  });

  it('rejects a prompt that does not fit the context with AIR_LLM_CONTEXT_LENGTH', async () => {
    const long = 'word '.repeat(2000);
    const error = await model.complete(chat(long, { max_tokens: 8 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LlmError);
    expect((error as LlmError).code).toBe('AIR_LLM_CONTEXT_LENGTH');
    const tight = await model.complete(chat('short', { max_tokens: 10_000 })).catch((e: unknown) => e);
    expect((tight as LlmError).code).toBe('AIR_LLM_CONTEXT_LENGTH');
  });

  it('a cancelled request fails with AIR_LLM_CANCELLED', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await model
      .complete(chat('x', { max_tokens: 8 }), controller.signal)
      .catch((e: unknown) => e);
    expect((error as LlmError).code).toBe('AIR_LLM_CANCELLED');
  });
});

describe('close', () => {
  it('lets running requests finish, then refuses new ones', async () => {
    const model = await LocalModel.load({ path: MODEL_PATH, threads: 1, gpu: false });
    const running = model.complete(chat('x', { max_tokens: 16, temperature: 0 }));
    const closed = model.close();
    expect((await running).usage.completionTokens).toBe(16);
    await closed;
    const error = await model.complete(chat('x', { max_tokens: 4 })).catch((e: unknown) => e);
    expect((error as LlmError).code).toBe('AIR_LLM_CANCELLED');
  });
});
