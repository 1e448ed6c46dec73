import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpLlmClient } from '../llm/client.js';
import { endpointSchema, resolveEndpoint } from '../llm/endpoint.js';
import { LlmError } from '../llm/errors.js';
import { startSimulator } from '../llm/simulator/index.js';
import type { ChatCompletionRequest, LlmClient } from '../llm/types.js';
import {
  CONSTRAINT_LIST_SCHEMA,
  CONSTRAINT_LIST_TYPES,
  LlmConstraintCounter,
} from '../operators/llm-constraint-counter.js';
import { runAir } from './helpers/cli.js';
import { tempDir } from './helpers/duckdb.js';

// The optional LLM constraint counter against real servers on 127.0.0.1: the simulator (schema-constrained
// replies of seeded noise) and a scripted OpenAI-compatible server whose lists we choose, so counts are exact.

let dir: string;
let cleanup: () => Promise<void>;
const open: Array<{ close(): Promise<void> }> = [];
beforeAll(async () => ({ dir, cleanup } = await tempDir('air-llm-counter-')));
afterAll(async () => {
  for (const o of open.reverse()) await o.close();
  await cleanup();
});

interface Seen {
  readonly request: ChatCompletionRequest;
  readonly headers: IncomingHttpHeaders;
}

/**
 * Answers with one constraint per "[c]" in the instruction; an instruction containing "BROKEN" always gets
 * prose, and one containing "FLAKY" gets prose once and then a valid list (a repair).
 */
async function scriptedServer(): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    // air reads GET /metrics once for scheduler gauges; this server has none.
    if (req.method === 'GET') return void res.writeHead(404).end();
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const request = JSON.parse(body) as ChatCompletionRequest;
      seen.push({ request, headers: req.headers });
      const instruction = request.messages[1]!.content;
      const repairing = request.messages.length > 2;
      const n = instruction.split('[c]').length - 1;
      const list = { constraints: Array.from({ length: n }, (_, i) => ({ type: 'other', text: `c${i}` })) };
      const content =
        instruction.includes('BROKEN') || (instruction.includes('FLAKY') && !repairing)
          ? 'I count two constraints.'
          : JSON.stringify(list);
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          model: request.model,
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 10, completion_tokens: 5 },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  open.push({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, seen };
}

function client(url: string, model: string): HttpLlmClient {
  const c = new HttpLlmClient({
    endpoints: [resolveEndpoint('counter', endpointSchema.parse({ baseUrl: url, model }))],
  });
  open.push(c);
  return c;
}

const options = { role: 'counter', model: 'm', concurrency: 4, seed: 7, maxTokens: 512 };

describe('LlmConstraintCounter', () => {
  it('counts the constraints the model lists, in order, asking with the JSON schema', async () => {
    const { url, seen } = await scriptedServer();
    const counter = new LlmConstraintCounter(client(url, 'scripted'), { ...options, model: 'scripted' });
    expect(counter.label).toBe('LLM: scripted');
    const instructions = ['Explain tides.', 'Write a poem [c] [c].', 'Summarise [c] [c] [c] [c].', '[c]'];
    expect(await counter.count(instructions)).toEqual([0, 2, 4, 1]);
    expect(seen).toHaveLength(4);
    for (const { request } of seen) {
      expect(request.response_format).toEqual({
        type: 'json_schema',
        json_schema: { ...CONSTRAINT_LIST_SCHEMA, strict: true },
      });
      expect(request.temperature).toBe(0);
      expect(request.max_tokens).toBe(512);
      expect(request.messages[0]!.role).toBe('system');
      expect(request.messages[0]!.content).toMatch(/separate constraint/);
      for (const type of CONSTRAINT_LIST_TYPES) expect(request.messages[0]!.content).toContain(type);
    }
    const poem = seen.find((s) => s.request.messages[1]!.content.includes('Write a poem'))!;
    expect(poem.request.messages[1]!.content).toBe('Instruction:\n<<<\nWrite a poem [c] [c].\n>>>');
    // Seeds come from the seed and the instruction: the same instruction asks the same (cacheable) request.
    const seeds = new Set(seen.map((s) => s.request.seed));
    expect(seeds.size).toBe(4);
  });

  it('repairs an invalid reply, and fails one that stays invalid with an error naming the instruction', async () => {
    const { url, seen } = await scriptedServer();
    const counter = new LlmConstraintCounter(client(url, 'scripted'), options);
    expect(await counter.count(['FLAKY [c] [c] [c]'])).toEqual([3]);
    expect(seen).toHaveLength(2);
    expect(seen[1]!.request.messages.length).toBeGreaterThan(2);
    const error = await counter.count(['[c]', 'fine', 'BROKEN [c]']).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(LlmError);
    expect((error as LlmError).code).toBe('AIR_LLM_INVALID_OUTPUT');
    expect((error as LlmError).message).toMatch(/^constraint count of instruction 2: /);
  });

  it('refuses a reply without a list even from a client that does not validate', async () => {
    const loose: LlmClient = {
      chat: () =>
        Promise.resolve({
          text: '{}',
          json: {},
          finishReason: 'stop',
          usage: { promptTokens: 1, completionTokens: 1 },
          model: 'loose',
          role: 'counter',
          latencyMs: 0,
          cached: false,
          attempts: 1,
        }),
    };
    await expect(new LlmConstraintCounter(loose, options).count(['a', 'b'])).rejects.toThrow(
      /instruction 0: the reply has no "constraints" list/,
    );
  });

  it('against the simulator: the counts are the lengths of the schema-valid lists it returns', async () => {
    const sim = await startSimulator({ models: ['sim-counter'], zeroLatency: true });
    open.push(sim);
    const http = client(sim.url, 'sim-counter');
    const lengths = new Map<string, number>();
    const recording: LlmClient = {
      async chat(role, messages, chatOptions) {
        const result = await http.chat(role, messages, chatOptions);
        lengths.set(messages[1]!.content, (result.json as { constraints: unknown[] }).constraints.length);
        return result;
      },
    };
    const instructions = Array.from({ length: 12 }, (_, i) => `Write ${i + 1} haiku about the sea.`);
    const counts = await new LlmConstraintCounter(recording, { ...options, model: 'sim-counter' }).count(
      instructions,
    );
    expect(counts).toEqual(instructions.map((i) => lengths.get(`Instruction:\n<<<\n${i}\n>>>`)));
    expect(sim.stats().internalErrors).toBe(0);
    expect(sim.stats().completions).toBe(12);
  });
});

describe('air score with an LLM counter (built CLI)', () => {
  const rows = ['Explain tides.', 'Write a poem [c] [c].', 'Summarise [c] [c] [c] [c].'];

  async function dataset(): Promise<string> {
    const file = path.join(dir, 'small.jsonl');
    await writeFile(file, rows.map((instruction) => JSON.stringify({ instruction })).join('\n'));
    return file;
  }

  it('reports the LLM count beside the model-free figures, in text and JSON', async () => {
    const { url, seen } = await scriptedServer();
    const file = await dataset();
    const json = path.join(dir, 'llm.json');
    process.env.AIR_TEST_COUNTER_KEY = 'sk-test-counter';
    const result = await runAir([
      'score',
      file,
      '--counter-url',
      url,
      '--counter-model',
      'scripted',
      '--api-key-env',
      'AIR_TEST_COUNTER_KEY',
      '--concurrency',
      '2',
      '--json',
      json,
    ]);
    delete process.env.AIR_TEST_COUNTER_KEY;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/constraints stated per instruction/);
    expect(result.stdout).toMatch(/constraints per instruction \(LLM: scripted\)\s+2\.0\s+2\s+4/);
    const summary = JSON.parse(await readFile(json, 'utf8')) as Record<string, unknown>;
    expect(summary.constraintsByLlm).toEqual({
      counter: 'LLM: scripted',
      mean: 2,
      p50: 2,
      p90: 4,
      p99: 4,
      max: 4,
    });
    expect(summary.constraintsStated).toBeDefined();
    expect(seen).toHaveLength(3);
    expect(seen.every((s) => s.headers.authorization === 'Bearer sk-test-counter')).toBe(true);
  });

  it('runs with --llm sim, and without the flags prints no LLM figure', async () => {
    const file = await dataset();
    const sim = await runAir(['score', file, '--llm', 'sim']);
    expect(sim.code, sim.stderr).toBe(0);
    expect(sim.stdout).toMatch(/constraints per instruction \(LLM: air-sim-counter\)/);
    const json = path.join(dir, 'plain.json');
    const plain = await runAir(['score', file, '--json', json]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).not.toMatch(/LLM/);
    expect(JSON.parse(await readFile(json, 'utf8'))).not.toHaveProperty('constraintsByLlm');
  });

  it('answers a rerun from the --cache file without calling the model', async () => {
    const { url, seen } = await scriptedServer();
    const file = await dataset();
    const cache = path.join(dir, 'counter-cache.sqlite');
    const args = ['score', file, '--counter-url', url, '--counter-model', 'scripted', '--cache', cache];
    const first = await runAir(args);
    expect(first.code, first.stderr).toBe(0);
    expect(seen).toHaveLength(3);
    const second = await runAir(args);
    expect(second.code, second.stderr).toBe(0);
    expect(seen).toHaveLength(3);
    expect(second.stdout).toMatch(/constraints per instruction \(LLM: scripted\)\s+2\.0\s+2\s+4/);
  });

  it('refuses half a configuration', async () => {
    const result = await runAir(['score', await dataset(), '--counter-url', 'http://127.0.0.1:9/v1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/needs both --counter-url and --counter-model/);
  });
});
