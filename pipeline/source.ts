import type { Ledger, Ticket } from './ledger.js';

/** A record in flight, with the ticket of the input row it derives from. */
export interface Envelope<T> {
  readonly ticket: Ticket;
  readonly value: T;
}

/**
 * Where records come from. A source opens a ledger ticket for every row it reads; a row it cannot turn
 * into a record (null text, say) is settled as dropped right away with a reason.
 */
export interface Source<T> {
  readonly name: string;
  /** Total rows the source will read, when known up front (for the ETA), e.g. from Parquet footers. */
  expectedRows(): Promise<number | undefined>;
  /** Stops yielding once `signal` is aborted; must release its resources when the iteration ends. */
  read(ledger: Ledger, signal: AbortSignal): AsyncIterable<Envelope<T>>;
  close?(): Promise<void> | void;
}

/**
 * Where records end. `write` accepts a record (waiting if the sink is busy); the sink reports rows as
 * committed only once they are durable, through the callback given to `open`.
 */
export interface Sink<T> {
  readonly name: string;
  open(onCommit: (tickets: readonly Ticket[]) => void): Promise<void>;
  write(value: T, ticket: Ticket): Promise<void>;
  /** Commits everything accepted so far and releases resources. */
  close(): Promise<void>;
  /** Releases resources without committing (after a failure of the sink itself). */
  abort?(): Promise<void>;
}
