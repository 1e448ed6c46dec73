import { describe, expect, it } from 'vitest';
import {
  Accounting,
  PriceTableSchema,
  type AccountingSnapshot,
  type CallRecord,
  type PriceTable,
} from '../llm/accounting.js';
import { LogHistogram } from '../llm/histogram.js';

/** mulberry32: a small seeded generator, so every run sees the same "random" data. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Log-normal latencies around ~800 ms with a long tail, like LLM calls. */
function latencies(n: number, seed: number): number[] {
  const random = seeded(seed);
  return Array.from({ length: n }, () => {
    const gaussian = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    return Math.exp(6.7 + 0.9 * gaussian);
  });
}

const QUANTILES = [0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1];

function exactQuantile(sorted: readonly number[], q: number): number {
  return sorted[Math.floor(q * (sorted.length - 1))]!;
}

describe('LogHistogram', () => {
  it.each([
    ['log-normal latencies', latencies(50_000, 1)],
    [
      'values over 7 decades',
      Array.from(
        { length: 20_000 },
        (
          (r) => () =>
            10 ** (r() * 7 - 1)
        )(seeded(2)),
      ),
    ],
    ['a few samples', latencies(7, 3)],
  ])('gives quantiles within 2%% of the exact ones on %s', (_name, values) => {
    const histogram = new LogHistogram();
    for (const v of values) histogram.record(v);
    const sorted = [...values].sort((a, b) => a - b);
    for (const q of QUANTILES) {
      const exact = exactQuantile(sorted, q);
      const error = Math.abs(histogram.quantile(q)! - exact) / exact;
      expect(error, `q=${q}`).toBeLessThanOrEqual(0.02);
      expect(error, `q=${q} (design bound: the relative accuracy)`).toBeLessThanOrEqual(0.01 + 1e-9);
    }
    const summary = histogram.summary();
    expect(summary.count).toBe(values.length);
    expect(summary.min).toBe(sorted[0]);
    expect(summary.max).toBe(sorted.at(-1));
    expect(summary.mean).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 6);
  });

  it('keeps zeros in their own bucket', () => {
    const histogram = new LogHistogram();
    for (const v of [0, 0, 0, 5, 10]) histogram.record(v);
    expect(histogram.quantile(0.5)).toBe(0);
    expect(histogram.quantile(1)).toBe(10);
    expect(histogram.quantile(0.75)).toBeCloseTo(5, 1);
  });

  it('merges two halves into exactly the histogram of the whole', () => {
    // Whole-millisecond values keep the sum exact, so the snapshots must be identical field by field.
    const values = latencies(10_000, 4).map(Math.round);
    const whole = new LogHistogram();
    const odd = new LogHistogram();
    const even = new LogHistogram();
    values.forEach((v, i) => {
      whole.record(v);
      (i % 2 === 0 ? even : odd).record(v);
    });
    const merged = LogHistogram.merge(
      JSON.parse(JSON.stringify(even.snapshot())),
      JSON.parse(JSON.stringify(odd.snapshot())),
    );
    expect(merged).toEqual(whole.snapshot());
    expect(LogHistogram.merge(odd.snapshot(), even.snapshot())).toEqual(merged);
    expect(LogHistogram.fromSnapshot(merged).summary()).toEqual(whole.summary());
  });

  it('merges with an empty histogram as a no-op', () => {
    const h = new LogHistogram();
    for (const v of latencies(100, 5)) h.record(v);
    expect(LogHistogram.merge(h.snapshot(), new LogHistogram().snapshot())).toEqual(h.snapshot());
  });

  it('reports an empty histogram as nulls, not zeros', () => {
    expect(new LogHistogram().summary()).toEqual({
      count: 0,
      mean: null,
      min: null,
      max: null,
      p50: null,
      p95: null,
      p99: null,
    });
  });

  it('refuses values and merges it cannot represent', () => {
    const h = new LogHistogram();
    expect(() => h.record(-1)).toThrow(RangeError);
    expect(() => h.record(Number.NaN)).toThrow(RangeError);
    expect(() => h.record(Infinity)).toThrow(RangeError);
    expect(() => h.quantile(1.5)).toThrow(RangeError);
    expect(() => LogHistogram.merge(h.snapshot(), new LogHistogram(0.02).snapshot())).toThrow(
      /relative accuracy/,
    );
  });
});

const PRICES: PriceTable = {
  'gpt-4o': { inputPerMTok: 2.5, outputPerMTok: 10 },
  'mistral-large': { inputPerMTok: 2, outputPerMTok: 6, currency: 'EUR' },
};

describe('Accounting', () => {
  it('prices billed tokens per million, in the model’s currency', () => {
    const accounting = new Accounting(PRICES);
    accounting.record(call('guidance', 'gpt-4o', { promptTokens: 1_000, completionTokens: 500 }));
    accounting.record(call('guidance', 'gpt-4o', { promptTokens: 2_000, completionTokens: 1_500 }));
    accounting.record(call('student', 'mistral-large', { promptTokens: 1_000_000, completionTokens: 0 }));
    const { entries, totals } = accounting.snapshot();
    expect(entries[0]).toMatchObject({
      role: 'guidance',
      model: 'gpt-4o',
      calls: 2,
      promptTokens: 3_000,
      completionTokens: 2_000,
      currency: 'USD',
      unpriced: false,
      price: { inputPerMTok: 2.5, outputPerMTok: 10, currency: 'USD' },
    });
    expect(entries[0]!.cost).toBeCloseTo((3_000 * 2.5 + 2_000 * 10) / 1e6, 12); // 0.0275
    expect(entries[1]).toMatchObject({ model: 'mistral-large', cost: 2, currency: 'EUR', unpriced: false });
    expect(totals.cost).toEqual({ EUR: 2, USD: entries[0]!.cost });
    expect(totals.unpricedModels).toEqual([]);
  });

  it('reports a model without a price as unpriced with a null cost, never as 0', () => {
    const accounting = new Accounting(PRICES);
    accounting.record(call('student', 'llama-3.1-8b', { promptTokens: 5_000, completionTokens: 800 }));
    const { entries, totals } = accounting.snapshot();
    expect(entries[0]).toMatchObject({ cost: null, currency: null, price: null, unpriced: true });
    expect(totals.cost).toEqual({});
    expect(totals.unpricedModels).toEqual(['llama-3.1-8b']);
    // A priced model next to it is still summed; the list says the total is incomplete.
    accounting.record(call('guidance', 'gpt-4o', { promptTokens: 1_000_000, completionTokens: 0 }));
    expect(accounting.snapshot().totals).toMatchObject({
      cost: { USD: 2.5 },
      unpricedModels: ['llama-3.1-8b'],
    });
  });

  it('counts cache hits as calls and hits, with no latency sample, no billed tokens and no cost', () => {
    const accounting = new Accounting(PRICES);
    accounting.record(
      call('guidance', 'gpt-4o', { promptTokens: 100, completionTokens: 50, latencyMs: 900 }),
    );
    accounting.record(
      call('guidance', 'gpt-4o', {
        promptTokens: 100,
        completionTokens: 50,
        latencyMs: 0,
        cached: true,
        attempts: 0,
      }),
    );
    const [entry] = accounting.snapshot().entries;
    expect(entry).toMatchObject({
      calls: 2,
      cacheHits: 1,
      promptTokens: 100,
      completionTokens: 50,
      cachedPromptTokens: 100,
      cachedCompletionTokens: 50,
      retries: 0,
    });
    expect(entry!.latency.count).toBe(1);
    expect(entry!.latency.min).toBe(900);
    expect(entry!.cost).toBeCloseTo((100 * 2.5 + 50 * 10) / 1e6, 12);
  });

  it('counts retries from attempts and failed calls by error code', () => {
    const accounting = new Accounting();
    accounting.record(call('guidance', 'm', { attempts: 3 }));
    accounting.recordError('guidance', 'm', 'AIR_LLM_TIMEOUT', 4);
    accounting.recordError('guidance', 'm', 'AIR_LLM_BAD_REQUEST');
    accounting.recordError('guidance', 'm', 'AIR_LLM_TIMEOUT', 4);
    const { entries, totals } = accounting.snapshot();
    expect(entries[0]).toMatchObject({ calls: 1, retries: 2 + 3 + 3 });
    expect(entries[0]!.errors).toEqual({ AIR_LLM_BAD_REQUEST: 1, AIR_LLM_TIMEOUT: 2 });
    expect(Object.keys(entries[0]!.errors)).toEqual(['AIR_LLM_BAD_REQUEST', 'AIR_LLM_TIMEOUT']);
    expect(totals.errors).toEqual({ AIR_LLM_BAD_REQUEST: 1, AIR_LLM_TIMEOUT: 2 });
  });

  it('gives latency percentiles per role and model', () => {
    const accounting = new Accounting();
    const values = latencies(5_000, 6);
    for (const latencyMs of values) accounting.record(call('guidance', 'm', { latencyMs }));
    const sorted = [...values].sort((a, b) => a - b);
    const { latency } = accounting.snapshot().entries[0]!;
    for (const [q, p] of [
      [0.5, latency.p50],
      [0.95, latency.p95],
      [0.99, latency.p99],
    ] as const) {
      expect(Math.abs(p! - exactQuantile(sorted, q)) / exactQuantile(sorted, q)).toBeLessThanOrEqual(0.02);
    }
    expect(latency.max).toBe(sorted.at(-1));
  });

  it('merges the snapshots of two half-runs into the snapshot of the whole run', () => {
    const random = seeded(7);
    const roles = ['guidance', 'student'];
    const models = ['gpt-4o', 'mistral-large', 'llama-3.1-8b'];
    const codes = ['AIR_LLM_TIMEOUT', 'AIR_LLM_RATE_LIMITED', 'AIR_LLM_INVALID_OUTPUT'];
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const whole = new Accounting(PRICES);
    const halves = [new Accounting(PRICES), new Accounting(PRICES)] as const;
    for (let i = 0; i < 4_000; i += 1) {
      const half = halves[random() < 0.5 ? 0 : 1];
      const [role, model] = [pick(roles), pick(models)];
      if (random() < 0.1) {
        const code = pick(codes);
        const attempts = 1 + Math.floor(random() * 4);
        for (const a of [whole, half]) a.recordError(role, model, code, attempts);
        continue;
      }
      const cached = random() < 0.2;
      const record = call(role, model, {
        promptTokens: Math.floor(random() * 4_000),
        completionTokens: Math.floor(random() * 1_000),
        latencyMs: cached ? 0 : Math.round(50 + random() * 20_000), // whole ms: sums stay exact
        cached,
        attempts: cached ? 0 : 1 + Math.floor(random() * 3),
      });
      for (const a of [whole, half]) a.record(record);
    }
    // Through JSON, as snapshots come back from stats.json files.
    const [a, b] = halves.map((h) => JSON.parse(JSON.stringify(h.snapshot())) as AccountingSnapshot) as [
      AccountingSnapshot,
      AccountingSnapshot,
    ];
    const expected = whole.snapshot();
    expect(expected.entries).toHaveLength(6);
    expect(Accounting.merge(a, b)).toEqual(expected);
    expect(Accounting.merge(b, a)).toEqual(expected);
    expect(expected.totals.unpricedModels).toEqual(['llama-3.1-8b']);
  });

  it('merges runs priced differently: the sum of the costs, or unpriced when a part has no price', () => {
    const usage = { promptTokens: 1_000_000, completionTokens: 1_000_000 };
    const cheap = new Accounting({ 'gpt-4o': { inputPerMTok: 1, outputPerMTok: 2 } });
    const dear = new Accounting({ 'gpt-4o': { inputPerMTok: 3, outputPerMTok: 4 } });
    const none = new Accounting();
    for (const a of [cheap, dear, none]) a.record(call('guidance', 'gpt-4o', usage));

    const mixed = Accounting.merge(cheap.snapshot(), dear.snapshot());
    expect(mixed.entries[0]).toMatchObject({ cost: 3 + 7, currency: 'USD', price: null, unpriced: false });
    expect(Accounting.merge(mixed, cheap.snapshot()).entries[0]).toMatchObject({ cost: 13, unpriced: false });

    const partial = Accounting.merge(cheap.snapshot(), none.snapshot());
    expect(partial.entries[0]).toMatchObject({ cost: null, unpriced: true });
    expect(partial.totals).toMatchObject({ cost: {}, unpricedModels: ['gpt-4o'] });
  });

  it('produces a plain JSON snapshot', () => {
    const accounting = new Accounting(PRICES);
    accounting.record(call('guidance', 'gpt-4o', {}));
    accounting.recordError('student', 'llama-3.1-8b', 'AIR_LLM_CONNECTION');
    const snapshot = accounting.snapshot();
    expect(JSON.parse(JSON.stringify(snapshot))).toEqual(snapshot);
    expect(snapshot.entries[1]!.latency).toMatchObject({ count: 0, p50: null });
  });

  it('refuses negative counts', () => {
    const accounting = new Accounting();
    expect(() => accounting.record(call('r', 'm', { promptTokens: -1 }))).toThrow(RangeError);
    expect(() => accounting.record(call('r', 'm', { latencyMs: -5 }))).toThrow(RangeError);
    expect(() => accounting.recordError('r', 'm', 'AIR_LLM_TIMEOUT', -1)).toThrow(RangeError);
  });
});

describe('PriceTableSchema', () => {
  it('accepts prices per million tokens with an optional currency', () => {
    expect(PriceTableSchema.parse(PRICES)).toEqual(PRICES);
  });

  it.each([
    [{ m: { inputPerMTok: -1, outputPerMTok: 1 } }],
    [{ m: { inputPerMTok: 1 } }],
    [{ m: { inputPerMTok: 1, outputPerMTok: 1, currency: 'dollars' } }],
    [{ m: { inputPerMTok: 1, outputPerMTok: 1, inputPerKTok: 1 } }],
    [{ '': { inputPerMTok: 1, outputPerMTok: 1 } }],
  ])('rejects %j', (table) => {
    expect(PriceTableSchema.safeParse(table).success).toBe(false);
  });
});

function call(role: string, model: string, overrides: Partial<CallRecord>): CallRecord {
  return {
    role,
    model,
    promptTokens: 10,
    completionTokens: 5,
    latencyMs: 100,
    cached: false,
    attempts: 1,
    ...overrides,
  };
}
