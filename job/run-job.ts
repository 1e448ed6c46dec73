import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBInstance } from '@duckdb/node-api';
import { Accounting } from '../llm/accounting.js';
import type { DownloadProgress } from '../llm/model-files.js';
import type { StageSteps } from '../operators/air/steps.js';
import type { ScoredExample } from '../operators/air/types.js';
import { createMinHashPool } from '../operators/dedupe/near-dedupe.js';
import { errorMessage } from '../pipeline/errors.js';
import { pathExists } from '../pipeline/io/files.js';
import { DropNotesFile } from '../pipeline/io/drop-notes.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { FailureRows } from '../pipeline/io/failure-rows.js';
import type { MetaColumnType } from '../schemas/documents.js';
import { ParquetSink, type CommittedPart, type ParquetSinkOptions } from '../pipeline/io/parquet-sink.js';
import type { ParquetSource } from '../pipeline/io/parquet-source.js';
import { resolveShards, type Shard } from '../pipeline/io/shards.js';
import type { Settlement } from '../pipeline/ledger.js';
import { countRows } from '../pipeline/row-ranges.js';
import {
  pipeline,
  type PipelineOptions,
  type PipelineRun,
  type RecordFailure,
  type RunReport,
} from '../pipeline/run.js';
import { writeRunStats } from '../report/run-stats.js';
import { StatsCollector } from '../report/stats/collector.js';
import { DUPLICATES_FILE, LEDGER_FILE } from '../report/stats/ledger-file.js';
import { airTable } from '../schemas/air.js';
import { documentRow, documentsTable, type Document } from '../schemas/documents.js';
import type { TableSchema } from '../schemas/types.js';
import { airRow } from './air-row.js';
import { Checkpointer, openOutput, type StartingPoint } from './checkpoint.js';
import type { RunConfig } from './config.js';
import { configFingerprint } from './fingerprint.js';
import { resolveLocalModels, setUpLlm, type LlmSetup } from './llm.js';
import { committedParts, previousResult, writeLedger, type JobResult, type LlmUsage } from './run-ledger.js';
import { isObjectUrl } from '../pipeline/io/object-store/url.js';
import { RemoteOutput } from './remote-output.js';
import { useStorage } from './storage.js';
import { appendAirStages, instructionDedupeStage } from './stages/air-stages.js';
import { documentStages, type DocumentStage } from './stages/document-stages.js';
import { parquetSource } from './stages/source.js';
import { writtenInstructions } from './written-instructions.js';

export type { JobResult, LlmUsage, PartEntry } from './run-ledger.js';

export interface JobOptions {
  /** Aborting stops reading input; in-flight records finish within engine.graceSeconds. */
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Called once the run is built, before it starts: for progress displays. */
  onStart?: (run: PipelineRun) => void;
  /** Where API keys are read from (the config names the variables). */
  env?: NodeJS.ProcessEnv;
  /** Resume an interrupted run even though settings that decide results differ. */
  force?: boolean;
  /** Progress of a model file being downloaded before the run starts (`local:` model URIs not cached yet). */
  onDownload?: (progress: DownloadProgress) => void;
  /**
   * The input already resolved, in place of resolving `config.input`: a rank's shards from its plan, under the
   * plan's labels (ids and drop lists are keyed by label, and a rank's own listing could label them otherwise).
   */
  shards?: readonly Shard[];
  /** Stage 0's dedupe steps, replacing unique_ids/exact_dedupe/near_dedupe (a rank's global dedupe). */
  dedupeStages?: readonly DocumentStage[];
}

/** The output folder opened for writing: where the run starts, and what records drops and failures. */
interface OpenOutput {
  readonly start: StartingPoint;
  readonly failures: FailureRows;
  readonly notes: DropNotesFile;
  readonly checkpointer: Checkpointer;
}

/** A run put together and ready to start, with what its end needs. */
interface BuiltRun {
  readonly run: PipelineRun;
  readonly table: TableSchema;
  readonly stats: StatsCollector;
  readonly accounting: Accounting;
  readonly llm: LlmSetup | undefined;
  readonly promptVersion: string;
  readonly callLayout?: readonly StageSteps[];
}

/** What a run holds open until it ends, closed in reverse order. */
type Closer = () => Promise<void> | void;

/**
 * The job, in phases: check the input's footers, find every model, open (or resume) the output folder, build
 * the stage list (stage 0, then for method `air` generate → refine → merge → filter → score → instruction
 * dedupe), run it with checkpoints, and write the ledger and stats. `ledger.json` is written whatever the
 * outcome, so a failed or interrupted run still says where every row went.
 */
export async function runJob(asGiven: RunConfig, options: JobOptions = {}): Promise<JobResult> {
  useStorage(asGiven);
  const shards = options.shards ?? (await resolveShards(asGiven.input));
  // An s3:// output: the run writes a local folder, uploaded as it commits (remote-output.ts).
  const remote = isObjectUrl(asGiven.output) ? await RemoteOutput.open(asGiven, options.log) : undefined;
  const config: RunConfig = remote === undefined ? asGiven : { ...asGiven, output: remote.localDir };
  const db = await openDuckDB({
    threads: config.engine.duckdbThreads,
    memoryLimit: `${config.engine.duckdbMemoryMB}MB`,
  });
  const closers: Closer[] = [() => db.closeSync()];
  try {
    const source = parquetSource(db, config, shards);
    // Every shard's footer and columns are checked first: bad input fails before a model download or output.
    const meta = await source.metaColumnTypes();
    // Every model is found or downloaded before any row is read: a model that cannot be had fails at once.
    if (config.method === 'air') {
      await resolveLocalModels(config.llm, { signal: options.signal, onDownload: options.onDownload });
    }
    const output = await openRunOutput(config, shards, options, remote);
    if (output === undefined) return await previousResult(config);
    // Stages that remember what they saw (dedupe) must see the settled rows again to decide as before.
    source.continueFrom(output.start.settled, output.start.resumed);
    const built = await buildRun({ db, config, source, meta, output, options, closers });
    const report = await runWithCheckpoints(built.run, output, config, options);
    const result = await finishRun(config, report, built, output, options);
    await remote?.finish();
    return result;
  } finally {
    for (const close of closers.reverse()) await close();
  }
}

/** Opens the output folder, or resumes the interrupted run in it; undefined when that run had completed. */
async function openRunOutput(
  config: RunConfig,
  shards: readonly Shard[],
  options: JobOptions,
  remote: RemoteOutput | undefined,
): Promise<OpenOutput | undefined> {
  await mkdir(config.output, { recursive: true });
  const start = await openOutput(config, shards, options.force === true);
  if (start.complete) {
    if (await pathExists(path.join(config.output, LEDGER_FILE))) {
      options.log?.(`${config.output}: this run is already complete; nothing to do`);
      return undefined;
    }
    // Stopped between the manifest's end mark and the ledger (a kill): run again over no rows to write it.
    options.log?.(`${config.output}: the run completed but its ledger.json was never written; writing it`);
  }
  if (start.resumed) {
    const done = [...start.settled.values()].reduce((n, r) => n + countRows(r), 0);
    options.log?.(
      `${config.output}: resuming an interrupted run; ${done.toLocaleString('en-US')} input rows are done`,
    );
  }
  const failures = new FailureRows(config.output, start.nextFailedPart);
  const notes = new DropNotesFile(path.join(config.output, DUPLICATES_FILE), start.notesBytes);
  const checkpointer = new Checkpointer(start.log, failures, () => notes.checkpoint(), remote?.onEntry);
  return { start, failures, notes, checkpointer };
}

interface BuildContext {
  readonly db: DuckDBInstance;
  readonly config: RunConfig;
  readonly source: ParquetSource;
  readonly meta: Readonly<Record<string, MetaColumnType>>;
  readonly output: OpenOutput;
  readonly options: JobOptions;
  readonly closers: Closer[];
}

/** The stage list, source to sink: stage 0 for every method, then the method's own stages and sink. */
async function buildRun(ctx: BuildContext): Promise<BuiltRun> {
  const { config, closers } = ctx;
  // One account for every model call of the run: chat calls and the diversity stage's embedding calls.
  const accounting = new Accounting(config.llm.prices);
  const pool = needsMinHashPool(config, ctx.options)
    ? createMinHashPool(config.engine.workerThreads)
    : undefined;
  if (pool !== undefined) closers.push(() => pool.close());
  const stages = documentStages(config, {
    pool,
    accounting,
    env: ctx.options.env,
    dedupeStages: ctx.options.dedupeStages,
  });
  const documents = pipeline(ctx.source).through(stages);
  // Statistics are collected from each row as it is written: no second pass over the output.
  const stats = new StatsCollector({ kind: config.method });
  if (config.method === 'documents') {
    const table = documentsTable(ctx.meta);
    const sink = new ParquetSink<Document>({
      ...sinkOptions(ctx),
      schema: table,
      toRow: (doc) => stats.row(documentRow(doc)),
    });
    const run = documents.into(sink, pipelineOptions(ctx));
    return { run, table, stats, accounting, llm: undefined, promptVersion: '' };
  }
  const llm = await setUpLlm(config.llm, config.output, ctx.options.env, ctx.options.log, accounting);
  closers.push(() => llm.close());
  const air = appendAirStages(documents, llm.client, config.air);
  let examples = air.pipeline;
  if (config.dedupe.instructions.enabled) {
    const written = ctx.output.start.resumed
      ? writtenInstructions(
          ctx.db,
          config.output,
          (await committedParts(config.output)).map((p) => p.file),
        )
      : undefined;
    examples = examples.pipe(
      await instructionDedupeStage(config.dedupe.instructions.threshold, pool!, written, ctx.options),
    );
  }
  const provenance = {
    guidanceModel: llm.models.guidance,
    studentModel: llm.models.student,
    promptVersion: air.promptVersion,
    configFingerprint: configFingerprint(config),
  };
  const table = airTable(ctx.meta);
  const sink = new ParquetSink<ScoredExample>({
    ...sinkOptions(ctx),
    schema: table,
    toRow: (example) => stats.row(airRow(example, provenance)),
  });
  const run = examples.into(sink, pipelineOptions(ctx));
  return { run, table, stats, accounting, llm, promptVersion: air.promptVersion, callLayout: air.layout };
}

function needsMinHashPool(config: RunConfig, options: JobOptions): boolean {
  const dedupe = config.dedupe;
  // Replaced dedupe steps (a rank's drop lists) sign nothing; instruction dedupe still does.
  const nearInStage0 = dedupe.near.enabled && options.dedupeStages === undefined;
  return nearInStage0 || (config.method === 'air' && dedupe.instructions.enabled);
}

/** The part writer's settings; every committed part is checkpointed with the rows it settled. */
function sinkOptions({ config, output }: BuildContext): Omit<ParquetSinkOptions<never>, 'schema' | 'toRow'> {
  return {
    dir: config.output,
    partRows: config.writer.partRows,
    partBytes: config.writer.partMB * 1024 * 1024,
    rowGroupRows: config.writer.rowGroupRows,
    rowGroupBytes: config.writer.rowGroupMB * 1024 * 1024,
    compression: config.writer.compression,
    partMs: config.writer.partSeconds * 1000,
    firstPart: output.start.resumed ? output.start.nextPart : undefined,
    afterCommit: (part: CommittedPart) => output.checkpointer.commit(part),
  };
}

function pipelineOptions({ config, output, options }: BuildContext): PipelineOptions {
  return {
    queueCapacity: config.engine.queueCapacity,
    graceMs: config.engine.graceSeconds * 1000,
    signal: options.signal,
    log: options.log,
    dropNotes: output.notes,
    onSettle: (settlement: Settlement) => output.checkpointer.settle(settlement),
    onFailure: (failure: RecordFailure) => output.failures.add(failure),
    maxFailureRate: config.engine.maxFailureRate,
    minRowsForFailureRate: config.engine.minRowsForFailureRate,
  };
}

/** Runs to the end, checkpointing drops and failures every engine.checkpointSeconds; marks a finished run. */
async function runWithCheckpoints(
  run: PipelineRun,
  output: OpenOutput,
  config: RunConfig,
  options: JobOptions,
): Promise<RunReport> {
  run.ledger.restore(output.start.tallies);
  options.onStart?.(run);
  const ticker = setInterval(() => {
    output.checkpointer
      .commit(null)
      .catch((error: unknown) => options.log?.(`checkpoint failed: ${String(error)}`));
  }, config.engine.checkpointSeconds * 1000);
  let report: RunReport;
  try {
    report = await run.run();
  } finally {
    clearInterval(ticker);
  }
  // Drops and failures settled after the last part, then (when every row is settled) the end mark.
  await output.checkpointer.commit(null);
  if (report.status === 'completed') await output.checkpointer.complete();
  return report;
}

/** Writes the ledger and the stats (report, card) and returns what the run did. */
async function finishRun(
  config: RunConfig,
  report: RunReport,
  built: BuiltRun,
  output: OpenOutput,
  options: JobOptions,
): Promise<JobResult> {
  const account = built.accounting.snapshot();
  const usage: LlmUsage | undefined =
    built.llm !== undefined
      ? {
          accounting: account,
          cache: built.llm.cache.stats(),
          promptVersion: built.promptVersion,
          callLayout: built.callLayout,
        }
      : account.entries.length > 0
        ? { accounting: account, cache: { hits: 0, misses: 0 }, promptVersion: '' }
        : undefined;
  const parts = await committedParts(config.output);
  const ledgerFile = await writeLedger(config, report, parts, usage, output.failures.rowsWritten);
  try {
    await writeRunStats(config.output, {
      stats: built.stats,
      report,
      llm: usage,
      schema: built.table,
      config,
      configFingerprint: configFingerprint(config),
      resumed: output.start.resumed,
    });
  } catch (error) {
    // The report describes the run; failing to write it must not fail a run whose rows are committed.
    options.log?.(`stats: ${errorMessage(error)}`);
  }
  return { report, parts, ledgerFile, llm: usage };
}
