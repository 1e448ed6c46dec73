import type { Ledger, Ticket } from '../../pipeline/ledger.js';
import type { Envelope, Sink, Source } from '../../pipeline/source.js';

/** An in-memory source for engine tests: yields `count` numbered items from one pseudo-shard. */
export class CountingSource implements Source<number> {
  readonly name = 'read';
  produced = 0;

  constructor(
    private readonly count: number,
    private readonly shard = 'mem',
  ) {}

  async expectedRows(): Promise<number> {
    return this.count;
  }

  async *read(ledger: Ledger, signal: AbortSignal): AsyncIterable<Envelope<number>> {
    for (let i = 0; i < this.count; i++) {
      if (signal.aborted) return;
      this.produced++;
      yield { ticket: ledger.read(this.shard, i), value: i };
    }
  }
}

/** An in-memory sink that commits every `commitEvery` rows and optionally takes `delayMs` per row. */
export class CollectingSink<T> implements Sink<T> {
  readonly name = 'write';
  readonly committed: T[] = [];
  private pending: Array<{ value: T; ticket: Ticket }> = [];
  private onCommit: (tickets: readonly Ticket[]) => void = () => {};

  constructor(
    private readonly commitEvery = 10,
    private readonly delayMs = 0,
  ) {}

  async open(onCommit: (tickets: readonly Ticket[]) => void): Promise<void> {
    this.onCommit = onCommit;
  }

  async write(value: T, ticket: Ticket): Promise<void> {
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    this.pending.push({ value, ticket });
    if (this.pending.length >= this.commitEvery) this.flush();
  }

  async close(): Promise<void> {
    this.flush();
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    for (const { value } of batch) this.committed.push(value);
    this.onCommit(batch.map((b) => b.ticket));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
