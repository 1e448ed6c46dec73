import { packTexts, transferablesOf } from '../../pipeline/pool/packed-texts.js';
import { siblingModule } from '../../pipeline/pool/worker-file.js';
import { WorkerPool } from '../../pipeline/pool/worker-pool.js';
import type { Embedder } from '../../llm/embedder.js';
import { HashingVectorizer, type HashingVectorizerOptions } from './hashing-vectorizer.js';
import type { HashingResult, HashingTask } from './hashing-worker.js';

/** The hashing vectorizer as an Embedder, computed in the calling thread. */
export class HashingEmbedder implements Embedder {
  readonly description: string;
  readonly dimensions: number;
  readonly batchSize = 64;
  readonly concurrency = 1;
  private readonly vectorizer: HashingVectorizer;

  constructor(options: HashingVectorizerOptions) {
    this.vectorizer = new HashingVectorizer(options);
    this.dimensions = options.dimensions;
    this.description = `hashing(${options.dimensions}${options.bigrams ? ', bigrams' : ''})`;
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    return texts.map((text) => this.vectorizer.vectorize(text));
  }
}

/**
 * The hashing vectorizer in a worker pool: texts go out packed in two transferable buffers, vectors come back
 * in one; batches of 256 with two per thread in flight keep every thread busy.
 */
export class PooledHashingEmbedder implements Embedder {
  readonly description: string;
  readonly dimensions: number;
  readonly batchSize = 256;
  readonly concurrency: number;
  private readonly pool: WorkerPool;

  constructor(
    private readonly options: HashingVectorizerOptions,
    threads: number,
  ) {
    new HashingVectorizer(options); // validates the options here rather than in a worker
    this.dimensions = options.dimensions;
    this.description = `hashing(${options.dimensions}${options.bigrams ? ', bigrams' : ''}) on ${threads} threads`;
    this.concurrency = threads * 2;
    this.pool = new WorkerPool({
      filename: siblingModule(import.meta.url, 'hashing-worker'),
      threads,
      maxQueue: threads * 2,
    });
  }

  async embed(texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]> {
    const packed = packTexts(texts);
    const task: HashingTask = { texts: packed, options: this.options };
    const { vectors } = await this.pool.run<HashingResult>(task, {
      transferList: transferablesOf(packed),
      signal,
    });
    const d = this.dimensions;
    return texts.map((_, i) => vectors.subarray(i * d, (i + 1) * d));
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
