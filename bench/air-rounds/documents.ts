/**
 * The benchmark's documents: the first N rows of the input shards that pass AIR's stage 0 at its default
 * settings (length window, quality filters, unique ids, exact and near dedupe), read the way the job reads them.
 * Both sides read the same rows through the same source and stages. Dedupe matters here: the two samples share
 * a third of their long documents, and a document read twice finds its prompts in the prefix cache.
 */
import type { DuckDBInstance } from '@duckdb/node-api';
import { runConfigSchema } from '../../job/config.js';
import { documentStages } from '../../job/stages/document-stages.js';
import { Accounting } from '../../llm/accounting.js';
import { lengthFilter, type LengthFilterOptions } from '../../operators/length-filter.js';
import { ParquetSource } from '../../pipeline/io/parquet-source.js';
import type { Shard } from '../../pipeline/io/shards.js';
import type { WorkerPool } from '../../pipeline/pool/worker-pool.js';
import { pipeline, type Pipeline } from '../../pipeline/run.js';
import type { Document } from '../../schemas/documents.js';
import { CollectSink } from './collect-sink.js';

export const FILTER: LengthFilterOptions = { minWords: 50, maxWords: 2048 };

export interface DocumentSet {
  readonly shards: readonly Shard[];
  /** The length window documents must pass (AIR's stage 0: FILTER). */
  readonly filter: LengthFilterOptions;
  /** `dedupe`: stage 0 at the job's defaults, near dedupe on this MinHash pool; `none`: the length window only. */
  readonly stage0: { readonly dedupe: true; readonly pool: WorkerPool } | { readonly dedupe: false };
  /** Rows to read, shards in order, so that exactly `documents` pass the length filter. */
  readonly rowLimit: number;
  readonly documents: number;
}

/** The filtered documents of the first `rowLimit` rows, as a pipeline to extend. */
export function documentPipeline(db: DuckDBInstance, set: DocumentSet): Pipeline<Document> {
  const source = new ParquetSource(db, {
    shards: set.shards,
    textColumn: 'text',
    metaColumns: ['url', 'metadata.url'],
    limit: set.rowLimit,
  });
  if (!set.stage0.dedupe) return pipeline(source).pipe(lengthFilter<Document>(set.filter));
  const config = runConfigSchema.parse({ input: 'bench', output: 'bench', filter: set.filter });
  // Fresh stages per pipeline: dedupe remembers what it saw.
  const stages = documentStages(config, {
    pool: set.stage0.pool,
    accounting: new Accounting(),
    env: undefined,
  });
  return pipeline(source).through(stages);
}

/** Reads the documents into memory (the baseline's barrier needs them all), with the rows read per shard. */
export async function readDocuments(
  db: DuckDBInstance,
  set: DocumentSet,
): Promise<{ documents: Document[]; rowsRead: ReadonlyMap<string, number> }> {
  const sink = new CollectSink<Document>();
  const report = await documentPipeline(db, set).into(sink).run();
  if (report.status !== 'completed') throw new Error(`reading documents: ${report.error ?? report.status}`);
  return { documents: sink.rows, rowsRead: new Map(report.shards.map((s) => [s.shard, s.read])) };
}

/** Finds how many rows hold the first `documents` that pass the filter. */
export async function chooseDocuments(
  db: DuckDBInstance,
  shards: readonly Shard[],
  documents: number,
  filter: LengthFilterOptions,
  stage0: DocumentSet['stage0'],
): Promise<DocumentSet> {
  const all = await readDocuments(db, {
    shards,
    filter,
    stage0,
    rowLimit: Number.MAX_SAFE_INTEGER,
    documents: 0,
  });
  if (all.documents.length < documents) {
    throw new Error(
      `the input has ${all.documents.length} documents in the length window, fewer than ${documents}`,
    );
  }
  // 0: every document stage 0 keeps.
  const count = documents === 0 ? all.documents.length : documents;
  const last = all.documents[count - 1]!;
  let rows = 0;
  for (const shard of shards) {
    if (shard.label === last.sourceFile) {
      return { shards, filter, stage0, rowLimit: rows + last.sourceRow + 1, documents: count };
    }
    rows += all.rowsRead.get(shard.label) ?? 0;
  }
  throw new Error(`document ${last.id} names an unknown shard ${last.sourceFile}`);
}
