import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  cacheKey,
  canonicalJson,
  MemoryResponseCache,
  openResponseCache,
  SqliteResponseCache,
  type CacheEntry,
  type CacheKeyInput,
  type ResponseCache,
} from '../llm/cache.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'air-cache-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const base: CacheKeyInput = {
  model: 'qwen2.5-72b-instruct',
  messages: [
    { role: 'system', content: 'You write instructions.' },
    { role: 'user', content: 'Write one about tides.' },
  ],
  sampling: { temperature: 0.7, top_p: 0.9, max_tokens: 512, seed: 7 },
  schema: { name: 'instruction', schema: { type: 'object', properties: { text: { type: 'string' } } } },
  attempt: 0,
};

/**
 * SHA-256 of the canonical JSON, computed independently of cacheKey:
 * {"attempt":0,"messages":[{"content":"You write instructions.","role":"system"},{"content":"Write one about
 * tides.","role":"user"}],"model":"qwen2.5-72b-instruct","sampling":{"max_tokens":512,"seed":7,"temperature":0.7,
 * "top_p":0.9},"schema":{"name":"instruction","schema":{"properties":{"text":{"type":"string"}},"type":"object"}},"v":1}
 * If this changes, every existing cache stops matching: bump KEY_VERSION on purpose, never by accident.
 */
const PINNED_KEY = '20890a27d850310c0eb07075df292210dc6d7411fea0767f29540ff98680e614';

function answer(text: string, finishReason: CacheEntry['finishReason'] = 'stop'): CacheEntry {
  return {
    text,
    finishReason,
    usage: { promptTokens: 40, completionTokens: 12 },
    model: 'qwen2.5-72b',
    latencyMs: 812.5,
    createdAtMs: 1_700_000_000_000,
  };
}

describe('cache key', () => {
  it('is a pinned SHA-256 of the canonical request, stable across runs and machines', () => {
    expect(cacheKey(base)).toMatch(/^[0-9a-f]{64}$/);
    expect(cacheKey(base)).toBe(PINNED_KEY);
  });

  it('changes with every field that shapes the answer', () => {
    const variants: CacheKeyInput[] = [
      base,
      { ...base, model: 'qwen2.5-7b-instruct' },
      { ...base, messages: [base.messages[0]!, { role: 'user', content: 'Write one about tides!' }] },
      { ...base, messages: [base.messages[0]!, { role: 'assistant', content: 'Write one about tides.' }] },
      { ...base, messages: [...base.messages].reverse() },
      { ...base, messages: [...base.messages, { role: 'user', content: '' }] },
      { ...base, sampling: { ...base.sampling, temperature: 0.8 } },
      { ...base, sampling: { ...base.sampling, top_p: 1 } },
      { ...base, sampling: { ...base.sampling, max_tokens: 513 } },
      { ...base, sampling: { ...base.sampling, seed: 8 } },
      { ...base, sampling: { ...base.sampling, seed: undefined } }, // unset = the endpoint's default, not 7
      { ...base, schema: null },
      { ...base, schema: { name: 'other', schema: base.schema!.schema } },
      { ...base, schema: { name: 'instruction', schema: { type: 'object' } } },
      { ...base, attempt: 1 },
    ];
    expect(new Set(variants.map(cacheKey)).size).toBe(variants.length);
  });

  it('does not depend on the order of object keys, at any depth', () => {
    const reordered: CacheKeyInput = {
      attempt: 0,
      schema: { schema: { properties: { text: { type: 'string' } }, type: 'object' }, name: 'instruction' },
      sampling: { seed: 7, max_tokens: 512, top_p: 0.9, temperature: 0.7 },
      messages: base.messages.map((m) => ({ content: m.content, role: m.role })),
      model: 'qwen2.5-72b-instruct',
    };
    expect(cacheKey(reordered)).toBe(cacheKey(base));
  });

  it('treats a missing attempt as 0 and a missing schema as null', () => {
    const { attempt: _a, schema: _s, ...rest } = base;
    expect(cacheKey(rest)).toBe(cacheKey({ ...base, attempt: 0, schema: null }));
  });

  it('ignores properties that are not part of the request (an API key next to the fields)', () => {
    const polluted = {
      ...base,
      apiKey: 'sk-secret',
      baseUrl: 'https://secret.example/v1',
      sampling: { ...base.sampling, headers: { authorization: 'Bearer sk-secret' } },
    };
    expect(cacheKey(polluted)).toBe(cacheKey(base));
  });

  it('rejects an attempt that is not an integer >= 0', () => {
    expect(() => cacheKey({ ...base, attempt: -1 })).toThrow(RangeError);
    expect(() => cacheKey({ ...base, attempt: 1.5 })).toThrow(RangeError);
  });
});

describe('canonicalJson', () => {
  it('sorts keys, keeps array order and drops undefined properties', () => {
    expect(canonicalJson({ b: [3, 1, { d: 1, c: null }], a: 'x', u: undefined })).toBe(
      '{"a":"x","b":[3,1,{"c":null,"d":1}]}',
    );
  });

  it('refuses values JSON cannot represent faithfully', () => {
    expect(() => canonicalJson({ x: Number.NaN })).toThrow(TypeError);
    expect(() => canonicalJson({ x: new Date(0) })).toThrow(TypeError);
    expect(() => canonicalJson({ x: 1n })).toThrow(TypeError);
  });
});

const stores: Array<[string, () => ResponseCache]> = [
  ['MemoryResponseCache', () => new MemoryResponseCache()],
  ['SqliteResponseCache', () => SqliteResponseCache.open(path.join(tempDir(), 'llm-cache.sqlite'))],
];

describe.each(stores)('%s', (_name, make) => {
  it('counts hits, misses and writes, and returns what was stored', () => {
    const cache = make();
    const key = cache.key(base);
    expect(cache.get(key)).toBeUndefined();
    expect(cache.put(key, answer('Tides rise twice a day.'))).toBe(true);
    expect(cache.get(key)).toEqual({
      text: 'Tides rise twice a day.',
      finishReason: 'stop',
      usage: { promptTokens: 40, completionTokens: 12 },
      model: 'qwen2.5-72b',
      latencyMs: 812.5,
      createdAtMs: 1_700_000_000_000,
    });
    expect(cache.get(key)).toBeDefined();
    expect(cache.get(cache.key({ ...base, attempt: 1 }))).toBeUndefined();
    expect(cache.stats()).toEqual({ hits: 2, misses: 2, writes: 1, rejected: 0, entries: 1 });
    cache.close();
  });

  it('keeps the first answer of a key', () => {
    const cache = make();
    const key = cache.key(base);
    expect(cache.put(key, answer('first'))).toBe(true);
    expect(cache.put(key, answer('second'))).toBe(false);
    expect(cache.get(key)?.text).toBe('first');
    expect(cache.stats().writes).toBe(1);
    cache.close();
  });

  it('caches only complete answers; a truncated one only when the caller allows it', () => {
    const cache = make();
    const k = (attempt: number): string => cache.key({ ...base, attempt });
    expect(cache.put(k(1), answer('cut', 'length'))).toBe(false);
    expect(cache.put(k(2), answer('filtered', 'content_filter'), { allowTruncated: true })).toBe(false);
    expect(cache.put(k(3), answer('?', 'unknown'))).toBe(false);
    expect(cache.put(k(4), answer('cut', 'length'), { allowTruncated: true })).toBe(true);
    expect(cache.get(k(1))).toBeUndefined();
    expect(cache.get(k(4))?.finishReason).toBe('length');
    expect(cache.stats()).toMatchObject({ writes: 1, rejected: 3, entries: 1 });
    cache.close();
  });

  it('stamps createdAtMs with the time of the put when the caller does not give one', () => {
    const cache = make();
    const key = cache.key(base);
    const before = Date.now();
    const { createdAtMs: _c, ...entry } = answer('now');
    cache.put(key, entry);
    expect(cache.get(key)!.createdAtMs).toBeGreaterThanOrEqual(before);
    cache.close();
  });
});

describe('MemoryResponseCache', () => {
  it('evicts the least recently used entry beyond maxEntries', () => {
    const cache = new MemoryResponseCache({ maxEntries: 2 });
    const [a, b, c] = [0, 1, 2].map((attempt) => cache.key({ ...base, attempt })) as [string, string, string];
    cache.put(a, answer('a'));
    cache.put(b, answer('b'));
    cache.get(a); // a is now more recent than b
    cache.put(c, answer('c'));
    expect(cache.get(b)).toBeUndefined();
    expect(cache.get(a)?.text).toBe('a');
    expect(cache.get(c)?.text).toBe('c');
    expect(cache.stats().entries).toBe(2);
  });
});

describe('SqliteResponseCache', () => {
  it('finds its entries again after close and reopen, with fresh counters', () => {
    const file = path.join(tempDir(), 'nested', 'out', 'llm-cache.sqlite');
    const first = SqliteResponseCache.open(file);
    first.put(first.key(base), answer('kept'));
    first.close();
    first.close(); // idempotent

    const second = SqliteResponseCache.open(file);
    expect(second.get(second.key(base))?.text).toBe('kept');
    expect(second.stats()).toEqual({ hits: 1, misses: 0, writes: 0, rejected: 0, entries: 1 });
    second.close();
  });

  it('puts the file in WAL mode, with either durability setting', () => {
    const dir = tempDir();
    const normal = SqliteResponseCache.open(path.join(dir, 'a.sqlite'));
    normal.close();
    const full = SqliteResponseCache.open(path.join(dir, 'b.sqlite'), { synchronous: 'full' });
    full.close();
    // WAL is a property of the file: it persists after close (the header's read/write versions are 2).
    for (const name of ['a.sqlite', 'b.sqlite']) {
      const header = readFileSync(path.join(dir, name)).subarray(18, 20);
      expect([...header]).toEqual([2, 2]);
    }
  });

  it('never stores an API key, a base URL or anything else passed next to the request and the answer', () => {
    const SECRET = 'sk-PLANTED-7f3a9c1e-not-a-real-key';
    const VISIBLE = 'VISIBLE-ANSWER-MARKER';
    const file = path.join(tempDir(), 'llm-cache.sqlite');
    const cache = SqliteResponseCache.open(file);
    for (let attempt = 0; attempt < 20; attempt += 1) {
      const request = {
        ...base,
        attempt,
        apiKey: SECRET,
        baseUrl: `https://${SECRET}.example/v1`,
        sampling: { ...base.sampling, headers: { authorization: `Bearer ${SECRET}` } },
      };
      const reply = {
        ...answer(`${VISIBLE} ${attempt}`),
        request,
        apiKey: SECRET,
        raw: `{"key":"${SECRET}"}`,
      };
      expect(cache.put(cache.key(request), reply)).toBe(true);
    }
    const bytesOf = (): Buffer =>
      Buffer.concat([file, `${file}-wal`].filter((f) => existsSync(f)).map((f) => readFileSync(f)));
    // The positive control proves the grep can see stored text, in the WAL before close...
    expect(bytesOf().includes(VISIBLE)).toBe(true);
    expect(bytesOf().includes(SECRET)).toBe(false);
    cache.close();
    // ...and in the main file after the checkpoint on close.
    expect(existsSync(`${file}-wal`)).toBe(false);
    expect(readFileSync(file).includes(VISIBLE)).toBe(true);
    expect(readFileSync(file).includes(SECRET)).toBe(false);
  });

  it('shares one file between two instances: each sees the other’s commits without reopening', () => {
    const file = path.join(tempDir(), 'llm-cache.sqlite');
    const a = SqliteResponseCache.open(file);
    const b = SqliteResponseCache.open(file);
    const k1 = a.key(base);
    const k2 = a.key({ ...base, attempt: 1 });
    expect(a.put(k1, answer('from a'))).toBe(true);
    expect(b.get(k1)?.text).toBe('from a');
    expect(b.put(k2, answer('from b'))).toBe(true);
    expect(a.get(k2)?.text).toBe('from b');
    expect(b.put(k1, answer('late'))).toBe(false); // first answer wins across instances too

    const reader = SqliteResponseCache.open(file, { readonly: true });
    expect(reader.get(k1)?.text).toBe('from a');
    expect(() => reader.put(a.key({ ...base, attempt: 2 }), answer('x'))).toThrow(/read-only/);
    expect(a.stats().entries).toBe(2);
    expect(b.stats()).toMatchObject({ hits: 1, writes: 1, entries: 2 });
    for (const cache of [reader, a, b]) cache.close();
  });

  it('refuses a file that is not an air cache, naming it, with a stable code', () => {
    const dir = tempDir();
    const junk = path.join(dir, 'junk.sqlite');
    writeFileSync(junk, 'this is not a database, just some text that is long enough '.repeat(20));
    expect(() => SqliteResponseCache.open(junk)).toThrow(
      expect.objectContaining({ code: 'AIR_LLM_CACHE_INVALID', message: expect.stringContaining(junk) }),
    );
    expect(() => SqliteResponseCache.open(path.join(dir, 'missing.sqlite'), { readonly: true })).toThrow(
      expect.objectContaining({ code: 'AIR_LLM_CACHE_INVALID' }),
    );
  });

  it('is what openResponseCache gives for a file, and memory without one', () => {
    const file = path.join(tempDir(), 'llm-cache.sqlite');
    const onDisk = openResponseCache(file);
    expect(onDisk).toBeInstanceOf(SqliteResponseCache);
    onDisk.close();
    expect(openResponseCache(undefined)).toBeInstanceOf(MemoryResponseCache);
  });
});

describe('SqliteResponseCache durability', () => {
  /** A child that puts entries and prints "put <key>" after each put returns, then waits to be killed. */
  function startWriter(
    file: string,
    count: number,
  ): { lines: string[]; killed: Promise<NodeJS.Signals | null> } {
    const script = path.join(tempDir(), 'writer.mts');
    const moduleUrl = pathToFileURL(path.join(ROOT, 'llm/cache.ts')).href;
    writeFileSync(
      script,
      `import { SqliteResponseCache } from ${JSON.stringify(moduleUrl)};
const [file, count] = process.argv.slice(2);
const cache = SqliteResponseCache.open(file);
for (let i = 0; i < Number(count); i += 1) {
  const key = cache.key({ model: 'm', messages: [{ role: 'user', content: 'question ' + i }] });
  const text = 'answer ' + i;
  cache.put(key, { text, finishReason: 'stop', usage: { promptTokens: 3, completionTokens: 2 }, model: 'm', latencyMs: 1 });
  process.stdout.write('put ' + key + ' ' + text + '\\n');
}
setInterval(() => {}, 60_000); // never closes the cache: only the kill ends it
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script, file, String(count)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    let stderr = '';
    let buffer = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      buffer += d.toString();
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        lines.push(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        // Kill on the very first "put" line, while the writer may still be putting more.
        if (lines.length === 1) child.kill('SIGKILL');
      }
    });
    const killed = new Promise<NodeJS.Signals | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (signal === null)
          reject(new Error(`writer exited with ${code} instead of being killed: ${stderr}`));
        else resolve(signal);
      });
    });
    return { lines, killed };
  }

  function expectAllPresent(file: string, lines: readonly string[]): void {
    const cache = SqliteResponseCache.open(file);
    for (const line of lines) {
      const [, key, ...text] = line.split(' ');
      expect(cache.get(key!)?.text).toBe(text.join(' '));
    }
    expect(cache.stats().entries).toBeGreaterThanOrEqual(lines.length);
    cache.close();
  }

  it('keeps an entry whose put returned when the process is SIGKILLed right after', async () => {
    const file = path.join(tempDir(), 'llm-cache.sqlite');
    const { lines, killed } = startWriter(file, 1);
    expect(await killed).toBe('SIGKILL');
    expect(lines).toHaveLength(1);
    // The row lives only in the WAL (no close, no checkpoint): reopening must recover it from there.
    expect(statSync(`${file}-wal`).size).toBeGreaterThan(0);
    expectAllPresent(file, lines);
  });

  it('keeps every acknowledged entry when killed in the middle of a stream of puts', async () => {
    const file = path.join(tempDir(), 'llm-cache.sqlite');
    const { lines, killed } = startWriter(file, 1_000_000);
    expect(await killed).toBe('SIGKILL');
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expectAllPresent(file, lines);
  });
});
