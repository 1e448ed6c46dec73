import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { registerSimCommand } from '../cli/sim-command.js';
import { chatTokens, parsePrefixMetrics, PrefixCache, type Simulator } from '../llm/simulator/index.js';
import { useSimulators } from './helpers/simulators.js';

const sim = useSimulators();

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  prompt_tokens_details?: { cached_tokens: number };
}

type Messages = { role: 'system' | 'user'; content: string }[];

async function chat(simulator: Simulator, messages: Messages): Promise<Usage> {
  const response = await fetch(`${simulator.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'air-sim', messages, max_tokens: 20 }),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { usage: Usage }).usage;
}

const DOCUMENT = Array.from(
  { length: 60 },
  (_, i) => `Sentence ${i} of the document says that bread number ${i * 7} rises slowly overnight.`,
).join(' ');
const SYSTEM = 'You compare two answers. Reply with JSON only.';
const round = (tail: string): Messages => [
  { role: 'system', content: SYSTEM },
  { role: 'user', content: `Reference:\n${DOCUMENT}\n\nRound: ${tail}` },
];

/** Tokens two prompts share from their start. */
function sharedTokens(a: Messages, b: Messages): number {
  const x = chatTokens(a);
  const y = chatTokens(b);
  let n = 0;
  while (n < x.length && n < y.length && x[n] === y[n]) n += 1;
  return n;
}

describe('simulator prefix cache', () => {
  it('does not prefill the full blocks a later prompt shares, and says so in usage and /metrics', async () => {
    const simulator = await sim({ kvCacheTokens: 400_000 });
    const first = await chat(simulator, round('the constraint is to use a numbered list'));
    expect(first.prompt_tokens_details).toEqual({ cached_tokens: 0 });
    const second = round('a table with two columns, no more than 200 words');
    const usage = await chat(simulator, second);
    const shared = sharedTokens(round('the constraint is to use a numbered list'), second);
    expect(shared).toBeGreaterThan(500);
    // Whole blocks of 16 only: the block the prompts diverge in is computed again.
    expect(usage.prompt_tokens_details!.cached_tokens).toBe(Math.floor(shared / 16) * 16);

    const metrics = parsePrefixMetrics(await (await fetch(`${simulator.url.slice(0, -3)}/metrics`)).text());
    const queries = first.prompt_tokens + usage.prompt_tokens;
    expect(metrics).toEqual({
      queries,
      hits: usage.prompt_tokens_details!.cached_tokens,
      prefillTokens: queries - usage.prompt_tokens_details!.cached_tokens,
      decodeTokens: first.completion_tokens + usage.completion_tokens,
    });
    expect(simulator.stats().prefixCache).toMatchObject({ queries, evictions: 0 });
  });

  it('always computes the last prompt token: a repeated prompt hits all but its last block', async () => {
    const simulator = await sim({ kvCacheTokens: 400_000 });
    const prompt = round('same');
    const first = await chat(simulator, prompt);
    const again = await chat(simulator, prompt);
    expect(again.prompt_tokens_details!.cached_tokens).toBe(Math.floor((first.prompt_tokens - 1) / 16) * 16);
  });

  it('evicts least recently used blocks when the cache is full', async () => {
    // Room for one prompt of ~1,000 tokens and its reply; the other prompt needs more than all of it.
    const simulator = await sim({ kvCacheTokens: 1_600 });
    const a = round('first');
    const reversed = DOCUMENT.split('').reverse().join('');
    const b: Messages = [{ role: 'user', content: `Another text entirely. ${reversed} ${reversed}` }];
    expect(chatTokens(b).length).toBeGreaterThan(1_600);
    await chat(simulator, a);
    await chat(simulator, b);
    const again = await chat(simulator, a);
    expect(again.prompt_tokens_details!.cached_tokens).toBe(0);
    expect(simulator.stats().prefixCache.evictions).toBeGreaterThan(0);
  });

  it('is off by default: every prompt token is prefilled and usage has no cached tokens', async () => {
    const simulator = await sim({});
    await chat(simulator, round('x'));
    const usage = await chat(simulator, round('x'));
    expect(usage.prompt_tokens_details).toBeUndefined();
    expect(simulator.stats().prefixCache).toMatchObject({ hits: 0, prefillTokens: 2 * usage.prompt_tokens });
  });
});

describe('simulator reply lengths that follow the prompt', () => {
  it('adds replyTokensPerPromptToken per prompt token to the mean length of a text reply', async () => {
    const simulator = await sim({
      replyLength: 'fixed',
      meanReplyTokens: 10,
      replyTokensPerPromptToken: 0.5,
    });
    for (const messages of [round('short'), [{ role: 'user' as const, content: 'Hello there.' }]]) {
      const response = await fetch(`${simulator.url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'air-sim', messages }),
      });
      const { usage } = (await response.json()) as { usage: Usage };
      expect(usage.completion_tokens).toBe(Math.round(10 + 0.5 * usage.prompt_tokens));
    }
  });
});

describe('air sim --kv-cache-tokens', () => {
  it('serves with a prefix cache and prints the GPU work when stopped', async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    const air = new Command('air').exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
    registerSimCommand(air, { stdout: (text) => lines.push(text), signal: stop.signal });
    const done = air.parseAsync(['sim', '--port', '0', '--zero-latency', '--kv-cache-tokens', '100000'], {
      from: 'user',
    });
    for (let i = 0; i < 200 && lines.length === 0; i += 1) await new Promise((r) => setTimeout(r, 25));
    const url = /(http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(lines[0]!)![1]!;
    const simulator = { url } as Simulator;
    await chat(simulator, round('one'));
    const second = await chat(simulator, round('two'));
    expect(second.prompt_tokens_details!.cached_tokens).toBeGreaterThan(500);
    stop.abort();
    await done;
    const cached = second.prompt_tokens_details!.cached_tokens;
    expect(lines.join('')).toMatch(
      new RegExp(`GPU work: .* prompt tokens prefilled \\(${cached.toLocaleString('en-US')} of`),
    );
  });
});

describe('PrefixCache', () => {
  const tokens = (label: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${label}${i}`);

  it('never evicts the blocks of a request in service', () => {
    const cache = new PrefixCache({ kvCacheTokens: 64 });
    const held = cache.admit(tokens('a', 48), 0);
    const other = cache.admit(tokens('b', 48), 0); // over capacity: nothing of `a` may go while it is held
    expect(cache.stats().evictions).toBe(0);
    const again = cache.admit(tokens('a', 48), 0);
    expect(again.cachedTokens).toBe(32); // the last token is recomputed: 2 of 3 blocks
    held.release();
    other.release();
    again.release();
    expect(cache.stats().usedBlocks).toBe(4); // back within 64 tokens: the oldest freed blocks went
  });

  it('evicts a finished prompt from its tail first, so a shared prefix stays longest', () => {
    const cache = new PrefixCache({ kvCacheTokens: 64 });
    cache.admit([...tokens('p', 32), ...tokens('x', 32)], 0).release(); // 4 blocks: p p x x
    cache.admit(tokens('q', 32), 0).release(); // needs 2: the x blocks go, not the p prefix
    const reuse = cache.admit([...tokens('p', 32), ...tokens('y', 17)], 0);
    expect(reuse.cachedTokens).toBe(32);
  });
});
