import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../job/config.js';
import { LLM_CACHE_FILE, setUpLlm } from '../job/llm.js';
import { LlmError } from '../llm/errors.js';
import { cachedFileName, DEFAULT_LOCAL_MODEL, resolveModelFile } from '../llm/model-files.js';
import { startSimulator } from '../llm/simulator/index.js';
import { ConfigError } from '../pipeline/errors.js';
import { runAir } from './helpers/cli.js';
import { SAMPLE, tempDir } from './helpers/duckdb.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir('air-llm-')));
afterAll(() => cleanup());

const SECRET = 'sk-air-planted-9f3c2a71d0';
const TINY_GGUF = path.resolve(import.meta.dirname, '../../shared/models/tiny-random-llama.gguf');

describe('the llm section of the run config', () => {
  it('sim mode serves both roles from an in-process simulator and caches answers beside the output', async () => {
    const config = parseRunConfig({ input: 'x', output: dir, llm: { mode: 'sim' } });
    const llm = await setUpLlm(config.llm, dir);
    try {
      const answer = await llm.client.chat('guidance', [{ role: 'user', content: 'Say something.' }]);
      const student = await llm.client.chat('student', [{ role: 'user', content: 'Say something.' }]);
      expect(answer.model).toBe('air-sim-guidance');
      expect(student.model).toBe('air-sim-student');
      expect(llm.accounting.snapshot().entries.map((e) => e.role)).toEqual(['guidance', 'student']);
    } finally {
      await llm.close();
    }
    expect(await readdir(dir)).toContain(LLM_CACHE_FILE);
  });

  it('names what is missing when one role has an endpoint and the other none', async () => {
    const config = parseRunConfig({
      input: 'x',
      output: dir,
      llm: { student: { baseUrl: 'http://127.0.0.1:9/v1', model: 's' } },
    });
    const error = await setUpLlm(config.llm, undefined).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(
      /llm\.guidance is not configured: pass --guidance-url and --guidance-model/,
    );
  });

  it('with no endpoint at all, runs the default small model inside air, resolved from the model cache', async () => {
    // The cache directory already holds the default model's file (here the tiny random GGUF under that name),
    // so resolution needs no network, exactly as on a user's second run.
    const models = path.join(dir, 'models');
    await mkdir(models, { recursive: true });
    await copyFile(TINY_GGUF, path.join(models, cachedFileName(DEFAULT_LOCAL_MODEL)));
    const config = parseRunConfig({ input: 'x', output: dir, llm: { modelsDir: models, cache: false } });
    const lines: string[] = [];
    const llm = await setUpLlm(config.llm, undefined, {}, (l) => lines.push(l));
    try {
      expect(lines.join('\n')).toContain(DEFAULT_LOCAL_MODEL);
      const result = await llm.client
        .chat('student', [{ role: 'user', content: 'Hello' }], { max_tokens: 8 })
        .catch((e: unknown) => e as LlmError);
      // Random weights never stop: a visible truncation, which proves the model loaded and generated.
      expect(result instanceof LlmError ? result.code : 'answered').toMatch(/AIR_LLM_TRUNCATED|answered/);
      expect(llm.accounting.snapshot().entries[0]!.completionTokens).toBeGreaterThan(0);
    } finally {
      await llm.close();
    }
  });

  it('never downloads when told not to, and says what it needs', async () => {
    const empty = path.join(dir, 'no-models');
    await mkdir(empty, { recursive: true });
    const error = await resolveModelFile(DEFAULT_LOCAL_MODEL.slice('local:'.length), {
      directory: empty,
      download: false,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/cannot resolve the model hf:Qwen.*needs internet/);
  });

  it('names the environment variable, never a value, when the API key is missing', async () => {
    const config = parseRunConfig({
      input: 'x',
      output: dir,
      llm: {
        guidance: { baseUrl: 'http://127.0.0.1:9/v1', model: 'g', apiKeyEnv: 'AIR_TEST_UNSET_KEY' },
        student: { baseUrl: 'http://127.0.0.1:9/v1', model: 's' },
      },
    });
    const error = await setUpLlm(config.llm, undefined, {}).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/AIR_TEST_UNSET_KEY is not set/);
  });

  it('rejects an API key written into the config: only the variable name is accepted', () => {
    expect(() =>
      parseRunConfig({
        input: 'x',
        output: dir,
        llm: { guidance: { baseUrl: 'http://127.0.0.1:9/v1', model: 'g', apiKey: SECRET } },
      }),
    ).toThrow(/unknown key "llm.guidance.apiKey"/);
  });

  it('keeps a planted API key out of every file the LLM layer writes and out of its errors', async () => {
    const sim = await startSimulator({ models: ['g', 's'], apiKey: SECRET, zeroLatency: true });
    const out = path.join(dir, 'secret-run');
    const config = parseRunConfig({
      input: 'x',
      output: out,
      llm: {
        guidance: { baseUrl: sim.url, model: 'g', apiKeyEnv: 'AIR_TEST_KEY' },
        student: { baseUrl: sim.url, model: 'nope', apiKeyEnv: 'AIR_TEST_KEY' },
      },
    });
    await mkdir(out, { recursive: true });
    const llm = await setUpLlm(config.llm, out, { AIR_TEST_KEY: SECRET });
    const seen: string[] = [];
    try {
      for (let i = 0; i < 5; i++) await llm.client.chat('guidance', [{ role: 'user', content: `q${i}` }]);
      const failed = await llm.client
        .chat('student', [{ role: 'user', content: 'q' }])
        .catch((e: unknown) => e as Error);
      seen.push(String(failed), JSON.stringify(failed), (failed as Error).stack ?? '');
      await writeFile(path.join(out, 'accounting.json'), JSON.stringify(llm.accounting.snapshot()));
    } finally {
      await llm.close();
      await sim.close();
    }
    for (const file of await readdir(out))
      seen.push((await readFile(path.join(out, file))).toString('latin1'));
    seen.push(JSON.stringify(config));
    expect(seen.join('\n')).not.toContain(SECRET);
    expect(seen.join('\n')).toContain('AIR_TEST_KEY'); // the name is kept, so a run can be resumed
  });
});

describe('air run LLM flags', () => {
  it('validate into the config: URL format and the variable name are checked before anything runs', async () => {
    const bad = await runAir([
      'run',
      '-i',
      SAMPLE,
      '-o',
      path.join(dir, 'x1'),
      '--guidance-url',
      'not-a-url',
      '--guidance-model',
      'm',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/"llm\.guidance\.baseUrl": Invalid URL/);
    const badVar = await runAir([
      'run',
      '-i',
      SAMPLE,
      '-o',
      path.join(dir, 'x2'),
      '--student-model',
      'm',
      '--api-key-env',
      'sk-123',
    ]);
    expect(badVar.code).toBe(2);
    expect(badVar.stderr).toMatch(/llm\.student\.apiKeyEnv.*environment variable name/);
  });
});
