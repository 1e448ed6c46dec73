import { LedgerError } from '../../pipeline/errors.js';
import type { BlockingOperator, OperatorContext, Selection } from '../../pipeline/operator.js';
import type { Embedder } from '../../llm/embedder.js';
import { farthestPoint, farthestPointParallel, type FarthestPointResult } from './farthest-point.js';
import { VectorStore } from './vector-store.js';

export interface DiversitySelectOptions {
  /** Documents kept (K); when no more than K arrive, all are kept. Reference: 60,000 of 300,000. */
  readonly keep: number;
  /** Picks the first document of the farthest-point selection. Default 0. */
  readonly seed: number;
  /** Worker threads for the farthest-point selection. Default: the number of cores. */
  readonly threads: number;
  /**
   * Turns texts into vectors: the hashing vectorizer by default, or an OpenAI-compatible embeddings endpoint
   * (llm/embeddings.ts). The operator owns it and closes it when the run ends.
   */
  readonly embedder: Embedder;
  /**
   * Below this many multiply-adds (N·K·D) the selection runs in the calling thread, where starting worker
   * threads would cost more than the work. Default 2·10^8 (~0.15 s here).
   */
  readonly minParallelWork?: number;
}

export const DIVERSITY_REASON = 'diversity';

const MIN_PARALLEL_WORK = 2e8;

/**
 * Diversity selection, the AIR method's last stage-0 step: keeps `keep` documents chosen by greedy
 * farthest-point (max-min cosine distance) over their vectors, which also removes near-duplicates.
 *
 * A BLOCKING stage: it cannot emit before its input ends. It holds vectors only, never texts: N × D × 4 bytes
 * (100K documents of 256 dimensions: 102 MB; 300K of 384: 461 MB) plus at most batchSize × concurrency texts
 * waiting for the embedder; the engine parks the documents themselves in a spill file. Leave the stage out of
 * the graph for pure streaming.
 */
export function diversitySelect<T extends { readonly text: string }>(
  options: DiversitySelectOptions,
): BlockingOperator<T> {
  if (!Number.isInteger(options.keep) || options.keep < 1) {
    throw new RangeError(`keep must be a positive integer, got ${options.keep}`);
  }
  const { embedder } = options;
  let store = new VectorStore({ dimensions: embedder.dimensions });
  let pending: string[] = [];
  let pendingStart = 0;
  const inflight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;

  const rethrow = (): void => {
    if (failure !== undefined) throw failure.error;
  };

  /** Sends the pending texts to the embedder; waits while `concurrency` calls are already in flight. */
  const dispatch = async (ctx: OperatorContext): Promise<void> => {
    const texts = pending;
    const start = pendingStart;
    pending = [];
    pendingStart += texts.length;
    const task: Promise<void> = embedder
      .embed(texts, ctx.signal)
      .then((vectors) => {
        if (vectors.length !== texts.length) {
          throw new Error(
            `${embedder.description} returned ${vectors.length} vectors for ${texts.length} texts`,
          );
        }
        vectors.forEach((vector, i) => store.set(start + i, vector));
        ctx.count('embedded', texts.length);
      })
      .catch((error: unknown) => {
        failure ??= { error };
      })
      .finally(() => inflight.delete(task));
    inflight.add(task);
    while (inflight.size >= Math.max(1, embedder.concurrency)) await Promise.race(inflight);
    rethrow();
  };

  const selectRows = async (count: number, ctx: OperatorContext): Promise<FarthestPointResult> => {
    const matrix = store.matrix();
    const k = options.keep;
    if (
      count * k * matrix.dimensions < (options.minParallelWork ?? MIN_PARALLEL_WORK) ||
      options.threads <= 1
    ) {
      return farthestPoint(matrix, { k, seed: options.seed });
    }
    return farthestPointParallel(matrix, {
      k,
      seed: options.seed,
      threads: options.threads,
      signal: ctx.signal,
    });
  };

  return {
    name: 'diversity_select',
    blocking: true,
    // Its selection depends on every record it saw: a resumed run shows it the settled ones again.
    replay: true,
    async observe(doc, index, ctx) {
      rethrow();
      if (index !== pendingStart + pending.length) {
        throw new LedgerError(`diversity_select observed record ${index} out of order`);
      }
      pending.push(doc.text);
      if (pending.length >= embedder.batchSize) await dispatch(ctx);
    },
    async select(count, ctx): Promise<Selection> {
      if (pending.length > 0) await dispatch(ctx);
      await Promise.all(inflight);
      rethrow();
      if (store.count !== count) {
        throw new LedgerError(`diversity_select holds ${store.count} vectors for ${count} records`);
      }
      const keep = new Uint8Array(count);
      ctx.count('vector_bytes', store.bytes);
      if (count <= options.keep) {
        keep.fill(1);
      } else {
        const started = performance.now();
        const { selected, distances } = await selectRows(count, ctx);
        for (const row of selected) keep[row] = 1;
        ctx.count('select_ms', Math.round(performance.now() - started));
        // The max-min distance reached: how far the least covered kept document is from the others.
        ctx.count('last_min_distance_x1e6', Math.round(distances[distances.length - 1]! * 1e6));
      }
      store = new VectorStore({ dimensions: embedder.dimensions });
      pendingStart = 0;
      return { keep, dropReason: DIVERSITY_REASON };
    },
    async close() {
      await Promise.allSettled(inflight);
      await embedder.close?.();
    },
  };
}
