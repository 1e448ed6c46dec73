import type { Ticket } from '../../pipeline/ledger.js';
import type { Sink } from '../../pipeline/source.js';

/** Keeps every row in memory and commits it at once: neither side of the benchmark writes files. */
export class CollectSink<T> implements Sink<T> {
  readonly name = 'write';
  readonly rows: T[] = [];
  private onCommit: (tickets: readonly Ticket[]) => void = () => {};

  async open(onCommit: (tickets: readonly Ticket[]) => void): Promise<void> {
    this.onCommit = onCommit;
  }

  async write(value: T, ticket: Ticket): Promise<void> {
    this.rows.push(value);
    this.onCommit([ticket]);
  }

  async close(): Promise<void> {}
}
