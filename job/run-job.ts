import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { lengthFilter } from '../operators/length-filter.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { peakRssMB } from '../pipeline/memory.js';
import { ParquetSink, type CommittedPart } from '../pipeline/io/parquet-sink.js';
import { ParquetSource } from '../pipeline/io/parquet-source.js';
import { resolveShards } from '../pipeline/io/shards.js';
import { pipeline, type PipelineRun, type RunReport } from '../pipeline/run.js';
import { documentRow, documentsTable, type Document } from '../schemas/documents.js';
import type { RunConfig } from './config.js';

export interface JobOptions {
  /** Aborting stops reading input; in-flight records finish within engine.graceSeconds. */
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Called once the run is built, before it starts: for progress displays. */
  onStart?: (run: PipelineRun) => void;
}

export interface JobResult {
  report: RunReport;
  parts: CommittedPart[];
  /** Where the run's ledger and stage counters were written. */
  ledgerFile: string;
}

export const LEDGER_FILE = 'ledger.json';

/**
 * The default job: read Parquet shards → length filter → write Parquet parts. Writes `ledger.json` beside
 * the parts whatever the outcome, so a failed or interrupted run still says where every row went.
 */
export async function runJob(config: RunConfig, options: JobOptions = {}): Promise<JobResult> {
  const shards = await resolveShards(config.input);
  const db = await openDuckDB({
    threads: config.engine.duckdbThreads,
    memoryLimit: `${config.engine.duckdbMemoryMB}MB`,
  });
  try {
    const source = new ParquetSource(db, {
      shards,
      textColumn: config.source.textColumn,
      idColumn: config.source.idColumn,
      metaColumns: config.source.metaColumns,
      binaryAsString: config.source.binaryAsString,
    });
    const sink = new ParquetSink<Document>({
      dir: config.output,
      schema: documentsTable(await source.metaColumnTypes()),
      toRow: documentRow,
      partRows: config.writer.partRows,
      partBytes: config.writer.partMB * 1024 * 1024,
      rowGroupRows: config.writer.rowGroupRows,
      rowGroupBytes: config.writer.rowGroupMB * 1024 * 1024,
      compression: config.writer.compression,
    });
    const run = pipeline(source)
      .pipe(lengthFilter<Document>(config.filter))
      .into(sink, {
        queueCapacity: config.engine.queueCapacity,
        graceMs: config.engine.graceSeconds * 1000,
        signal: options.signal,
        log: options.log,
      });
    options.onStart?.(run);
    const report = await run.run();
    const ledgerFile = await writeLedger(config, report, sink.parts);
    return { report, parts: sink.parts, ledgerFile };
  } finally {
    db.closeSync();
  }
}

async function writeLedger(config: RunConfig, report: RunReport, parts: CommittedPart[]): Promise<string> {
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
    config,
  };
  const temporary = `${file}.tmp`;
  await writeFile(temporary, `${JSON.stringify(body, null, 2)}\n`);
  await rename(temporary, file);
  return file;
}
