import { setMaxListeners } from 'node:events';
import { AirError, LedgerError, errorKind, errorMessage, isFatal } from './errors.js';
import {
  Ledger,
  type DropNoteSink,
  type FailureSample,
  type Settlement,
  type ShardTally,
  type Ticket,
} from './ledger.js';
import {
  isBatchOperator,
  isBlockingOperator,
  type BatchOperator,
  type BlockingOperator,
  type Operator,
  type OperatorContext,
  type Outcome,
  type RecordOperator,
} from './operator.js';
import { BoundedQueue } from './queue.js';
import type { Envelope, Sink, Source } from './source.js';
import { SpillFile } from './spill.js';
import { increment, newStageStats, sumValues, type StageStats } from './stats.js';

export interface PipelineOptions {
  /** Records each inter-stage buffer holds before its producer waits (the high-water mark). */
  queueCapacity?: number;
  /** After a stop request, how long in-flight records may take to finish before they are abandoned. */
  graceMs?: number;
  /** Aborting it stops reading new input; in-flight work finishes within the grace period. */
  signal?: AbortSignal;
  /** Where blocking stages park their records (default: the system's temporary folder). */
  spillDir?: string;
  /** One line per noteworthy event (failed records, interruption); defaults to silence. */
  log?: (line: string) => void;
  /**
   * Receives a note for every drop that names the record it duplicates (see `drop(reason, { duplicateOf })`);
   * the run closes it (flush, fsync) when it ends, whatever the outcome. Without it, such drops are only
   * counted.
   */
  dropNotes?: DropNoteSink;
  /** Called as each input row settles: written, dropped or failed (checkpoints for resuming). */
  onSettle?: (settlement: Settlement) => void;
  /** Called for every failed record, with the error (for failure rows: kind, message, raw reply). */
  onFailure?: (failure: RecordFailure) => void;
  /**
   * The run stops (fatal AIR_FAILURE_RATE) once more than this fraction of settled input rows failed,
   * counted after `minRowsForFailureRate` rows have settled. Default: never.
   */
  maxFailureRate?: number;
  minRowsForFailureRate?: number;
}

/** A record that failed, for failure rows. */
export interface RecordFailure {
  readonly shard: string;
  readonly row: number;
  readonly stage: string;
  readonly kind: string;
  readonly message: string;
  readonly error: unknown;
}

export type RunStatus = 'completed' | 'interrupted' | 'failed';

export interface RunReport {
  status: RunStatus;
  /** The error that failed the run, as one line. */
  error?: string;
  errorCode?: string;
  wallMs: number;
  stages: StageStats[];
  shards: ShardTally[];
  totals: Omit<ShardTally, 'shard'>;
  failureSamples: FailureSample[];
  /** Drops that named the record they duplicate (each one a line in the drop-notes sink, if any). */
  dropNotes: number;
}

export interface ProgressSnapshot {
  elapsedMs: number;
  expectedRows: number | undefined;
  stages: StageStats[];
  queues: number[];
  inFlight: number;
  rowsRead: number;
  rowsWritten: number;
}

type AnyOperator = Operator<unknown, unknown>;

/** How many failure lines are logged one by one before only the counts are kept. */
const LOGGED_FAILURES = 20;

class Cancelled extends Error {}

const noop = (): void => {};

/**
 * Source → operators → sink, each pair joined by a BoundedQueue. Build it with `pipeline(source)`.
 */
export class Pipeline<T> {
  private readonly source: Source<unknown>;
  private readonly steps: readonly AnyOperator[];

  constructor(source: Source<unknown>, steps: readonly AnyOperator[]) {
    this.source = source;
    this.steps = steps;
  }

  pipe(op: BlockingOperator<T>): Pipeline<T>;
  pipe<O>(op: RecordOperator<T, O> | BatchOperator<T, O>): Pipeline<O>;
  pipe(op: Operator<T, T>): Pipeline<T>;
  pipe<O>(op: Operator<T, O>): Pipeline<O> {
    const names = new Set(this.steps.map((s) => s.name));
    if (names.has(op.name)) throw new AirError('AIR_USAGE', `two stages are named "${op.name}"`);
    return new Pipeline<O>(this.source, [...this.steps, op as unknown as AnyOperator]);
  }

  /** Each stage of a plain list in turn: stages that keep the record type (filters, dedupe, sampling). */
  through(stages: readonly Operator<T, T>[]): Pipeline<T> {
    return stages.reduce<Pipeline<T>>((out, stage) => out.pipe(stage), this);
  }

  into(sink: Sink<T>, options: PipelineOptions = {}): PipelineRun {
    return new PipelineRun(this.source, this.steps, sink as Sink<unknown>, options);
  }
}

export function pipeline<T>(source: Source<T>): Pipeline<T> {
  return new Pipeline<T>(source as Source<unknown>, []);
}

/** One execution of a pipeline; `snapshot()` may be polled while `run()` is pending. */
export class PipelineRun {
  readonly ledger: Ledger;
  private readonly stats: StageStats[];
  private readonly sourceStats: StageStats;
  private readonly sinkStats: StageStats;
  private readonly queues: Array<BoundedQueue<Envelope<unknown>>>;
  private readonly stop = new AbortController();
  private readonly hardStop = new AbortController();
  private readonly options: Required<
    Omit<PipelineOptions, 'signal' | 'spillDir' | 'dropNotes' | 'onSettle' | 'onFailure'>
  > & {
    signal?: AbortSignal;
    spillDir?: string;
    dropNotes?: DropNoteSink;
    onFailure?: (failure: RecordFailure) => void;
  };
  /** Index of the last stage that keeps state; replayed rows go no further. */
  private readonly lastReplayStage: number;
  private startedAt = 0;
  private expected: number | undefined;
  private loggedFailures = 0;

  constructor(
    private readonly source: Source<unknown>,
    private readonly steps: readonly AnyOperator[],
    private readonly sink: Sink<unknown>,
    options: PipelineOptions,
  ) {
    this.options = {
      queueCapacity: options.queueCapacity ?? 256,
      graceMs: options.graceMs ?? 30_000,
      log: options.log ?? (() => {}),
      signal: options.signal,
      spillDir: options.spillDir,
      dropNotes: options.dropNotes,
      onFailure: options.onFailure,
      maxFailureRate: options.maxFailureRate ?? 1,
      minRowsForFailureRate: options.minRowsForFailureRate ?? 100,
    };
    this.ledger = new Ledger({ notes: options.dropNotes, onSettle: options.onSettle });
    this.lastReplayStage = steps.reduce((last, op, i) => (op.replay === true ? i : last), -1);
    // Every in-flight call of every stage listens to the hard-stop signal (hundreds of LLM calls at once):
    // Node's warning at 11 listeners is meant for leaks, and these are removed when each call ends.
    setMaxListeners(0, this.hardStop.signal);
    this.stats = steps.map((s) => newStageStats(s.name));
    this.sourceStats = newStageStats(source.name);
    this.sinkStats = newStageStats(sink.name);
    this.queues = Array.from(
      { length: steps.length + 1 },
      () => new BoundedQueue<Envelope<unknown>>(this.options.queueCapacity),
    );
  }

  snapshot(): ProgressSnapshot {
    const totals = this.ledger.totals();
    return {
      elapsedMs: this.startedAt === 0 ? 0 : performance.now() - this.startedAt,
      expectedRows: this.expected,
      stages: this.allStages().map((s) => structuredClone(s)),
      queues: this.queues.map((q) => q.size),
      inFlight: this.ledger.inFlight,
      rowsRead: totals.read,
      rowsWritten: totals.rowsWritten,
    };
  }

  /** Highest fill of each inter-stage buffer during the run. */
  queueHighWater(): number[] {
    return this.queues.map((q) => q.highWater);
  }

  async run(): Promise<RunReport> {
    this.startedAt = performance.now();
    const external = this.options.signal;
    const onExternalAbort = (): void => this.requestStop();
    if (external?.aborted) this.requestStop();
    external?.addEventListener('abort', onExternalAbort, { once: true });

    let failure: unknown;
    const fatal = (error: unknown): void => {
      if (failure === undefined) failure = error;
      this.stop.abort();
      for (const q of this.queues) q.fail(new Cancelled());
    };

    let sinkOpen = false;
    let sinkTask: Promise<void> | undefined;
    try {
      this.expected = await this.source.expectedRows();
      await this.sink.open((tickets) => this.onCommit(tickets));
      sinkOpen = true;
      sinkTask = this.runSink().catch(fatal);
      const tasks = [
        this.runSource().catch(fatal),
        ...this.steps.map((op, i) => this.runStage(op, i).catch(fatal)),
        sinkTask,
      ];
      await Promise.race([Promise.all(tasks), this.hardStopped()]);
      if (this.hardStop.signal.aborted) {
        for (const q of this.queues) q.fail(new Cancelled());
      }
    } catch (error) {
      fatal(error);
    } finally {
      external?.removeEventListener('abort', onExternalAbort);
    }

    // Keep what was accepted: commit the sink's pending rows even when the run failed upstream. After a hard
    // stop the sink loop may still be inside a write (its queue is failed, so it ends after it): closing the
    // sink under that write would interleave two commits.
    if (sinkOpen) {
      await sinkTask;
      try {
        await this.sink.close();
      } catch (error) {
        if (failure === undefined) failure = error;
        await this.sink.abort?.().catch(() => {});
      }
    }
    await Promise.allSettled([this.source.close?.(), ...this.steps.map((s) => s.close?.())]);
    // The notes of the drops the ledger recorded are kept like its counts, on failure too.
    if (this.options.dropNotes !== undefined) {
      try {
        await this.options.dropNotes.close();
      } catch (error) {
        if (failure === undefined) failure = error;
      }
    }

    const interrupted = this.stop.signal.aborted && failure === undefined;
    const abandoned = this.ledger.abandonOpen();
    if (abandoned > 0) this.options.log(`${abandoned} records were in flight when the run stopped`);
    let status: RunStatus = failure !== undefined ? 'failed' : interrupted ? 'interrupted' : 'completed';
    if (status === 'completed' || status === 'interrupted') {
      try {
        this.ledger.assertBalanced();
        this.assertStagesBalanced(status === 'interrupted');
      } catch (error) {
        failure = error;
        status = 'failed';
      }
    }
    const report: RunReport = {
      status,
      wallMs: performance.now() - this.startedAt,
      stages: this.allStages(),
      shards: this.ledger.tallies(),
      totals: this.ledger.totals(),
      failureSamples: this.ledger.failureSamples,
      dropNotes: this.ledger.dropNotes,
    };
    if (failure !== undefined) {
      report.error = errorMessage(failure);
      report.errorCode = errorKind(failure);
    }
    return report;
  }

  /** Stop reading input; in-flight records get `graceMs` to finish, then they are abandoned. */
  requestStop(): void {
    if (this.stop.signal.aborted) return;
    this.stop.abort();
    const timer = setTimeout(() => this.hardStop.abort(), this.options.graceMs);
    timer.unref();
  }

  /**
   * Whether a stage's error is the hard stop's doing: a Cancelled, or whatever an operator threw once the hard
   * stop aborted its signal (a worker pool's "task has been aborted", an aborted request). Those records are
   * abandoned and the run is interrupted, not failed.
   */
  private cancelledBy(error: unknown): boolean {
    return error instanceof Cancelled || this.hardStop.signal.aborted;
  }

  private hardStopped(): Promise<void> {
    const signal = this.hardStop.signal;
    return new Promise((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }

  private async runSource(): Promise<void> {
    const out = this.queues[0]!;
    try {
      for await (const envelope of this.source.read(this.ledger, this.stop.signal)) {
        this.sourceStats.out += 1;
        await out.push(envelope);
        if (this.stop.signal.aborted) break;
      }
      out.close();
    } catch (error) {
      if (!(error instanceof Cancelled)) throw error;
    }
  }

  private async runStage(op: AnyOperator, index: number): Promise<void> {
    if (isBlockingOperator(op)) return this.runBlockingStage(op, index);
    const input = this.queues[index]!;
    const output = this.queues[index + 1]!;
    const stats = this.stats[index]!;
    const limit = Math.max(1, op.concurrency ?? 1);
    const batchSize = isBatchOperator(op) ? Math.max(1, op.batchSize) : 1;
    const ctx = this.contextFor(stats);
    const inflight = new Set<Promise<void>>();
    const ordered = op.ordered === true && limit > 1;
    // Ordered stages chain their calls: each passes its outputs on once the previous one has.
    let previous: Promise<void> = Promise.resolve();
    try {
      for (;;) {
        while (inflight.size >= limit) await Promise.race(inflight);
        const taken = await input.take(batchSize);
        if (taken === null) break;
        const batch = index <= this.lastReplayStage ? taken : this.withoutReplays(taken, stats);
        if (batch.length === 0) continue;
        const turn = ordered ? previous : undefined;
        const task = this.handle(op, stats, ctx, batch, output, turn).finally(() => inflight.delete(task));
        // Race and all below see a failure; after the first one the stage returns, and the others that fail
        // (cancelled by a hard stop) must not surface as unhandled rejections.
        task.catch(noop);
        inflight.add(task);
        if (ordered) previous = task.then(noop, noop);
      }
      await Promise.all(inflight);
      output.close();
    } catch (error) {
      if (this.cancelledBy(error)) return;
      throw error;
    }
  }

  /**
   * Parks every record on disk while the operator observes it, then sends on the selected ones in order: at the
   * end of the input, or (with `partitionOf`) at the end of each group of records.
   */
  private async runBlockingStage(op: BlockingOperator<unknown>, index: number): Promise<void> {
    const input = this.queues[index]!;
    const output = this.queues[index + 1]!;
    const stats = this.stats[index]!;
    const ctx = this.contextFor(stats);
    let spill = new SpillFile<unknown>(this.options.spillDir);
    let tickets: Ticket[] = [];
    let group: string | undefined;
    const ended = new Set<string>();
    try {
      for (;;) {
        const taken = await input.take(1);
        if (taken === null) break;
        const batch = index <= this.lastReplayStage ? taken : this.withoutReplays(taken, stats);
        if (batch.length === 0) continue;
        const { ticket, value } = batch[0]!;
        const key = op.partitionOf?.(value);
        if (key !== undefined && key !== group) {
          if (ended.has(key)) {
            throw new LedgerError(
              `stage ${op.name}: a record of "${key}" arrived after that group was decided (records out of order)`,
            );
          }
          if (group !== undefined) {
            ended.add(group);
            await this.sendSelection(op, ctx, stats, spill, tickets, output);
            spill = new SpillFile<unknown>(this.options.spillDir);
            tickets = [];
          }
          group = key;
        }
        if (ticket.replay) increment(stats.counters, 'replayed');
        else stats.in += 1;
        const started = performance.now();
        await op.observe(value, tickets.length, ctx);
        stats.busyMs += performance.now() - started;
        tickets.push(ticket);
        await spill.append(value);
      }
      await this.sendSelection(op, ctx, stats, spill, tickets, output);
      output.close();
    } catch (error) {
      if (this.cancelledBy(error)) return;
      throw error;
    } finally {
      await spill.remove();
    }
  }

  /** Asks a blocking stage to decide over the records parked in `spill`, then sends the kept ones on. */
  private async sendSelection(
    op: BlockingOperator<unknown>,
    ctx: OperatorContext,
    stats: StageStats,
    spill: SpillFile<unknown>,
    tickets: readonly Ticket[],
    output: BoundedQueue<Envelope<unknown>>,
  ): Promise<void> {
    increment(stats.counters, 'spilled_bytes', spill.bytes);
    const started = performance.now();
    const selection = await op.select(tickets.length, ctx);
    stats.busyMs += performance.now() - started;
    if (selection.keep.length !== tickets.length) {
      throw new LedgerError(
        `stage ${op.name} selected over ${selection.keep.length} records of ${tickets.length}`,
      );
    }
    let i = 0;
    for await (const value of spill.read()) {
      const ticket = tickets[i]!;
      if (ticket.replay) {
        if (selection.keep[i++]) await output.push({ ticket, value });
      } else if (selection.keep[i++]) {
        stats.passed += 1;
        stats.out += 1;
        await output.push({ ticket, value });
      } else {
        increment(stats.dropped, selection.dropReason);
        this.ledger.dropped(ticket, op.name, selection.dropReason);
      }
    }
    await spill.remove();
  }

  /** A run whose records mostly fail is stopped early, with the counts, instead of failing row by row. */
  private checkFailureRate(): void {
    const { maxFailureRate, minRowsForFailureRate } = this.options;
    if (maxFailureRate >= 1) return;
    const totals = this.ledger.totals();
    const failed = sumValues(totals.failed);
    const settled = totals.written + sumValues(totals.dropped) + failed;
    if (settled < minRowsForFailureRate || failed <= maxFailureRate * settled) return;
    const kinds = Object.entries(totals.failed)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    const stop = new AirError(
      'AIR_FAILURE_RATE',
      `${failed} of ${settled} settled rows failed (${((100 * failed) / settled).toFixed(1)}%, ceiling ` +
        `${(100 * maxFailureRate).toFixed(1)}%): ${kinds}`,
    );
    throw Object.assign(stop, { fatal: true });
  }

  /** Replayed rows stop after the last stage that keeps state (they never reach the sink). */
  private withoutReplays(
    batch: ReadonlyArray<Envelope<unknown>>,
    stats: StageStats,
  ): ReadonlyArray<Envelope<unknown>> {
    if (!batch.some((e) => e.ticket.replay)) return batch;
    const kept = batch.filter((e) => !e.ticket.replay);
    increment(stats.counters, 'replays_ended', batch.length - kept.length);
    return kept;
  }

  private contextFor(stats: StageStats): OperatorContext {
    return {
      signal: this.hardStop.signal,
      count: (name, value = 1) => increment(stats.counters, name, value),
    };
  }

  private async handle(
    op: RecordOperator<unknown, unknown> | BatchOperator<unknown, unknown>,
    stats: StageStats,
    ctx: OperatorContext,
    batch: ReadonlyArray<Envelope<unknown>>,
    output: BoundedQueue<Envelope<unknown>>,
    turn: Promise<void> | undefined,
  ): Promise<void> {
    stats.in += batch.reduce((n, e) => (e.ticket.replay ? n : n + 1), 0);
    const started = performance.now();
    // The operator is called before the first await, so calls start in input order (operators rely on it).
    const outcomes = await this.callOperator(op, ctx, batch);
    stats.busyMs += performance.now() - started;
    if (this.hardStop.signal.aborted) throw new Cancelled();
    if (outcomes.length !== batch.length) {
      throw new LedgerError(
        `stage ${op.name} returned ${outcomes.length} outcomes for ${batch.length} records`,
      );
    }
    if (turn !== undefined) await turn;
    if (this.hardStop.signal.aborted) throw new Cancelled();
    for (let i = 0; i < batch.length; i++) {
      const { ticket } = batch[i]!;
      const outcome = outcomes[i]!;
      if (ticket.replay) {
        // Replayed rows only rebuild operator state; what they yield goes on for the next stateful stage.
        increment(stats.counters, 'replayed');
        if (outcome.kind === 'emit') for (const value of outcome.values) await output.push({ ticket, value });
        continue;
      }
      if (outcome.kind === 'emit' && outcome.values.length > 0) {
        stats.passed += 1;
        stats.out += outcome.values.length;
        this.ledger.fanOut(ticket, outcome.values.length);
        for (const value of outcome.values) await output.push({ ticket, value });
      } else if (outcome.kind === 'fail') {
        if (isFatal(outcome.error)) throw outcome.error;
        this.recordFailure(stats, ticket, outcome.error);
      } else {
        const reason = outcome.kind === 'drop' ? outcome.reason : 'no_output';
        increment(stats.dropped, reason);
        this.ledger.dropped(
          ticket,
          op.name,
          reason,
          outcome.kind === 'drop' ? outcome.duplicateOf : undefined,
        );
      }
    }
  }

  /** Runs the operator; an exception fails the records it was given, never the run. */
  private async callOperator(
    op: RecordOperator<unknown, unknown> | BatchOperator<unknown, unknown>,
    ctx: OperatorContext,
    batch: ReadonlyArray<Envelope<unknown>>,
  ): Promise<ReadonlyArray<Outcome<unknown>>> {
    try {
      if (isBatchOperator(op))
        return await op.processBatch(
          batch.map((e) => e.value),
          ctx,
        );
      return [await op.process(batch[0]!.value, ctx)];
    } catch (error) {
      if (error instanceof LedgerError || isFatal(error)) throw error;
      return batch.map(() => ({ kind: 'fail', error }) as const);
    }
  }

  private async runSink(): Promise<void> {
    const input = this.queues[this.queues.length - 1]!;
    try {
      for (;;) {
        const batch = await input.take(1);
        if (batch === null) break;
        for (const { ticket, value } of batch) {
          if (ticket.replay) continue;
          this.sinkStats.in += 1;
          const started = performance.now();
          try {
            await this.sink.write(value, ticket);
          } catch (error) {
            // A row that does not fit the output schema fails that record, not the run.
            if (!(error instanceof AirError && error.code === 'AIR_ROW_INVALID')) throw error;
            this.recordFailure(this.sinkStats, ticket, error);
          }
          this.sinkStats.busyMs += performance.now() - started;
        }
      }
    } catch (error) {
      if (!(error instanceof Cancelled)) throw error;
    }
  }

  /** Source, operators and sink, in order; the source's counts come from the ledger. */
  private allStages(): StageStats[] {
    const totals = this.ledger.totals();
    const source = this.sourceStats;
    source.in = totals.read;
    source.passed = source.out;
    const prefix = `${source.name}:`;
    source.dropped = {};
    for (const [key, n] of Object.entries(totals.dropped)) {
      if (key.startsWith(prefix)) source.dropped[key.slice(prefix.length)] = n;
    }
    return [source, ...this.stats, this.sinkStats];
  }

  private recordFailure(stats: StageStats, ticket: Ticket, error: unknown): void {
    const kind = errorKind(error);
    increment(stats.failed, kind);
    this.ledger.failed(ticket, stats.name, kind, errorMessage(error));
    this.options.onFailure?.({
      shard: ticket.tally.shard,
      row: ticket.row,
      stage: stats.name,
      kind,
      message: errorMessage(error),
      error,
    });
    this.checkFailureRate();
    if (this.loggedFailures++ < LOGGED_FAILURES) {
      this.options.log(
        `record failed: ${ticket.tally.shard} row ${ticket.row}, stage ${stats.name}: ${kind}: ${errorMessage(error)}`,
      );
    }
  }

  private onCommit(tickets: readonly Ticket[]): void {
    this.sinkStats.out += tickets.length;
    this.sinkStats.passed += tickets.length;
    for (const ticket of tickets) this.ledger.written(ticket);
  }

  private assertStagesBalanced(interrupted: boolean): void {
    for (const s of this.stats) {
      const settled = s.passed + sumValues(s.dropped) + sumValues(s.failed);
      if (settled !== s.in && !interrupted) {
        throw new LedgerError(`stage ${s.name}: ${s.in} records in but ${settled} settled`);
      }
    }
    const sink = this.sinkStats;
    if (sink.in !== sink.out + sumValues(sink.failed)) {
      throw new LedgerError(
        `sink ${sink.name}: ${sink.in} rows in but ${sink.out} committed and ${sumValues(sink.failed)} failed`,
      );
    }
  }
}
