import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Ledger } from '../pipeline/ledger.js';
import { emit, type BlockingOperator } from '../pipeline/operator.js';
import { pipeline } from '../pipeline/run.js';
import type { Envelope, Source } from '../pipeline/source.js';
import { SpillFile } from '../pipeline/spill.js';
import { tempDir } from './helpers/duckdb.js';
import { CollectingSink, CountingSource } from './helpers/memory.js';

interface Doc {
  id: number;
  text: string;
  big: bigint;
  at: Date;
}

class DocSource implements Source<Doc> {
  readonly name = 'read';
  constructor(private readonly count: number) {}
  async expectedRows(): Promise<number> {
    return this.count;
  }
  async *read(ledger: Ledger, signal: AbortSignal): AsyncIterable<Envelope<Doc>> {
    for (let i = 0; i < this.count && !signal.aborted; i++) {
      const value = {
        id: i,
        text: `document ${i} `.repeat(50),
        big: 2n ** 60n + BigInt(i),
        at: new Date(i * 1000),
      };
      yield { ticket: ledger.read('docs', i), value };
    }
  }
}

/** Keeps every third document, deciding from a one-number "vector" per document, never from its text. */
function everyThird(seen: number[]): BlockingOperator<Doc> {
  return {
    name: 'select',
    blocking: true,
    observe(doc, index) {
      expect(index).toBe(seen.length);
      seen.push(doc.id % 3);
    },
    async select(count) {
      const keep = new Uint8Array(count);
      for (let i = 0; i < count; i++) keep[i] = seen[i] === 0 ? 1 : 0;
      return { keep, dropReason: 'not_selected' };
    },
  };
}

describe('blocking stages', () => {
  it('hold records on disk until the input ends, then pass the selected ones on in arrival order', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const seen: number[] = [];
      const sink = new CollectingSink<Doc>(100);
      const run = pipeline(new DocSource(3000))
        .pipe(everyThird(seen))
        .pipe({ name: 'after', process: (d: Doc) => emit(d) })
        .into(sink, { spillDir: dir, queueCapacity: 16 });
      const report = await run.run();
      expect(report.status).toBe('completed');
      expect(sink.committed.map((d) => d.id)).toEqual(Array.from({ length: 1000 }, (_, i) => i * 3));
      const kept = sink.committed[10]!;
      expect(kept.big).toBe(2n ** 60n + 30n);
      expect(kept.at.getTime()).toBe(30_000);
      expect(report.totals).toMatchObject({
        read: 3000,
        written: 1000,
        dropped: { 'select:not_selected': 2000 },
      });
      const stage = report.stages.find((s) => s.name === 'select')!;
      expect(stage.counters.spilled_bytes).toBeGreaterThan(3000 * 500);
      expect(await readdir(dir)).toEqual([]); // the spill file is gone
    } finally {
      await cleanup();
    }
  });

  it('is fed by upstream stages without deadlock even when the input is far larger than the queues', async () => {
    const seen: number[] = [];
    const sink = new CollectingSink<number>(50);
    const keepEven: BlockingOperator<number> = {
      name: 'even',
      blocking: true,
      observe: (n) => void seen.push(n),
      select: async (count) => ({
        keep: Uint8Array.from({ length: count }, (_, i) => (seen[i]! % 2 === 0 ? 1 : 0)),
        dropReason: 'odd',
      }),
    };
    const report = await pipeline(new CountingSource(20_000))
      .pipe(keepEven)
      .into(sink, { queueCapacity: 4 })
      .run();
    expect(report.status).toBe('completed');
    expect(sink.committed).toHaveLength(10_000);
  });

  it('stopped while selecting: a select that rejects on the hard stop (a pool’s aborted task) leaves the run interrupted, not failed', async () => {
    const stop = new AbortController();
    const selecting: BlockingOperator<number> = {
      name: 'select',
      blocking: true,
      observe: () => {},
      // As a worker pool does: the task rejects with its own error the moment the signal aborts.
      select: (_count, ctx) =>
        new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => reject(new Error('The task has been aborted')));
          stop.abort();
        }),
    };
    // A sink that takes a while to close, as a Parquet writer does: the rejection lands before the run ends.
    class SlowClosingSink extends CollectingSink<number> {
      override async close(): Promise<void> {
        await new Promise((resolve) => setTimeout(resolve, 50));
        await super.close();
      }
    }
    const report = await pipeline(new CountingSource(500))
      .pipe(selecting)
      .into(new SlowClosingSink(50), { graceMs: 10, signal: stop.signal })
      .run();
    expect(report.error).toBeUndefined();
    expect(report.status).toBe('interrupted');
    expect(report.totals.abandoned).toBe(500);
  });

  it('a spill file round-trips structured values in order and is removed afterwards', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const spill = new SpillFile<unknown>(dir);
      const values = [{ a: 1n }, new Date(5), 'text', [1, 2, { b: new Uint8Array([1, 2]) }], null];
      for (const v of values) await spill.append(v);
      const back: unknown[] = [];
      for await (const v of spill.read()) back.push(v);
      expect(back).toEqual(values);
      await spill.remove();
      expect(await readdir(dir)).toEqual([]);
    } finally {
      await cleanup();
    }
  });
});
