import { describe, expect, it } from 'vitest';
import { mapConcurrent } from '../pipeline/concurrent.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('mapConcurrent', () => {
  it('keeps the items order, never runs more than the limit at once, and uses the whole limit', async () => {
    let running = 0;
    let most = 0;
    const out = await mapConcurrent([...Array(50).keys()], 4, async (item, index) => {
      running++;
      most = Math.max(most, running);
      for (let i = 0; i < (item * 7) % 5; i++) await tick();
      running--;
      return `${item}:${index}`;
    });
    expect(out).toEqual([...Array(50).keys()].map((i) => `${i}:${i}`));
    expect(most).toBe(4);
    expect(await mapConcurrent([], 4, async () => 1)).toEqual([]);
    expect(await mapConcurrent([1, 2], 0, async (x) => x * 2)).toEqual([2, 4]);
  });

  it('starts nothing new after a failure and rejects once the calls in flight have settled', async () => {
    const started: number[] = [];
    let settled = 0;
    const error = await mapConcurrent([...Array(20).keys()], 3, async (item) => {
      started.push(item);
      await tick();
      if (item === 4) throw new Error('item 4 failed');
      await tick();
      settled++;
      return item;
    }).catch((e: unknown) => e);
    expect((error as Error).message).toBe('item 4 failed');
    expect(started.length).toBeLessThan(8);
    expect(settled).toBe(started.length - 1);
  });
});
