import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AccountingSnapshot } from '../llm/accounting.js';
import type { DownloadProgress } from '../llm/model-files.js';
import type { ScoredExample } from '../operators/air/types.js';
import { exactDedupe } from '../operators/dedupe/exact-dedupe.js';
import { uniqueIds } from '../operators/dedupe/unique-ids.js';
import { createMinHashPool, nearDedupe } from '../operators/dedupe/near-dedupe.js';
import { lengthFilter } from '../operators/length-filter.js';
import { diversitySelect } from '../operators/sample/diversity-select.js';
import type { Embedder } from '../llm/embedder.js';
import { hashingEmbedder } from '../operators/sample/options.js';
import { rateSample, reservoirSample } from '../operators/sample/pre-sample.js';
import { qualityFilter } from '../operators/sample/quality-filters.js';
import { Accounting } from '../llm/accounting.js';
import { EmbeddingsClient, resolveEmbeddingsEndpoint } from '../llm/embeddings.js';
import { availableParallelism } from 'node:os';
import { DropNotesFile } from '../pipeline/io/drop-notes.js';
import { FailureRows } from '../pipeline/io/failure-rows.js';
import { readManifest } from '../pipeline/io/manifest.js';
import type { Settlement } from '../pipeline/ledger.js';
import { countRows } from '../pipeline/row-ranges.js';
import { Checkpointer, openOutput } from './checkpoint.js';
import { writeRunStats } from '../report/run-stats.js';
import { DUPLICATES_FILE, LEDGER_FILE } from '../report/stats/ledger-file.js';
import { StatsCollector } from '../report/stats/collector.js';
import type { TableSchema } from '../schemas/types.js';
import { errorMessage } from '../pipeline/errors.js';
import type { WorkerPool } from '../pipeline/pool/worker-pool.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { peakRssMB } from '../pipeline/memory.js';
import { ParquetSink, type CommittedPart } from '../pipeline/io/parquet-sink.js';
import { ParquetSource } from '../pipeline/io/parquet-source.js';
import { resolveShards } from '../pipeline/io/shards.js';
import {
  pipeline,
  type Pipeline,
  type PipelineRun,
  type RecordFailure,
  type RunReport,
} from '../pipeline/run.js';
import { airTable } from '../schemas/air.js';
import { airRow } from './air-row.js';
import { documentRow, documentsTable, type Document } from '../schemas/documents.js';
import { appendAirStages } from './air-graph.js';
import type { RunConfig } from './config.js';
import { configFingerprint } from './fingerprint.js';
import { resolveLocalModels, setUpLlm, type LlmSetup } from './llm.js';
import { writtenInstructions } from './written-instructions.js';

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
}

export interface JobResult {
  report: RunReport;
  /** Every committed part of the output folder. */
  parts: readonly PartEntry[];
  /** Where the run's ledger and stage counters were written. */
  ledgerFile: string;
  /** Model calls, tokens, latency and cost per role and model (method `air`, or embeddings in any method). */
  llm?: LlmUsage;
}

export interface LlmUsage {
  accounting: AccountingSnapshot;
  cache: { hits: number; misses: number };
  promptVersion: string;
}

/**
 * The job: read Parquet shards → length filter → (method `air`) generate → refine → merge → filter → score →
 * write Parquet parts. Writes `ledger.json` beside the parts whatever the outcome, so a failed or interrupted run
 * still says where every row went.
 */
export async function runJob(config: RunConfig, options: JobOptions = {}): Promise<JobResult> {
  const shards = await resolveShards(config.input);
  const db = await openDuckDB({
    threads: config.engine.duckdbThreads,
    memoryLimit: `${config.engine.duckdbMemoryMB}MB`,
  });
  let llm: LlmSetup | undefined;
  let pool: WorkerPool | undefined;
  try {
    const source = new ParquetSource(db, {
      shards,
      textColumn: config.source.textColumn,
      idColumn: config.source.idColumn,
      metaColumns: config.source.metaColumns,
      binaryAsString: config.source.binaryAsString,
      limit: config.source.limit,
      maxDocumentBytes: Math.floor(config.source.maxDocumentMB * 1024 * 1024),
      maxRowGroupTextBytes: config.engine.duckdbMemoryMB * 1024 * 1024,
      badRecords: config.source.badRecords,
    });
    // Every shard's footer and columns are checked first: bad input fails before a model download or output.
    const meta = await source.metaColumnTypes();
    // Every model is found or downloaded before any row is read: a model that cannot be had fails at once.
    if (config.method === 'air') {
      await resolveLocalModels(config.llm, { signal: options.signal, onDownload: options.onDownload });
    }
    await mkdir(config.output, { recursive: true });
    const start = await openOutput(config, shards, options.force === true);
    if (start.complete) {
      options.log?.(`${config.output}: this run is already complete; nothing to do`);
      return await previousResult(config);
    }
    if (start.resumed) {
      const done = [...start.settled.values()].reduce((n, r) => n + countRows(r), 0);
      options.log?.(
        `${config.output}: resuming an interrupted run; ${done.toLocaleString('en-US')} input rows are done`,
      );
    }
    const failures = new FailureRows(config.output, start.nextFailedPart);
    const notes = new DropNotesFile(path.join(config.output, DUPLICATES_FILE), start.notesBytes);
    const checkpointer = new Checkpointer(start.log, failures, () => notes.checkpoint());
    // Stages that remember what they saw (dedupe) must see the settled rows again to decide as before.
    source.continueFrom(start.settled, start.resumed);
    // Statistics are collected from each row as it is written: no second pass over the output.
    const stats = new StatsCollector({ kind: config.method });
    let table: TableSchema;
    const writer = {
      dir: config.output,
      partRows: config.writer.partRows,
      partBytes: config.writer.partMB * 1024 * 1024,
      rowGroupRows: config.writer.rowGroupRows,
      rowGroupBytes: config.writer.rowGroupMB * 1024 * 1024,
      compression: config.writer.compression,
      partMs: config.writer.partSeconds * 1000,
      firstPart: start.resumed ? start.nextPart : undefined,
      afterCommit: (part: CommittedPart) => checkpointer.commit(part),
    };
    const runOptions = {
      queueCapacity: config.engine.queueCapacity,
      graceMs: config.engine.graceSeconds * 1000,
      signal: options.signal,
      log: options.log,
      dropNotes: notes,
      onSettle: (settlement: Settlement) => checkpointer.settle(settlement),
      onFailure: (failure: RecordFailure) => failures.add(failure),
      maxFailureRate: config.engine.maxFailureRate,
      minRowsForFailureRate: config.engine.minRowsForFailureRate,
    };
    const dedupe = config.dedupe;
    const wantsPool = dedupe.near.enabled || (config.method === 'air' && dedupe.instructions.enabled);
    if (wantsPool) pool = createMinHashPool(config.engine.workerThreads);
    let documents = pipeline(source)
      .pipe(lengthFilter<Document>(config.filter))
      .pipe(qualityFilter<Document>(config.sample.quality));
    if (dedupe.ids) documents = documents.pipe(uniqueIds<Document>((d) => d.id));
    if (dedupe.exact) {
      documents = documents.pipe(exactDedupe<Document>({ textOf: (d) => d.text, idOf: (d) => d.id }));
    }
    if (dedupe.near.enabled) {
      const { enabled: _enabled, ...near } = dedupe.near;
      documents = documents.pipe(
        nearDedupe<Document>({ ...near, textOf: (d) => d.text, idOf: (d) => d.id, pool: pool! }),
      );
    }

    // One account for every model call of the run: chat calls and the diversity stage's embedding calls.
    const accounting = new Accounting(config.llm.prices);
    documents = appendSampling(documents, config, options.env, accounting);
    let run: PipelineRun;
    let promptVersion = '';
    if (config.method === 'documents') {
      const documentSink = new ParquetSink<Document>({
        ...writer,
        schema: (table = documentsTable(meta)),
        toRow: (doc) => stats.row(documentRow(doc)),
      });
      run = documents.into(documentSink, runOptions);
    } else {
      llm = await setUpLlm(config.llm, config.output, options.env, options.log, accounting);
      const air = appendAirStages(documents, llm.client, config.air);
      promptVersion = air.promptVersion;
      let examples = air.pipeline;
      if (dedupe.instructions.enabled) {
        // First to arrive is kept: which of two near-identical instructions survives depends on timing.
        const instructionDedupe = nearDedupe<ScoredExample>({
          name: 'instruction_dedupe',
          replay: false,
          threshold: dedupe.instructions.threshold,
          textOf: (e) => e.instruction,
          idOf: (e) => `${e.doc.id}@${e.depth}`,
          pool: pool!,
        });
        if (start.resumed) {
          // Replays never reach LLM stages, so this stage learns the rows written before from the parts.
          const parts = (await committedParts(config.output)).map((p) => p.file);
          const signal = options.signal ?? new AbortController().signal;
          try {
            await instructionDedupe.prime(writtenInstructions(db, config.output, parts), signal);
            options.log?.(`instruction dedupe: ${instructionDedupe.kept} written instructions indexed`);
          } catch (error) {
            // Stopped while priming: the run below sees the same signal and reports itself interrupted.
            if (!signal.aborted) throw error;
          }
        }
        examples = examples.pipe(instructionDedupe);
      }
      const provenance = {
        guidanceModel: llm.models.guidance,
        studentModel: llm.models.student,
        promptVersion,
        configFingerprint: configFingerprint(config),
      };
      const airSink = new ParquetSink<ScoredExample>({
        ...writer,
        schema: (table = airTable(meta)),
        toRow: (example) => stats.row(airRow(example, provenance)),
      });
      run = examples.into(airSink, runOptions);
    }
    run.ledger.restore(start.tallies);
    options.onStart?.(run);
    const ticker = setInterval(() => {
      checkpointer
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
    await checkpointer.commit(null);
    if (report.status === 'completed') await checkpointer.complete();
    const account = accounting.snapshot();
    const usage: LlmUsage | undefined =
      llm !== undefined
        ? { accounting: account, cache: llm.cache.stats(), promptVersion }
        : account.entries.length > 0
          ? { accounting: account, cache: { hits: 0, misses: 0 }, promptVersion: '' }
          : undefined;
    const parts = await committedParts(config.output);
    const ledgerFile = await writeLedger(config, report, parts, usage, failures.rowsWritten);
    try {
      await writeRunStats(config.output, {
        stats,
        report,
        llm: usage,
        schema: table!,
        config,
        configFingerprint: configFingerprint(config),
        resumed: start.resumed,
      });
    } catch (error) {
      // The report describes the run; failing to write it must not fail a run whose rows are committed.
      options.log?.(`stats: ${errorMessage(error)}`);
    }
    return { report, parts, ledgerFile, llm: usage };
  } finally {
    await pool?.close();
    await llm?.close();
    db.closeSync();
  }
}

async function writeLedger(
  config: RunConfig,
  report: RunReport,
  parts: readonly PartEntry[],
  llm: LlmUsage | undefined,
  failureRows: number,
): Promise<string> {
  await mkdir(config.output, { recursive: true });
  const file = path.join(config.output, LEDGER_FILE);
  const usage = process.resourceUsage();
  const body = {
    air: 'ledger',
    version: 1,
    finishedAt: new Date().toISOString(),
    ...report,
    // Whole-process figures: what a user sizes machines by.
    resources: {
      peakRssMB: peakRssMB(),
      userCpuMs: Math.round(usage.userCPUTime / 1000),
      systemCpuMs: Math.round(usage.systemCPUTime / 1000),
    },
    parts,
    failureRows,
    llm,
    configFingerprint: configFingerprint(config),
    config,
  };
  const temporary = `${file}.tmp`;
  await writeFile(temporary, `${JSON.stringify(body, null, 2)}\n`);
  await rename(temporary, file);
  return file;
}

export interface PartEntry {
  readonly file: string;
  readonly rows: number;
}

/** Every part the folder's manifest records, this run's and those of the runs it continued. */
async function committedParts(dir: string): Promise<PartEntry[]> {
  const manifest = await readManifest(dir);
  return (manifest?.commits ?? [])
    .filter((c) => c.part !== null)
    .map((c) => ({ file: c.part!, rows: c.rows }));
}

/** The result of a run that had already completed, from its ledger. */
async function previousResult(config: RunConfig): Promise<JobResult> {
  const ledgerFile = path.join(config.output, LEDGER_FILE);
  const ledger = JSON.parse(await readFile(ledgerFile, 'utf8')) as RunReport & {
    parts: PartEntry[];
    llm?: LlmUsage;
  };
  const report: RunReport = {
    status: ledger.status,
    wallMs: 0,
    stages: ledger.stages,
    shards: ledger.shards,
    totals: ledger.totals,
    failureSamples: ledger.failureSamples,
    dropNotes: ledger.dropNotes,
  };
  return { report, parts: ledger.parts, ledgerFile, llm: ledger.llm };
}

/**
 * The method's pre-sample and diversity selection, after dedupe. Diversity selection is a blocking stage and off
 * by default; its vectors come from the hashing vectorizer, or from an embeddings endpoint when one is set.
 */
function appendSampling(
  documents: Pipeline<Document>,
  config: RunConfig,
  env: NodeJS.ProcessEnv | undefined,
  accounting: Accounting,
): Pipeline<Document> {
  const { preSample: pre, diversity } = config.sample;
  let out = documents;
  if (pre.mode === 'rate') out = out.pipe(rateSample<Document>({ rate: pre.rate, seed: pre.seed }));
  if (pre.mode === 'reservoir')
    out = out.pipe(reservoirSample<Document>({ perShard: pre.perShard, seed: pre.seed }));
  if (!diversity.enabled) return out;
  const threads = config.engine.workerThreads ?? availableParallelism();
  const embedder: Embedder =
    diversity.embeddings === undefined
      ? hashingEmbedder(
          { dimensions: diversity.dimensions, bigrams: diversity.bigrams, seed: diversity.seed },
          'pool',
          Math.max(1, threads - 1),
        )
      : new EmbeddingsClient(resolveEmbeddingsEndpoint(diversity.embeddings, env), { recorder: accounting });
  // The operator owns the embedder and closes it when the run ends.
  return out.pipe(
    diversitySelect<Document>({ keep: diversity.keep, seed: diversity.seed, threads, embedder }),
  );
}
