/**
 * The streaming side: air's own stage graph (ParquetSource → length filter → appendAirStages) on the same
 * documents, each document moving through its steps on its own. Rows are collected in memory instead of
 * written, as the baseline writes nothing either.
 */
import type { DuckDBInstance } from '@duckdb/node-api';
import { appendAirStages } from '../../job/stages/air-stages.js';
import type { AirConfig } from '../../job/config.js';
import type { LlmClient } from '../../llm/types.js';
import type { ScoredExample } from '../../operators/air/types.js';
import type { RunReport } from '../../pipeline/run.js';
import { CollectSink } from './collect-sink.js';
import { documentPipeline, type DocumentSet } from './documents.js';

export interface StreamingResult {
  readonly report: RunReport;
  readonly rows: readonly ScoredExample[];
}

export async function runStreaming(
  db: DuckDBInstance,
  set: DocumentSet,
  llm: LlmClient,
  air: AirConfig,
  log: (line: string) => void,
): Promise<StreamingResult> {
  const { pipeline } = appendAirStages(documentPipeline(db, set), llm, air);
  const sink = new CollectSink<ScoredExample>();
  const report = await pipeline.into(sink, { log }).run();
  if (report.status !== 'completed') throw new Error(`streaming run ${report.status}: ${report.error ?? ''}`);
  return { report, rows: sink.rows };
}
