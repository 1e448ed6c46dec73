import { describe, expect, it } from 'vitest';
import { LedgerError } from '../pipeline/errors.js';
import { Ledger, type DropNote } from '../pipeline/ledger.js';

describe('Ledger', () => {
  it('settles a row once all records derived from it have ended', () => {
    const ledger = new Ledger();
    const t = ledger.read('a.parquet', 0);
    ledger.fanOut(t, 3);
    ledger.written(t);
    ledger.dropped(t, 'filter', 'too_short');
    expect(ledger.inFlight).toBe(1);
    ledger.failed(t, 'judge', 'AIR_LLM', 'bad');
    expect(ledger.inFlight).toBe(0);
    const [tally] = ledger.tallies();
    expect(tally).toMatchObject({ read: 1, written: 1, rowsWritten: 1, dropped: {}, failed: {} });
    ledger.assertBalanced();
  });

  it('counts a row with no written descendant as failed if any failed, else dropped', () => {
    const ledger = new Ledger();
    const a = ledger.read('s', 0);
    ledger.dropped(a, 'filter', 'too_long');
    const b = ledger.read('s', 1);
    ledger.fanOut(b, 2);
    ledger.dropped(b, 'filter', 'too_long');
    ledger.failed(b, 'gen', 'TIMEOUT', 'slow');
    expect(ledger.totals()).toMatchObject({
      read: 2,
      written: 0,
      dropped: { 'filter:too_long': 1 },
      failed: { 'gen:TIMEOUT': 1 },
    });
    expect(ledger.failureSamples).toEqual([
      { shard: 's', row: 1, stage: 'gen', kind: 'TIMEOUT', message: 'slow' },
    ]);
    ledger.assertBalanced();
  });

  it('refuses to settle the same record twice', () => {
    const ledger = new Ledger();
    const t = ledger.read('s', 0);
    ledger.written(t);
    expect(() => ledger.written(t)).toThrow(LedgerError);
  });

  it('does not balance while rows are in flight, and balances once they are abandoned', () => {
    const ledger = new Ledger();
    ledger.read('s', 0);
    ledger.read('s', 1);
    expect(() => ledger.assertBalanced()).toThrow(/still in flight/);
    expect(ledger.abandonOpen()).toBe(2);
    expect(ledger.tallies()[0]!.abandoned).toBe(2);
    ledger.assertBalanced();
  });

  it('writes a note for each dropped record that names a duplicate, including one of a row that was written', () => {
    const notes: DropNote[] = [];
    const ledger = new Ledger({ notes: { write: (n) => void notes.push(n), close: async () => {} } });
    const a = ledger.read('s.parquet', 4);
    ledger.dropped(a, 'exact_dedupe', 'exact_duplicate', 'doc-1');
    const b = ledger.read('s.parquet', 5);
    ledger.fanOut(b, 2);
    ledger.dropped(b, 'near_dedupe', 'near_duplicate', 'doc-2');
    ledger.written(b);
    const c = ledger.read('s.parquet', 6);
    ledger.dropped(c, 'filter', 'too_short');
    expect(notes).toEqual([
      { shard: 's.parquet', row: 4, stage: 'exact_dedupe', reason: 'exact_duplicate', duplicateOf: 'doc-1' },
      { shard: 's.parquet', row: 5, stage: 'near_dedupe', reason: 'near_duplicate', duplicateOf: 'doc-2' },
    ]);
    expect(ledger.dropNotes).toBe(2);
    expect(ledger.totals()).toMatchObject({
      read: 3,
      written: 1,
      dropped: { 'exact_dedupe:exact_duplicate': 1, 'filter:too_short': 1 },
    });
    ledger.assertBalanced();
  });
});
