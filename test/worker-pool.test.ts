import { afterAll, describe, expect, it } from 'vitest';
import { emit, type BatchOperator } from '../pipeline/operator.js';
import { packTexts, transferablesOf, unpackTexts } from '../pipeline/pool/packed-texts.js';
import { WorkerPool } from '../pipeline/pool/worker-pool.js';
import { pipeline } from '../pipeline/run.js';
import hashTexts from './fixtures/hash-worker.js';
import { CollectingSink, CountingSource } from './helpers/memory.js';

const workerFile = new URL('./fixtures/hash-worker.ts', import.meta.url);

describe('packed texts', () => {
  it('round-trips any Unicode text through one byte buffer and offsets', () => {
    const texts = ['', 'plain', 'naïve café', '日本語のテキスト', 'emoji 🧪🚀', 'x'.repeat(10_000)];
    expect(unpackTexts(packTexts(texts))).toEqual(texts);
  });
});

describe('WorkerPool', () => {
  const pool = new WorkerPool({ filename: workerFile, threads: 2, maxQueue: 4 });
  afterAll(() => pool.close());

  it('moves typed arrays to the worker instead of copying them', async () => {
    const packed = packTexts(['alpha', 'beta', 'gamma']);
    const expected = hashTexts({ texts: packTexts(['alpha', 'beta', 'gamma']), rounds: 1 }).hashes;
    const result = await pool.run<{ hashes: Uint32Array; bytesSeen: number }>(
      { texts: packed, rounds: 1 },
      { transferList: transferablesOf(packed) },
    );
    expect(packed.bytes.byteLength).toBe(0); // detached: the buffer now belongs to the worker
    expect(result.bytesSeen).toBe('alphabetagamma'.length);
    expect([...result.hashes]).toEqual([...expected]);
  });

  it('under a flood of submissions never lets its queue exceed maxQueue, and answers every task', async () => {
    const submissions = Array.from({ length: 400 }, (_, i) => {
      const packed = packTexts([`task ${i} `.repeat(200)]);
      return pool.run<{ hashes: Uint32Array }>(
        { texts: packed, rounds: 5 },
        { transferList: transferablesOf(packed) },
      );
    });
    // All 400 submitted at once: most wait in the pool's own FIFO, not in piscina's queue.
    expect(pool.blocked).toBeGreaterThan(300);
    const results = await Promise.all(submissions);
    expect(results).toHaveLength(400);
    expect(pool.maxQueueSeen).toBeLessThanOrEqual(4);
    expect(pool.pending).toBe(0);
    const again = hashTexts({ texts: packTexts([`task 123 `.repeat(200)]), rounds: 5 }).hashes[0];
    expect(results[123]!.hashes[0]).toBe(again);
  });

  it('serves a batch operator inside a pipeline, results in input order', async () => {
    const op: BatchOperator<number, { n: number; hash: number }> = {
      name: 'hash',
      batchSize: 32,
      concurrency: 4,
      async processBatch(inputs) {
        const packed = packTexts(inputs.map((n) => `document number ${n}`));
        const { hashes } = await pool.run<{ hashes: Uint32Array }>(
          { texts: packed, rounds: 1 },
          { transferList: transferablesOf(packed) },
        );
        return inputs.map((n, i) => emit({ n, hash: hashes[i]! }));
      },
    };
    const sink = new CollectingSink<{ n: number; hash: number }>(100);
    const report = await pipeline(new CountingSource(2000)).pipe(op).into(sink).run();
    expect(report.status).toBe('completed');
    expect(sink.committed).toHaveLength(2000);
    for (const { n, hash } of sink.committed.slice(0, 50)) {
      expect(hash).toBe(hashTexts({ texts: packTexts([`document number ${n}`]), rounds: 1 }).hashes[0]);
    }
  });
});
