import { describe, expect, it } from 'vitest';
import { drop, emit, fail, type BatchOperator, type RecordOperator } from '../pipeline/operator.js';
import type { DropNote, DropNoteSink } from '../pipeline/ledger.js';
import { pipeline } from '../pipeline/run.js';
import { CollectingSink, CountingSource, sleep } from './helpers/memory.js';

const passThrough: RecordOperator<number, number> = { name: 'pass', process: (n) => emit(n) };

describe('pipeline engine', () => {
  it('a slow sink bounds what the source has read ahead (backpressure through every stage)', async () => {
    const source = new CountingSource(600);
    const sink = new CollectingSink<number>(10, 1);
    const capacity = 4;
    const run = pipeline(source)
      .pipe(passThrough)
      .pipe({ name: 'pass2', process: (n: number) => emit(n) })
      .into(sink, {
        queueCapacity: capacity,
      });
    const done = run.run();
    let maxAhead = 0;
    while (source.produced < 600) {
      await sleep(5);
      maxAhead = Math.max(maxAhead, source.produced - sink.committed.length);
    }
    const report = await done;
    expect(report.status).toBe('completed');
    expect(sink.committed).toHaveLength(600);
    // 3 queues of 4, one record in each of 2 stages, the sink's uncommitted part (<10) and the iterator's hand.
    const bound = 3 * capacity + 2 + 10 + 2;
    expect(maxAhead).toBeLessThanOrEqual(bound);
    for (const hw of run.queueHighWater()) expect(hw).toBeLessThanOrEqual(capacity);
  });

  it('keeps the ledger per stage and per shard: fan-out, drops with reasons, failures with kinds', async () => {
    const op: RecordOperator<number, number> = {
      name: 'shape',
      process(n) {
        if (n % 5 === 0) return drop('multiple_of_5');
        if (n % 7 === 0) throw Object.assign(new Error(`cannot handle ${n}`), { code: 'E_SEVEN' });
        if (n % 3 === 0) return emit(n, n + 0.5, n + 0.75);
        return emit(n);
      },
    };
    const sink = new CollectingSink<number>(7);
    const logs: string[] = [];
    const report = await pipeline(new CountingSource(100))
      .pipe(op)
      .into(sink, { log: (l) => logs.push(l) })
      .run();
    expect(report.status).toBe('completed');
    const all = Array.from({ length: 100 }, (_, n) => n);
    const dropped = all.filter((n) => n % 5 === 0).length;
    const failed = all.filter((n) => n % 5 !== 0 && n % 7 === 0).length;
    const tripled = all.filter((n) => n % 5 && n % 7 && n % 3 === 0).length;
    const kept = 100 - dropped - failed;
    expect(report.totals).toMatchObject({
      read: 100,
      written: kept,
      rowsWritten: kept + 2 * tripled,
      dropped: { 'shape:multiple_of_5': dropped },
      failed: { 'shape:E_SEVEN': failed },
    });
    const stage = report.stages.find((s) => s.name === 'shape')!;
    expect(stage).toMatchObject({ in: 100, passed: kept, out: kept + 2 * tripled });
    expect(
      logs.some((l) => l.includes('row 7') && l.includes('E_SEVEN') && l.includes('cannot handle 7')),
    ).toBe(true);
    expect(sink.committed).toHaveLength(kept + 2 * tripled);
  });

  it('runs up to `concurrency` records of a stage at once, never more', async () => {
    let active = 0;
    let peak = 0;
    const op: RecordOperator<number, number> = {
      name: 'io',
      concurrency: 8,
      async process(n) {
        active++;
        peak = Math.max(peak, active);
        await sleep(2);
        active--;
        return emit(n);
      },
    };
    const report = await pipeline(new CountingSource(200)).pipe(op).into(new CollectingSink<number>()).run();
    expect(report.status).toBe('completed');
    expect(peak).toBe(8);
  });

  it('hands batch operators batches of at most batchSize and maps outcomes back by position', async () => {
    const sizes: number[] = [];
    const op: BatchOperator<number, number> = {
      name: 'batch',
      batchSize: 16,
      async processBatch(inputs) {
        sizes.push(inputs.length);
        await sleep(1);
        return inputs.map((n) => (n % 2 ? emit(n * 10) : fail(new Error('even'))));
      },
    };
    const sink = new CollectingSink<number>();
    const report = await pipeline(new CountingSource(300)).pipe(op).into(sink).run();
    expect(Math.max(...sizes)).toBeLessThanOrEqual(16);
    expect(Math.max(...sizes)).toBeGreaterThan(1);
    expect(report.totals.written).toBe(150);
    expect(sink.committed.every((v) => v % 20 === 10)).toBe(true);
  });

  it('a stop request stops reading, lets in-flight records finish and commits them (ledger balances)', async () => {
    const controller = new AbortController();
    const op: RecordOperator<number, number> = {
      name: 'slow',
      concurrency: 4,
      async process(n) {
        if (n === 50) controller.abort();
        await sleep(5);
        return emit(n);
      },
    };
    const source = new CountingSource(10_000);
    const sink = new CollectingSink<number>(1000);
    const report = await pipeline(source)
      .pipe(op)
      .into(sink, { signal: controller.signal, queueCapacity: 8 })
      .run();
    expect(report.status).toBe('interrupted');
    expect(source.produced).toBeLessThan(100);
    expect(report.totals.abandoned).toBe(0);
    expect(report.totals.read).toBe(report.totals.written);
    expect(sink.committed).toHaveLength(report.totals.read);
  });

  it('past the grace period, records still in flight are abandoned and counted as such', async () => {
    const controller = new AbortController();
    const op: RecordOperator<number, number> = {
      name: 'stuck',
      concurrency: 2,
      async process(n) {
        if (n < 3) return emit(n);
        controller.abort();
        await sleep(60_000); // never finishes within the grace period
        return emit(n);
      },
    };
    const sink = new CollectingSink<number>(1);
    const started = Date.now();
    const report = await pipeline(new CountingSource(1000))
      .pipe(op)
      .into(sink, { signal: controller.signal, graceMs: 100, queueCapacity: 4 })
      .run();
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(report.status).toBe('interrupted');
    expect(report.totals.written).toBe(3);
    expect(report.totals.abandoned).toBeGreaterThan(0);
    expect(report.totals.read).toBe(report.totals.written + report.totals.abandoned);
  });

  it('a source error fails the run but keeps what the sink had accepted', async () => {
    const source = new CountingSource(100);
    const broken = {
      name: 'read',
      expectedRows: async () => undefined,
      async *read(...args: Parameters<CountingSource['read']>) {
        let i = 0;
        for await (const e of source.read(...args)) {
          if (i++ === 30) throw new Error('disk on fire');
          yield e;
        }
      },
    };
    const sink = new CollectingSink<number>(1000);
    const report = await pipeline(broken).pipe(passThrough).into(sink).run();
    expect(report.status).toBe('failed');
    expect(report.error).toBe('disk on fire');
    expect(sink.committed.length).toBe(report.totals.rowsWritten);
    expect(report.totals.read).toBe(report.totals.written + report.totals.abandoned);
  });

  it('a fatal error from an operator stops the run instead of failing record after record', async () => {
    const op: RecordOperator<number, number> = {
      name: 'llm',
      concurrency: 2,
      process(n) {
        if (n === 20)
          throw Object.assign(new Error('endpoint down for 120s'), { code: 'E_DOWN', fatal: true });
        return emit(n);
      },
    };
    const sink = new CollectingSink<number>(5);
    const report = await pipeline(new CountingSource(10_000)).pipe(op).into(sink, { queueCapacity: 8 }).run();
    expect(report.status).toBe('failed');
    expect(report.error).toBe('endpoint down for 120s');
    expect(report.totals.read).toBeLessThan(100);
    expect(report.totals.failed).toEqual({});
    expect(report.totals.read).toBe(report.totals.written + report.totals.abandoned);
  });

  it('streams drops that name a duplicated record to the drop-notes sink and counts them', async () => {
    const notes: DropNote[] = [];
    let closed = 0;
    const sink: DropNoteSink = {
      write: (note) => void notes.push(note),
      close: async () => void closed++,
    };
    const op: RecordOperator<number, number> = {
      name: 'dedupe',
      process(n) {
        if (n % 10 === 3) return drop('copy', { duplicateOf: `doc-${n - 1}` });
        if (n % 10 === 7) return drop('plain'); // no duplicateOf: counted, not noted
        return emit(n);
      },
    };
    const report = await pipeline(new CountingSource(100, 'shard-x'))
      .pipe(op)
      .into(new CollectingSink<number>(), { dropNotes: sink })
      .run();
    expect(report.status).toBe('completed');
    expect(report.totals.dropped).toEqual({ 'dedupe:copy': 10, 'dedupe:plain': 10 });
    expect(report.dropNotes).toBe(10);
    expect(closed).toBe(1);
    expect(notes).toEqual(
      Array.from({ length: 10 }, (_, k) => ({
        shard: 'shard-x',
        row: k * 10 + 3,
        stage: 'dedupe',
        reason: 'copy',
        duplicateOf: `doc-${k * 10 + 2}`,
      })),
    );
  });

  it('a drop-notes sink that cannot be closed fails the run', async () => {
    const sink: DropNoteSink = {
      write: () => {},
      close: async () => {
        throw new Error('disk full');
      },
    };
    const report = await pipeline(new CountingSource(10))
      .pipe(passThrough)
      .into(new CollectingSink<number>(), { dropNotes: sink })
      .run();
    expect(report.status).toBe('failed');
    expect(report.error).toBe('disk full');
  });

  it('calls a batch operator in input order whatever its concurrency; `ordered` keeps outputs in it', async () => {
    for (const ordered of [false, true]) {
      const firstOfCall: number[] = [];
      const op: BatchOperator<number, number> = {
        name: 'shuffle',
        batchSize: 8,
        concurrency: 4,
        ordered,
        async processBatch(inputs) {
          firstOfCall.push(inputs[0]!); // before any await: the order calls were made in
          await sleep(inputs[0]! % 3 === 0 ? 20 : 1); // later calls often finish first
          return inputs.map((n) => emit(n));
        },
      };
      const sink = new CollectingSink<number>();
      const source = new CountingSource(400);
      const report = await pipeline(source).pipe(op).into(sink, { queueCapacity: 32 }).run();
      expect(report.status).toBe('completed');
      expect(firstOfCall).toEqual([...firstOfCall].sort((a, b) => a - b));
      const inOrder = sink.committed.every((n, i) => n === i);
      expect(sink.committed).toHaveLength(400);
      // Without `ordered` the slow calls' outputs arrive late; with it, never.
      expect(inOrder).toBe(ordered);
    }
  });

  it('rejects two stages with the same name', () => {
    expect(() => pipeline(new CountingSource(1)).pipe(passThrough).pipe(passThrough)).toThrow(/two stages/);
  });
});
