import { LedgerError } from './errors.js';
import { increment, sumValues } from './stats.js';

/**
 * Where every input record ended: written, dropped with a reason, or failed with an error kind.
 *
 * The source opens one Ticket per input row; the ticket travels with every record derived from that row.
 * A record that fans out into k records adds k-1 live descendants; each descendant ends exactly once
 * (written, dropped or failed). When the last one ends, the input row is settled: written if any descendant
 * was written, else failed if any failed, else dropped. Only tickets in flight are held, so memory is
 * bounded by the pipeline's buffers, not by the input size.
 */
export interface ShardTally {
  shard: string;
  /** Input rows read from the shard. */
  read: number;
  /** Input rows with at least one output row written. */
  written: number;
  /** Output rows written (one input can yield several). */
  rowsWritten: number;
  /** Input rows dropped, by "stage:reason". */
  dropped: Record<string, number>;
  /** Input rows failed, by "stage:kind". */
  failed: Record<string, number>;
  /** Input rows still in flight when a run was interrupted past its grace period. */
  abandoned: number;
}

export interface Ticket {
  readonly tally: ShardTally;
  readonly row: number;
  /**
   * A row settled by an earlier, interrupted run, read again only to rebuild the state of stages that
   * remember what they saw (dedupe, diversity selection): the ledger ignores everything that happens to it.
   */
  readonly replay?: true;
  live: number;
  written: number;
  lastDrop: string | undefined;
  lastFailure: string | undefined;
}

export interface FailureSample {
  shard: string;
  row: number;
  stage: string;
  kind: string;
  message: string;
}

/** One dropped record that duplicates another: which input row it came from and whose duplicate it is. */
export interface DropNote {
  readonly shard: string;
  readonly row: number;
  readonly stage: string;
  readonly reason: string;
  readonly duplicateOf: string;
}

/**
 * Where drop notes go as they happen (runs drop millions of rows, so they are streamed, never held). `write`
 * is synchronous because the ledger's bookkeeping is; a sink buffers and writes in blocks. `close` makes
 * everything written durable.
 */
export interface DropNoteSink {
  write(note: DropNote): void;
  close(): Promise<void>;
}

/** How an input row ended, reported once when its last derived record ends. */
export interface Settlement {
  readonly shard: string;
  readonly row: number;
  readonly outcome: 'written' | 'dropped' | 'failed';
  /** "stage:reason" or "stage:kind"; empty when written. */
  readonly reason: string;
  /** Output rows the input yielded. */
  readonly rows: number;
}

export interface LedgerOptions {
  /** Receives a note for every drop that names the record it duplicates. */
  readonly notes?: DropNoteSink;
  /** Called as each input row settles (for checkpoints that let an interrupted run resume). */
  readonly onSettle?: (settlement: Settlement) => void;
}

const MAX_FAILURE_SAMPLES = 50;

export function emptyTally(shard: string): ShardTally {
  return { shard, read: 0, written: 0, rowsWritten: 0, dropped: {}, failed: {}, abandoned: 0 };
}

/**
 * Adds the counts of `from` into `into` (totals, restored checkpoints, checkpoint deltas). Retried failures
 * come as negative counts, so a reason whose count reaches zero is removed.
 */
export function addTally(into: Omit<ShardTally, 'shard'>, from: Omit<ShardTally, 'shard'>): void {
  into.read += from.read;
  into.written += from.written;
  into.rowsWritten += from.rowsWritten;
  into.abandoned += from.abandoned;
  for (const [counts, delta] of [
    [into.dropped, from.dropped],
    [into.failed, from.failed],
  ] as const) {
    for (const [k, v] of Object.entries(delta)) {
      increment(counts, k, v);
      if (counts[k] === 0) delete counts[k];
    }
  }
}

/** The tally of `shard` in a map of them, created empty when missing. */
export function tallyIn(tallies: Map<string, ShardTally>, shard: string): ShardTally {
  let tally = tallies.get(shard);
  if (tally === undefined) tallies.set(shard, (tally = emptyTally(shard)));
  return tally;
}

export class Ledger {
  private readonly shards = new Map<string, ShardTally>();
  private readonly open = new Set<Ticket>();
  private readonly notes: DropNoteSink | undefined;
  private readonly onSettle: ((settlement: Settlement) => void) | undefined;
  readonly failureSamples: FailureSample[] = [];
  /**
   * Drops that named a duplicated record (one per dropped record, so a row that fanned out can have several
   * while being settled as written).
   */
  dropNotes = 0;

  constructor(options: LedgerOptions = {}) {
    this.notes = options.notes;
    this.onSettle = options.onSettle;
  }

  /** Adds the tallies of rows an earlier run settled (a resumed run starts from them). */
  restore(tallies: readonly ShardTally[]): void {
    for (const t of tallies) addTally(this.shard(t.shard), t);
  }

  /** A ticket for a row an earlier run settled, read again for stateful stages; it is never counted. */
  replay(shard: string, row: number): Ticket {
    return {
      tally: this.shard(shard),
      row,
      replay: true,
      live: 1,
      written: 0,
      lastDrop: undefined,
      lastFailure: undefined,
    };
  }

  shard(shard: string): ShardTally {
    let tally = this.shards.get(shard);
    if (tally === undefined) {
      tally = emptyTally(shard);
      this.shards.set(shard, tally);
    }
    return tally;
  }

  /** A row was read from a shard; the returned ticket must travel with it. */
  read(shard: string, row: number): Ticket {
    const tally = this.shard(shard);
    tally.read += 1;
    const ticket: Ticket = { tally, row, live: 1, written: 0, lastDrop: undefined, lastFailure: undefined };
    this.open.add(ticket);
    return ticket;
  }

  /** One live record became `count` records (count 0 is a drop and must go through `dropped`). */
  fanOut(ticket: Ticket, count: number): void {
    if (ticket.replay) return;
    if (count < 1) throw new LedgerError(`fan-out of ${count} records for row ${ticket.row}: use dropped()`);
    this.assertOpen(ticket, 'fan-out');
    ticket.live += count - 1;
  }

  /** One record derived from the ticket's row was dropped; `duplicateOf` also writes a DropNote. */
  dropped(ticket: Ticket, stage: string, reason: string, duplicateOf?: string): void {
    if (ticket.replay) return;
    ticket.lastDrop = `${stage}:${reason}`;
    this.end(ticket, 'drop');
    if (duplicateOf === undefined) return;
    this.dropNotes += 1;
    this.notes?.write({ shard: ticket.tally.shard, row: ticket.row, stage, reason, duplicateOf });
  }

  failed(ticket: Ticket, stage: string, kind: string, message: string): void {
    if (ticket.replay) return;
    ticket.lastFailure = `${stage}:${kind}`;
    if (this.failureSamples.length < MAX_FAILURE_SAMPLES) {
      this.failureSamples.push({ shard: ticket.tally.shard, row: ticket.row, stage, kind, message });
    }
    this.end(ticket, 'fail');
  }

  written(ticket: Ticket): void {
    if (ticket.replay) return;
    ticket.written += 1;
    ticket.tally.rowsWritten += 1;
    this.end(ticket, 'write');
  }

  /** Records still in flight (for progress and for interrupted runs). */
  get inFlight(): number {
    return this.open.size;
  }

  /** Settles every open ticket as abandoned: only for a run stopped past its grace period. */
  abandonOpen(): number {
    const n = this.open.size;
    for (const ticket of this.open) ticket.tally.abandoned += 1;
    this.open.clear();
    return n;
  }

  tallies(): ShardTally[] {
    return [...this.shards.values()];
  }

  totals(): Omit<ShardTally, 'shard'> {
    const { shard: _shard, ...total } = emptyTally('');
    for (const t of this.shards.values()) addTally(total, t);
    return total;
  }

  /** Throws LedgerError unless every row read is accounted for exactly once. */
  assertBalanced(): void {
    if (this.open.size > 0) {
      throw new LedgerError(`${this.open.size} records are still in flight at the end of the run`);
    }
    for (const t of this.shards.values()) {
      const settled = t.written + sumValues(t.dropped) + sumValues(t.failed) + t.abandoned;
      if (settled !== t.read) {
        throw new LedgerError(
          `${t.shard}: read ${t.read} rows but accounted for ${settled} ` +
            `(written ${t.written}, dropped ${sumValues(t.dropped)}, failed ${sumValues(t.failed)}, abandoned ${t.abandoned})`,
        );
      }
    }
  }

  private end(ticket: Ticket, how: 'drop' | 'fail' | 'write'): void {
    this.assertOpen(ticket, how);
    ticket.live -= 1;
    if (ticket.live > 0) return;
    this.open.delete(ticket);
    const tally = ticket.tally;
    let outcome: Settlement['outcome'];
    let reason = '';
    if (ticket.written > 0) {
      tally.written += 1;
      outcome = 'written';
    } else if (ticket.lastFailure !== undefined) {
      increment(tally.failed, ticket.lastFailure);
      outcome = 'failed';
      reason = ticket.lastFailure;
    } else {
      reason = ticket.lastDrop ?? 'unknown';
      increment(tally.dropped, reason);
      outcome = 'dropped';
    }
    this.onSettle?.({ shard: tally.shard, row: ticket.row, outcome, reason, rows: ticket.written });
  }

  private assertOpen(ticket: Ticket, what: string): void {
    if (ticket.live <= 0 || !this.open.has(ticket)) {
      throw new LedgerError(`${what} on settled row ${ticket.row} of ${ticket.tally.shard}: counted twice`);
    }
  }
}
