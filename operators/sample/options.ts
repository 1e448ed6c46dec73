import type { DiversitySelectOptions } from './diversity-select.js';
import type { Embedder } from '../../llm/embedder.js';
import { HashingEmbedder, PooledHashingEmbedder } from './hashing-embedder.js';
import type { HashingVectorizerOptions } from './hashing-vectorizer.js';
import type { PreSampleOptions } from './pre-sample.js';
import type { QualityFilterOptions } from './quality-filters.js';

/**
 * The options of the AIR "sample" stage (stage 0 after the length window, which is `filter.minWords/maxWords`):
 * quality filters → random pre-sample → diversity selection, in that order. The defaults named here are the
 * method's; the run's config schema is where they are set.
 */
export interface SampleOptions {
  readonly quality: QualityFilterOptions;
  /** Default `{ mode: 'off' }`: every document goes on to diversity selection. */
  readonly preSample: PreSampleOptions | { readonly mode: 'off' };
  readonly diversity: DiversityStageOptions;
}

export interface DiversityStageOptions extends Omit<DiversitySelectOptions, 'embedder' | 'threads'> {
  /**
   * Default true. Diversity selection is a blocking stage (nothing leaves it before the input ends); false
   * leaves it out of the graph, so documents stream straight on.
   */
  readonly enabled: boolean;
  /** Worker threads for the farthest-point selection and the pooled vectorizer. Default: the number of cores. */
  readonly threads?: number;
  /**
   * The default vectors (used when no embeddings endpoint is configured): the hashing vectorizer, default
   * `{ dimensions: 256, bigrams: false, seed: 0 }`.
   */
  readonly hashing: HashingVectorizerOptions;
  /**
   * Where the hashing vectorizer runs: `thread` in the engine's thread, `pool` in worker threads. Default
   * `pool`: on 2 cores a one-thread pool made the stage 12-22% faster end to end than in-thread, and two
   * threads no faster than one (bench/RESULTS-sample.md), as the engine and DuckDB need the other core.
   */
  readonly hashingIn: 'thread' | 'pool';
  /** Threads of that pool. Default: the number of cores minus one, at least 1. */
  readonly hashingThreads?: number;
}

/** The default Embedder: the hashing vectorizer, in-thread or in a worker pool of `threads`. */
export function hashingEmbedder(
  options: HashingVectorizerOptions,
  where: 'thread' | 'pool',
  threads: number,
): Embedder {
  return where === 'pool' ? new PooledHashingEmbedder(options, threads) : new HashingEmbedder(options);
}
