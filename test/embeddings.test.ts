import { afterEach, describe, expect, it } from 'vitest';
import { Accounting } from '../llm/accounting.js';
import {
  cutText,
  EmbeddingsClient,
  embeddingsEndpointSchema,
  parseEmbeddings,
  resolveEmbeddingsEndpoint,
  type EmbeddingsEndpointConfig,
} from '../llm/embeddings.js';
import { LlmError } from '../llm/errors.js';
import { embedding, resolveReplies } from '../llm/simulator/replies.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../llm/simulator/index.js';
import { diversitySelect } from '../operators/sample/diversity-select.js';
import { farthestPoint, matrixOf } from '../operators/sample/farthest-point.js';
import type { Ledger } from '../pipeline/ledger.js';
import { pipeline } from '../pipeline/run.js';
import type { Envelope, Source } from '../pipeline/source.js';
import { ConfigError } from '../pipeline/errors.js';
import { CollectingSink } from './helpers/memory.js';

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

async function sim(options: SimulatorOptions = {}): Promise<Simulator> {
  const simulator = await startSimulator({ zeroLatency: true, seed: 1, ...options });
  open.push(simulator);
  return simulator;
}

function client(
  simulator: Simulator,
  config: Partial<EmbeddingsEndpointConfig> = {},
  options: ConstructorParameters<typeof EmbeddingsClient>[1] = {},
): EmbeddingsClient {
  const parsed = embeddingsEndpointSchema.parse({ baseUrl: simulator.url, model: 'air-sim', ...config });
  const made = new EmbeddingsClient(resolveEmbeddingsEndpoint(parsed), {
    backoff: { baseMs: 20, maxMs: 100 },
    ...options,
  });
  open.push(made);
  return made;
}

/** The simulator's vector for `input`, as float32. */
function expected(input: string, dimensions = 384): Float32Array {
  return Float32Array.from(embedding(resolveReplies({ seed: 1 }), 'air-sim', input, dimensions));
}

const texts = Array.from({ length: 150 }, (_, i) => `document number ${i} about topic ${i % 7}`);

describe('embeddings client against the simulator', () => {
  it('batches inputs, keeps their order and returns the endpoint vectors', async () => {
    const simulator = await sim();
    const accounting = new Accounting();
    const embedder = client(simulator, { batchSize: 64 }, { recorder: accounting });
    expect(embedder.dimensions).toBeUndefined();
    const vectors = await embedder.embed(texts);
    expect(vectors).toHaveLength(150);
    vectors.forEach((v, i) => expect(v).toEqual(expected(texts[i]!)));
    expect(embedder.dimensions).toBe(384);
    expect(simulator.stats()).toMatchObject({ requests: 3, embeddingInputs: 150 });
    expect(embedder.stats()).toMatchObject({ requests: 3, inputs: 150, retries: 0 });
    expect(embedder.stats().promptTokens).toBe(simulator.stats().embeddingTokens);
    const [cell] = accounting.snapshot().entries;
    expect(cell).toMatchObject({ role: 'embeddings', model: 'air-sim', calls: 3 });
  });

  it('asks for shorter vectors with `dimensions` and decodes base64 answers', async () => {
    const simulator = await sim();
    const embedder = client(simulator, { dimensions: 32, encodingFormat: 'base64', batchSize: 10 });
    const vectors = await embedder.embed(texts.slice(0, 25));
    vectors.forEach((v, i) => expect(v).toEqual(expected(texts[i]!, 32)));
    expect(simulator.stats().requests).toBe(3);
  });

  it('retries a 503 until the endpoint is back', async () => {
    const simulator = await sim();
    const embedder = client(simulator, { maxAttempts: 50 });
    simulator.setDown(true);
    const pending = embedder.embed(texts.slice(0, 3));
    while ((simulator.stats().byStatus['503'] ?? 0) === 0) await new Promise((r) => setTimeout(r, 1));
    simulator.setDown(false);
    const vectors = await pending;
    expect(vectors[2]).toEqual(expected(texts[2]!));
    expect(embedder.stats().retries).toBeGreaterThanOrEqual(1);
  });

  it('fails at once, with stable codes, when retrying cannot help', async () => {
    const simulator = await sim({ apiKey: 'secret', contextTokens: 50 });
    const noKey = client(simulator);
    await expect(noKey.embed(['x'])).rejects.toMatchObject({ code: 'AIR_LLM_AUTH' });
    expect(noKey.stats().requests).toBe(1);

    process.env.AIR_TEST_EMBED_KEY = 'secret';
    try {
      const long = 'word '.repeat(400);
      const tooLong = client(simulator, { apiKeyEnv: 'AIR_TEST_EMBED_KEY', maxInputChars: 100_000 });
      await expect(tooLong.embed([long])).rejects.toMatchObject({ code: 'AIR_LLM_CONTEXT_LENGTH' });
      // Cut to maxInputChars, the same text is accepted.
      const cut = client(simulator, { apiKeyEnv: 'AIR_TEST_EMBED_KEY', maxInputChars: 100 });
      expect((await cut.embed([long]))[0]).toEqual(expected(long.slice(0, 100)));
      const unknown = client(simulator, { apiKeyEnv: 'AIR_TEST_EMBED_KEY', model: 'no-such-model' });
      await expect(unknown.embed(['x'])).rejects.toMatchObject({ code: 'AIR_LLM_BAD_REQUEST' });
    } finally {
      delete process.env.AIR_TEST_EMBED_KEY;
    }
    expect(() =>
      resolveEmbeddingsEndpoint(
        embeddingsEndpointSchema.parse({ model: 'm', apiKeyEnv: 'AIR_UNSET_VAR' }),
        {},
      ),
    ).toThrow(ConfigError);
  });

  it('fails with a connection error after its attempts when nothing listens', async () => {
    const simulator = await sim();
    const url = simulator.url;
    await simulator.close();
    const embedder = new EmbeddingsClient(
      resolveEmbeddingsEndpoint(
        embeddingsEndpointSchema.parse({ baseUrl: url, model: 'air-sim', maxAttempts: 2 }),
      ),
      { backoff: { baseMs: 1, maxMs: 1 } },
    );
    open.push(embedder);
    await expect(embedder.embed(['x'])).rejects.toMatchObject({ code: 'AIR_LLM_CONNECTION' });
    expect(embedder.stats()).toMatchObject({ requests: 2, retries: 1 });
  });
});

describe('embeddings answers', () => {
  it('are checked for count, indices and lengths, and reordered by index', () => {
    const body = (data: unknown) => JSON.stringify({ data, usage: { prompt_tokens: 4 } });
    const parsed = parseEmbeddings(
      'e',
      body([
        { index: 1, embedding: [3, 4] },
        { index: 0, embedding: [1, 2] },
      ]),
      2,
    );
    expect(parsed.vectors).toEqual([Float32Array.from([1, 2]), Float32Array.from([3, 4])]);
    expect(parsed.promptTokens).toBe(4);
    for (const bad of [
      'not json',
      body([{ index: 0, embedding: [1] }]),
      body([
        { index: 0, embedding: [1, 2] },
        { index: 0, embedding: [1, 2] },
      ]),
      body([
        { index: 0, embedding: [1, 2] },
        { index: 1, embedding: [1] },
      ]),
      body([
        { index: 0, embedding: [1, 2] },
        { index: 1, embedding: ['a', 2] },
      ]),
    ]) {
      expect(() => parseEmbeddings('e', bad, 2)).toThrow(LlmError);
    }
  });

  it('cut long texts without splitting a surrogate pair', () => {
    expect(cutText('abcdef', 4)).toBe('abcd');
    expect(cutText('abc🧪def', 4)).toBe('abc');
    expect(cutText('ab', 4)).toBe('ab');
  });
});

describe('diversity_select with endpoint vectors', () => {
  it('selects by the endpoint vectors through the engine, importing no HTTP code itself', async () => {
    const simulator = await sim();
    const docs = Array.from({ length: 300 }, (_, i) => ({ id: `d${i}`, text: `text ${i % 120} ${i}` }));
    const source: Source<{ id: string; text: string }> = {
      name: 'read',
      expectedRows: async () => docs.length,
      async *read(ledger: Ledger): AsyncIterable<Envelope<{ id: string; text: string }>> {
        for (const [row, value] of docs.entries()) yield { ticket: ledger.read('mem', row), value };
      },
    };
    const embedder = client(simulator, { batchSize: 32, maxConcurrency: 3 });
    const sink = new CollectingSink<{ id: string; text: string }>(50);
    const report = await pipeline(source)
      .pipe(diversitySelect<{ id: string; text: string }>({ keep: 40, seed: 2, threads: 2, embedder }))
      .into(sink)
      .run();
    expect(report.status).toBe('completed');
    // Normalised as the stage stores them (the answer's float32 values are unit length only to ~1e-7).
    const matrix = new Float32Array(docs.length * 384);
    docs.forEach((d, i) => {
      const v = expected(d.text);
      let norm = 0;
      for (let j = 0; j < v.length; j++) norm += v[j]! * v[j]!;
      const scale = 1 / Math.sqrt(norm);
      for (let j = 0; j < v.length; j++) matrix[i * 384 + j] = v[j]! * scale;
    });
    const { selected } = farthestPoint(matrixOf(matrix, 384), { k: 40, seed: 2 });
    expect(sink.committed.map((d) => d.id)).toEqual(
      [...selected].sort((a, b) => a - b).map((i) => docs[i]!.id),
    );
    expect(simulator.stats().embeddingInputs).toBe(300);
  });
});
