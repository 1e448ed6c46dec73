import { describe, expect, it } from 'vitest';
import { BoundedQueue } from '../pipeline/queue.js';

describe('BoundedQueue', () => {
  it('makes a fast producer wait for a slow consumer: never more than capacity buffered', async () => {
    const q = new BoundedQueue<number>(8);
    let produced = 0;
    const producer = (async () => {
      for (let i = 0; i < 1000; i++) {
        await q.push(i);
        produced++;
      }
      q.close();
    })();
    const seen: number[] = [];
    for await (const item of q) {
      seen.push(item);
      expect(produced - seen.length).toBeLessThanOrEqual(8);
      if (item % 50 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await producer;
    expect(seen).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(q.highWater).toBeLessThanOrEqual(8);
    expect(q.highWater).toBeGreaterThan(1);
  });

  it('take() returns what is buffered, up to max, and null at the end', async () => {
    const q = new BoundedQueue<string>(10);
    await q.push('a');
    await q.push('b');
    await q.push('c');
    expect(await q.take(2)).toEqual(['a', 'b']);
    q.close();
    expect(await q.take(5)).toEqual(['c']);
    expect(await q.take(5)).toBeNull();
  });

  it('fail() rejects the consumer and any blocked producer with the same error', async () => {
    const q = new BoundedQueue<number>(1);
    await q.push(1);
    const blocked = q.push(2);
    const boom = new Error('boom');
    q.fail(boom);
    await expect(blocked).rejects.toBe(boom);
    await expect(q.take(1)).rejects.toBe(boom);
  });

  it('rejects a capacity that is not a positive integer', () => {
    expect(() => new BoundedQueue(0)).toThrow(RangeError);
    expect(() => new BoundedQueue(1.5)).toThrow(RangeError);
  });
});
