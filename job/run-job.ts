import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AccountingSnapshot } from '../llm/accounting.js';
import type { ScoredExample } from '../operators/air/types.js';
import { exactDedupe } from '../operators/dedupe/exact-dedupe.js';
import { createMinHashPool, nearDedupe } from '../operators/dedupe/near-dedupe.js';
import { lengthFilter } from '../operators/length-filter.js';
import { DropNotesFile } from '../pipeline/io/drop-notes.js';
import type { WorkerPool } from '../pipeline/pool/worker-pool.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { peakRssMB } from '../pipeline/memory.js';
import { ParquetSink, type CommittedPart } from '../pipeline/io/parquet-sink.js';
import { ParquetSource } from '../pipeline/io/parquet-source.js';
import { resolveShards } from '../pipeline/io/shards.js';
import { pipeline, type PipelineRun, type RunReport } from '../pipeline/run.js';
import { airRow, airTable } from '../schemas/air.js';
import { documentRow, documentsTable, type Document } from '../schemas/documents.js';
import { appendAirStages } from './air-graph.js';
import type { RunConfig } from './config.js';
import { configFingerprint } from './fingerprint.js';
import { setUpLlm, type LlmSetup } from './llm.js';

export interface JobOptions {
  /** Aborting stops reading input; in-flight records finish within engine.graceSeconds. */
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Called once the run is built, before it starts: for progress displays. */
  onStart?: (run: PipelineRun) => void;
  /** Where API keys are read from (the config names the variables). */
  env?: NodeJS.ProcessEnv;
}

export interface JobResult {
  report: RunReport;
  parts: CommittedPart[];
  /** Where the run's ledger and stage counters were written. */
  ledgerFile: string;
  /** LLM calls, tokens, latency and cost per role and model (method `air` only). */
  llm?: LlmUsage;
}

export interface LlmUsage {
  accounting: AccountingSnapshot;
  cache: { hits: number; misses: number };
  promptVersion: string;
}

export const LEDGER_FILE = 'ledger.json';
/** One JSON line per record removed as a duplicate, naming the record it duplicates. */
export const DUPLICATES_FILE = 'duplicates.jsonl';

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
    });
    const meta = await source.metaColumnTypes();
    const writer = {
      dir: config.output,
      partRows: config.writer.partRows,
      partBytes: config.writer.partMB * 1024 * 1024,
      rowGroupRows: config.writer.rowGroupRows,
      rowGroupBytes: config.writer.rowGroupMB * 1024 * 1024,
      compression: config.writer.compression,
    };
    await mkdir(config.output, { recursive: true });
    const runOptions = {
      queueCapacity: config.engine.queueCapacity,
      graceMs: config.engine.graceSeconds * 1000,
      signal: options.signal,
      log: options.log,
      dropNotes: new DropNotesFile(path.join(config.output, DUPLICATES_FILE)),
    };
    const dedupe = config.dedupe;
    const wantsPool = dedupe.near.enabled || (config.method === 'air' && dedupe.instructions.enabled);
    if (wantsPool) pool = createMinHashPool(config.engine.workerThreads);
    let documents = pipeline(source).pipe(lengthFilter<Document>(config.filter));
    if (dedupe.exact) {
      documents = documents.pipe(exactDedupe<Document>({ textOf: (d) => d.text, idOf: (d) => d.id }));
    }
    if (dedupe.near.enabled) {
      const { enabled: _enabled, ...near } = dedupe.near;
      documents = documents.pipe(
        nearDedupe<Document>({ ...near, textOf: (d) => d.text, idOf: (d) => d.id, pool: pool! }),
      );
    }

    let run: PipelineRun;
    let sink: ParquetSink<Document> | ParquetSink<ScoredExample>;
    let promptVersion = '';
    if (config.method === 'documents') {
      const documentSink = new ParquetSink<Document>({
        ...writer,
        schema: documentsTable(meta),
        toRow: documentRow,
      });
      sink = documentSink;
      run = documents.into(documentSink, runOptions);
    } else {
      llm = await setUpLlm(config.llm, config.output, options.env, options.log);
      const air = appendAirStages(documents, llm.client, config.air);
      promptVersion = air.promptVersion;
      let examples = air.pipeline;
      if (dedupe.instructions.enabled) {
        // First to arrive is kept: which of two near-identical instructions survives depends on timing.
        examples = examples.pipe(
          nearDedupe<ScoredExample>({
            name: 'instruction_dedupe',
            threshold: dedupe.instructions.threshold,
            textOf: (e) => e.instruction,
            idOf: (e) => `${e.doc.id}@${e.depth}`,
            pool: pool!,
          }),
        );
      }
      const provenance = {
        guidanceModel: llm.models.guidance,
        studentModel: llm.models.student,
        promptVersion,
        configFingerprint: configFingerprint(config),
      };
      const airSink = new ParquetSink<ScoredExample>({
        ...writer,
        schema: airTable(meta),
        toRow: (example) => airRow(example, provenance),
      });
      sink = airSink;
      run = examples.into(airSink, runOptions);
    }
    options.onStart?.(run);
    const report = await run.run();
    const usage: LlmUsage | undefined =
      llm === undefined
        ? undefined
        : { accounting: llm.accounting.snapshot(), cache: llm.cache.stats(), promptVersion };
    const ledgerFile = await writeLedger(config, report, sink.parts, usage);
    return { report, parts: sink.parts, ledgerFile, llm: usage };
  } finally {
    await pool?.close();
    await llm?.close();
    db.closeSync();
  }
}

async function writeLedger(
  config: RunConfig,
  report: RunReport,
  parts: CommittedPart[],
  llm: LlmUsage | undefined,
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
    parts: parts.map((p) => ({ file: path.basename(p.file), rows: p.rows })),
    llm,
    configFingerprint: configFingerprint(config),
    config,
  };
  const temporary = `${file}.tmp`;
  await writeFile(temporary, `${JSON.stringify(body, null, 2)}\n`);
  await rename(temporary, file);
  return file;
}
