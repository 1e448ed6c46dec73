/**
 * The contract between the engine and an operator. An operator sees plain values, never Parquet, HTTP or
 * the ledger: for each input it returns an Outcome (emit zero or more values, or drop with a reason), or
 * throws, and the engine records a failure with the error's kind. Operators count whatever else they want
 * through `ctx.count`.
 */
export type Outcome<O> =
  | { readonly kind: 'emit'; readonly values: readonly O[] }
  | { readonly kind: 'drop'; readonly reason: string; readonly duplicateOf?: string }
  | { readonly kind: 'fail'; readonly error: unknown };

/** What a drop may say beyond its reason. */
export interface DropDetail {
  /**
   * The id of the record this one duplicates. The engine streams every such drop to the run's drop-notes
   * sink as {shard, row, stage, reason, duplicateOf}.
   */
  readonly duplicateOf?: string;
}

export function emit<O>(...values: O[]): Outcome<O> {
  return { kind: 'emit', values };
}

export function drop(reason: string, detail: DropDetail = {}): Outcome<never> {
  return detail.duplicateOf === undefined
    ? { kind: 'drop', reason }
    : { kind: 'drop', reason, duplicateOf: detail.duplicateOf };
}

export function fail(error: unknown): Outcome<never> {
  return { kind: 'fail', error };
}

export interface OperatorContext {
  /** Aborted when the run is cancelled hard (after the grace period); long calls should honour it. */
  readonly signal: AbortSignal;
  /** Adds to one of this stage's own counters (datatrove's stat_update). */
  count(name: string, value?: number): void;
}

interface OperatorBase {
  /** Unique within a pipeline; used in stats, ledger reasons and progress lines. */
  readonly name: string;
  /** How many calls of process/processBatch may be in flight at once (default 1). */
  readonly concurrency?: number;
  /**
   * Pass outputs on in input order even when calls finish out of order (concurrency > 1). Costs head-of-line
   * waiting (a finished call holds its slot until every earlier one has passed its outputs on); buys
   * downstream stages an input order that does not depend on timing, which order-sensitive stages such as
   * dedupe (first seen is kept) need for repeatable decisions. Default false.
   */
  readonly ordered?: boolean;
  /**
   * The operator keeps state across records (dedupe, diversity selection): on a resumed run it also sees the
   * rows an earlier run settled, replayed in their original order, so its state and decisions come out as if
   * the run had never stopped. Their outcomes are not counted; a stateless operator never sees them.
   */
  readonly replay?: boolean;
  /** Releases resources (worker pools, connections) when the run ends, successfully or not. */
  close?(): Promise<void> | void;
}

/** Handles one record at a time (up to `concurrency` at once). */
export interface RecordOperator<I, O> extends OperatorBase {
  process(input: I, ctx: OperatorContext): Promise<Outcome<O>> | Outcome<O>;
}

/**
 * Handles records in batches of up to `batchSize` (for work shipped to a worker pool); must return one
 * Outcome per input, in input order. The engine calls process/processBatch in input order (the synchronous
 * part of call k runs before call k+1 starts), whatever the concurrency; only completions may reorder.
 */
export interface BatchOperator<I, O> extends OperatorBase {
  readonly batchSize: number;
  processBatch(inputs: readonly I[], ctx: OperatorContext): Promise<Array<Outcome<O>>>;
}

/** What a blocking stage decided for each record it saw. */
export interface Selection {
  /** keep[i] is 1 when the i-th record (in arrival order) goes on. */
  readonly keep: Uint8Array;
  /** The drop reason of every record not kept. */
  readonly dropReason: string;
}

/**
 * A stage that needs all its input before it can decide, such as diversity selection. It sees each record as
 * it arrives (keeping only what it needs to decide, e.g. a vector, never the text), then selects once input
 * ends; the engine parks the records on disk meanwhile and sends the kept ones on, in arrival order.
 */
export interface BlockingOperator<I> extends OperatorBase {
  readonly blocking: true;
  /**
   * When set, records arrive grouped by this key (a shard, say) and the stage needs only one group to decide:
   * the engine selects each group's records and sends them on as soon as the next group begins, instead of
   * at the end of the input. A key seen again after its group ended fails the run (the grouping is a promise
   * of the stages upstream: the source reads shards in order and every stage before keeps order).
   */
  partitionOf?(input: I): string;
  /** Sees the records of the current group (or of the whole input) in order; `index` counts from 0 in it. */
  observe(input: I, index: number, ctx: OperatorContext): Promise<void> | void;
  /** Decides over the `count` records observed since the last call, and forgets them. */
  select(count: number, ctx: OperatorContext): Promise<Selection>;
}

export type Operator<I, O> = RecordOperator<I, O> | BatchOperator<I, O> | BlockingOperator<I>;

export function isBatchOperator<I, O>(op: Operator<I, O>): op is BatchOperator<I, O> {
  return 'processBatch' in op;
}

export function isBlockingOperator<I, O>(op: Operator<I, O>): op is BlockingOperator<I> {
  return 'blocking' in op && op.blocking === true;
}
