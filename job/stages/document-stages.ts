import { availableParallelism } from 'node:os';
import type { Accounting } from '../../llm/accounting.js';
import type { Embedder } from '../../llm/embedder.js';
import { EmbeddingsClient, resolveEmbeddingsEndpoint } from '../../llm/embeddings.js';
import { exactDedupe } from '../../operators/dedupe/exact-dedupe.js';
import { nearDedupe } from '../../operators/dedupe/near-dedupe.js';
import { uniqueIds } from '../../operators/dedupe/unique-ids.js';
import { lengthFilter } from '../../operators/length-filter.js';
import { diversitySelect } from '../../operators/sample/diversity-select.js';
import { hashingEmbedder } from '../../operators/sample/options.js';
import { rateSample, reservoirSample } from '../../operators/sample/pre-sample.js';
import { qualityFilter } from '../../operators/sample/quality-filters.js';
import type { Operator } from '../../pipeline/operator.js';
import type { WorkerPool } from '../../pipeline/pool/worker-pool.js';
import type { Document } from '../../schemas/documents.js';
import type { RunConfig } from '../config.js';

export type DocumentStage = Operator<Document, Document>;

export interface DocumentStageDeps {
  /** MinHash workers; needed when near dedupe is on. */
  readonly pool: WorkerPool | undefined;
  /** Where the diversity stage's embedding calls are accounted. */
  readonly accounting: Accounting;
  /** Where API keys are read from. */
  readonly env: NodeJS.ProcessEnv | undefined;
  /** Replaces the dedupe steps (ids, exact, near) when given: a rank drops what the global step listed. */
  readonly dedupeStages?: readonly DocumentStage[];
}

/**
 * Stage 0 of every run, in order: length window, quality filters, dedupe (ids, exact, near), pre-sample,
 * diversity selection. A plain list, each entry present only when its config section turns it on.
 */
export function documentStages(config: RunConfig, deps: DocumentStageDeps): DocumentStage[] {
  return [
    ...filterStages(config),
    ...(deps.dedupeStages ?? dedupeStages(config.dedupe, deps.pool)),
    ...preSampleStages(config.sample.preSample),
    ...diversityStages(config, deps),
  ];
}

/**
 * The stages before dedupe: the length window and the quality filters. The global dedupe keys pass runs these
 * same stages, so it keys exactly the rows a single run's dedupe would see.
 */
export function filterStages(config: Pick<RunConfig, 'filter' | 'sample'>): DocumentStage[] {
  return [lengthFilter<Document>(config.filter), qualityFilter<Document>(config.sample.quality)];
}

function dedupeStages(dedupe: RunConfig['dedupe'], pool: WorkerPool | undefined): DocumentStage[] {
  const stages: DocumentStage[] = [];
  const textOf = (d: Document): string => d.text;
  const idOf = (d: Document): string => d.id;
  if (dedupe.ids) stages.push(uniqueIds<Document>(idOf));
  if (dedupe.exact) stages.push(exactDedupe<Document>({ textOf, idOf }));
  if (dedupe.near.enabled) {
    if (pool === undefined) throw new Error('near dedupe needs the MinHash worker pool');
    const { enabled: _enabled, ...near } = dedupe.near;
    stages.push(nearDedupe<Document>({ ...near, textOf, idOf, pool }));
  }
  return stages;
}

function preSampleStages(pre: RunConfig['sample']['preSample']): DocumentStage[] {
  if (pre.mode === 'rate') return [rateSample<Document>({ rate: pre.rate, seed: pre.seed })];
  if (pre.mode === 'reservoir')
    return [reservoirSample<Document>({ perShard: pre.perShard, seed: pre.seed })];
  return [];
}

/**
 * Diversity selection: a blocking stage, off by default. Its vectors come from the hashing vectorizer, or
 * from an embeddings endpoint when one is set; the operator owns the embedder and closes it when the run ends.
 */
function diversityStages(config: RunConfig, deps: DocumentStageDeps): DocumentStage[] {
  const diversity = config.sample.diversity;
  if (!diversity.enabled) return [];
  const threads = config.engine.workerThreads ?? availableParallelism();
  const embedder: Embedder =
    diversity.embeddings === undefined
      ? hashingEmbedder(
          { dimensions: diversity.dimensions, bigrams: diversity.bigrams, seed: diversity.seed },
          'pool',
          Math.max(1, threads - 1),
        )
      : new EmbeddingsClient(resolveEmbeddingsEndpoint(diversity.embeddings, deps.env), {
          recorder: deps.accounting,
        });
  return [diversitySelect<Document>({ keep: diversity.keep, seed: diversity.seed, threads, embedder })];
}
