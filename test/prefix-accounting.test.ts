import { afterEach, describe, expect, it } from 'vitest';
import { Accounting, sumSteps } from '../llm/accounting.js';
import { HttpLlmClient } from '../llm/client.js';
import { endpointSchema, resolveEndpoint } from '../llm/endpoint.js';
import { startSimulator, type Simulator } from '../llm/simulator/index.js';
import type { ChatMessage } from '../llm/types.js';
import { accountingSnapshotSchema } from '../schemas/stats.js';

const call = (step: string | undefined, promptTokens: number, serverCachedTokens?: number) => ({
  role: 'guidance',
  model: 'm',
  promptTokens,
  completionTokens: 10,
  latencyMs: 5,
  cached: false,
  attempts: 1,
  step,
  serverCachedTokens,
});

describe('accounting per step', () => {
  it('adds prompt tokens sent and server-cached per step, and tells reported from unknown', () => {
    const accounting = new Accounting();
    accounting.record(call('judge', 1_000, 0));
    accounting.record(call('judge', 1_000, 800));
    accounting.record(call('student', 200)); // a server that does not report cached tokens
    accounting.record(call(undefined, 50, 40)); // unnamed calls are not filed per step
    accounting.record({ ...call('judge', 999, 999), cached: true }); // a response-cache hit reached no server
    const { steps } = accounting.snapshot();
    expect(steps).toEqual({
      judge: {
        calls: 2,
        promptTokens: 2_000,
        completionTokens: 20,
        reportedCalls: 2,
        reportedPromptTokens: 2_000,
        serverCachedTokens: 800,
      },
      student: {
        calls: 1,
        promptTokens: 200,
        completionTokens: 10,
        reportedCalls: 0,
        reportedPromptTokens: 0,
        serverCachedTokens: 0,
      },
    });
    expect(sumSteps(steps!)).toMatchObject({ calls: 3, promptTokens: 2_200, serverCachedTokens: 800 });
    expect(accountingSnapshotSchema.safeParse(accounting.snapshot()).success).toBe(true);
  });

  it('merges steps by addition, and a snapshot written before steps were counted', () => {
    const a = new Accounting();
    a.record(call('judge', 100, 50));
    const b = new Accounting();
    b.record(call('judge', 300, 200));
    const merged = Accounting.merge(a.snapshot(), b.snapshot());
    expect(merged.steps!.judge).toMatchObject({ calls: 2, promptTokens: 400, serverCachedTokens: 250 });
    const { steps: _dropped, ...old } = a.snapshot();
    expect(accountingSnapshotSchema.safeParse(old).success).toBe(true);
    expect(Accounting.merge(old, b.snapshot()).steps!.judge).toMatchObject({ calls: 1, promptTokens: 300 });
  });
});

describe('cached tokens from a real server', () => {
  let sim: Simulator | undefined;
  afterEach(async () => {
    await sim?.close();
    sim = undefined;
  });

  it('reads usage.prompt_tokens_details.cached_tokens and files it under the step', async () => {
    sim = await startSimulator({
      zeroLatency: true,
      kvCacheTokens: 100_000,
      replyLength: 'fixed',
      meanReplyTokens: 10,
    });
    const accounting = new Accounting();
    const endpoint = resolveEndpoint(
      'guidance',
      endpointSchema.parse({ baseUrl: sim.url, model: 'air-sim' }),
    );
    const client = new HttpLlmClient({ endpoints: [endpoint], recorder: accounting });
    const reference = 'The reference answer explains fermentation in detail. '.repeat(40);
    const messages = (tail: string): ChatMessage[] => [
      { role: 'system', content: 'You judge answers.' },
      { role: 'user', content: `${reference}\n${tail}` },
    ];
    try {
      const first = await client.chat('guidance', messages('round one'), { step: 'judge', max_tokens: 20 });
      const second = await client.chat('guidance', messages('round two'), { step: 'judge', max_tokens: 20 });
      expect(first.usage.serverCachedTokens).toBe(0);
      expect(second.usage.serverCachedTokens).toBeGreaterThan(300);
      expect(accounting.snapshot().steps!.judge).toMatchObject({
        calls: 2,
        reportedCalls: 2,
        promptTokens: first.usage.promptTokens + second.usage.promptTokens,
        serverCachedTokens: second.usage.serverCachedTokens,
      });
    } finally {
      await client.close();
    }
  });
});
