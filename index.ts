/**
 * air's library API: the engine, Parquet I/O, the default job, the LLM layer and the operators, for programs
 * that build their own graphs instead of calling `air run`.
 */
export { pipeline, Pipeline, PipelineRun } from './pipeline/run.js';
export type { PipelineOptions, ProgressSnapshot, RunReport, RunStatus } from './pipeline/run.js';
export { emit, drop, fail } from './pipeline/operator.js';
export type {
  BatchOperator,
  BlockingOperator,
  Operator,
  OperatorContext,
  Outcome,
  RecordOperator,
  Selection,
} from './pipeline/operator.js';
export type { Envelope, Sink, Source } from './pipeline/source.js';
export { Ledger } from './pipeline/ledger.js';
export type { ShardTally, Ticket } from './pipeline/ledger.js';
export { BoundedQueue } from './pipeline/queue.js';
export { WorkerPool } from './pipeline/pool/worker-pool.js';
export { packTexts, unpackTexts, textAt, bytesAt, transferablesOf } from './pipeline/pool/packed-texts.js';
export {
  AirError,
  ConfigError,
  ParquetInputError,
  LedgerError,
  errorKind,
  isFatal,
} from './pipeline/errors.js';
export { openDuckDB } from './pipeline/io/duckdb.js';
export { ParquetSource } from './pipeline/io/parquet-source.js';
export { ParquetSink } from './pipeline/io/parquet-sink.js';
export { resolveShards } from './pipeline/io/shards.js';
export { defineTable, t } from './schemas/types.js';
export type { ColumnType, RowOf, TableSchema } from './schemas/types.js';
export { documentsTable, documentRow } from './schemas/documents.js';
export type { Document } from './schemas/documents.js';
export { parseRunConfig, runConfigSchema } from './job/config.js';
export type { RunConfig, RunConfigInput } from './job/config.js';
export { runJob } from './job/run-job.js';
export { setUpLlm } from './job/llm.js';
export { HttpLlmClient } from './llm/client.js';
export { endpointSchema, resolveEndpoint } from './llm/endpoint.js';
export { LlmError } from './llm/errors.js';
export { Accounting } from './llm/accounting.js';
export { openResponseCache } from './llm/cache.js';
export { startSimulator } from './llm/simulator/index.js';
export { loadTest } from './llm/load-test.js';
export type { ChatMessage, ChatOptions, ChatResult, LlmClient, Role } from './llm/types.js';
export { lengthFilter, countWords } from './operators/length-filter.js';
export { tagConstraints, summarizeConstraints, CONSTRAINT_TYPES } from './operators/constraint-tagger.js';
export { countConstraints, constraintClauses } from './operators/constraint-count.js';
export { measureInstruction } from './operators/instruction-metrics.js';
export { generate } from './operators/air/generate.js';
export { refine, composeInstruction } from './operators/air/refine.js';
export { merge } from './operators/air/merge.js';
export { validityFilter } from './operators/air/validity-filter.js';
export { score } from './operators/air/score.js';
export { StepRunner } from './operators/air/steps.js';
export { loadPromptSet } from './operators/air/prompts.js';
export { readJudge, matchConstraintType } from './operators/air/replies.js';
export type {
  AcceptedConstraint,
  CallRecord as AirCallRecord,
  Example,
  IterationRecord,
  Refined,
  ScoredExample,
  Seeded,
  StopReason,
} from './operators/air/types.js';
export { airTable, airFields } from './schemas/air.js';
export { airRow } from './job/air-row.js';
export { appendAirStages } from './job/stages/air-stages.js';
export { configFingerprint } from './job/fingerprint.js';
export { StatsCollector } from './report/stats/collector.js';
export { mergeStats } from './report/stats/collector.js';
export { writeRunStats } from './report/run-stats.js';
export type { RunStats } from './schemas/stats.js';
export { qualityFilter } from './operators/sample/quality-filters.js';
export { rateSample, reservoirSample } from './operators/sample/pre-sample.js';
export { diversitySelect } from './operators/sample/diversity-select.js';
export { farthestPoint, farthestPointParallel, type KernelKind } from './operators/sample/farthest-point.js';
export { HashingVectorizer } from './operators/sample/hashing-vectorizer.js';
export type { Embedder } from './llm/embedder.js';
export { EmbeddingsClient } from './llm/embeddings.js';
export { exactDedupe } from './operators/dedupe/exact-dedupe.js';
export { nearDedupe, createMinHashPool } from './operators/dedupe/near-dedupe.js';
export { uniqueIds } from './operators/dedupe/unique-ids.js';
