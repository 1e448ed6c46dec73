import { fmix32, fnv1a32 } from '../../pipeline/hash.js';
import {
  drop,
  emit,
  type BlockingOperator,
  type Outcome,
  type RecordOperator,
  type Selection,
} from '../../pipeline/operator.js';

/**
 * The random pre-sample before diversity selection (reference: 100K documents per shard). Every decision is a
 * function of (seed, document id) only, so it does not depend on arrival order, on how shards are interleaved,
 * or on whether the run was resumed: the same input and seed always keep the same documents.
 */
export type PreSampleOptions =
  | {
      /** Streaming: keeps each document with probability `rate`. */
      readonly mode: 'rate';
      /** Share of documents kept, in [0, 1]. No default: required in this mode. */
      readonly rate: number;
      /** Default 0. */
      readonly seed: number;
    }
  | {
      /**
       * Blocking: keeps `perShard` documents of every shard, chosen uniformly (all of a shard's documents when it
       * has fewer). The stage holds 16 bytes per candidate, at most `perShard` per shard, never texts.
       */
      readonly mode: 'reservoir';
      /** Documents kept per shard. Reference: 100,000. */
      readonly perShard: number;
      /** Default 0. */
      readonly seed: number;
    };

export const PRE_SAMPLE_REASON = 'pre_sample';

/**
 * A uniform number in [0, 1) from (seed, id), with 53 bits: two FNV-1a passes with seed-derived start states,
 * each finished by murmur3's fmix32, so ids that differ in one character land far apart.
 */
export function samplePriority(seed: number, id: string): number {
  const high = fmix32(fnv1a32(id, fmix32((seed ^ 0x2545f491) >>> 0)));
  const low = fmix32(fnv1a32(id, fmix32((seed ^ 0x6a09e667) >>> 0)) ^ 0x9e3779b9);
  return (high * 2 ** 21 + (low >>> 11)) / 2 ** 53;
}

/** Keeps a document when samplePriority(seed, id) < rate; drop reason `pre_sample`. */
export function rateSample<T extends { readonly id: string }>(options: {
  readonly rate: number;
  readonly seed: number;
}): RecordOperator<T, T> {
  const { rate, seed } = options;
  if (!(rate >= 0 && rate <= 1)) throw new RangeError(`rate must be in [0, 1], got ${rate}`);
  return {
    name: 'pre_sample',
    process(doc): Outcome<T> {
      return samplePriority(seed, doc.id) < rate ? emit(doc) : drop(PRE_SAMPLE_REASON);
    },
  };
}

/**
 * The `capacity` smallest (priority, index) pairs seen, as a max-heap in two typed arrays that grow by
 * doubling up to `capacity` (a shard with few documents costs little). Ties in priority (equal ids) are
 * broken by the lower arrival index.
 */
class SmallestK {
  private priorities = new Float64Array(16);
  private indices = new Float64Array(16);
  size = 0;

  constructor(private readonly capacity: number) {}

  offer(priority: number, index: number): void {
    if (this.size < this.capacity) {
      if (this.size === this.priorities.length) this.grow();
      this.siftUp(this.size++, priority, index);
    } else if (this.before(priority, index, this.priorities[0]!, this.indices[0]!)) {
      this.siftDown(0, priority, index);
    }
  }

  /** The indices held, in no particular order. */
  forEachIndex(visit: (index: number) => void): void {
    for (let i = 0; i < this.size; i++) visit(this.indices[i]!);
  }

  private before(pa: number, ia: number, pb: number, ib: number): boolean {
    return pa < pb || (pa === pb && ia < ib);
  }

  private grow(): void {
    const size = Math.min(this.capacity, this.priorities.length * 2);
    const priorities = new Float64Array(size);
    const indices = new Float64Array(size);
    priorities.set(this.priorities);
    indices.set(this.indices);
    this.priorities = priorities;
    this.indices = indices;
  }

  private siftUp(at: number, priority: number, index: number): void {
    const p = this.priorities;
    const x = this.indices;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (!this.before(p[parent]!, x[parent]!, priority, index)) break;
      p[at] = p[parent]!;
      x[at] = x[parent]!;
      at = parent;
    }
    p[at] = priority;
    x[at] = index;
  }

  private siftDown(at: number, priority: number, index: number): void {
    const p = this.priorities;
    const x = this.indices;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= this.size) break;
      if (child + 1 < this.size && this.before(p[child]!, x[child]!, p[child + 1]!, x[child + 1]!)) child++;
      if (!this.before(priority, index, p[child]!, x[child]!)) break;
      p[at] = p[child]!;
      x[at] = x[child]!;
      at = child;
    }
    p[at] = priority;
    x[at] = index;
  }
}

/**
 * Keeps the `perShard` documents of each shard (by `sourceFile`) with the smallest samplePriority(seed, id):
 * a seeded uniform sample of the shard that does not depend on arrival order. A blocking stage: it needs all
 * of a shard before it knows, and holds only indices and priorities; drop reason `pre_sample`.
 *
 * `eachShard` (default true): documents arrive shard by shard (as the source reads them), so each shard is
 * decided, and its sample sent on to the LLM stages, as soon as the next shard begins, not after the last one.
 * Off, the stage decides at the end of the input, whatever the order of arrival.
 */
export function reservoirSample<T extends { readonly id: string; readonly sourceFile: string }>(options: {
  readonly perShard: number;
  readonly seed: number;
  readonly eachShard?: boolean;
}): BlockingOperator<T> {
  const { perShard, seed } = options;
  if (!Number.isInteger(perShard) || perShard < 1) {
    throw new RangeError(`perShard must be a positive integer, got ${perShard}`);
  }
  let shards = new Map<string, SmallestK>();
  return {
    name: 'pre_sample',
    blocking: true,
    // Its selection depends on every record it saw: a resumed run shows it the settled ones again.
    replay: true,
    ...(options.eachShard === false ? {} : { partitionOf: (doc: T) => doc.sourceFile }),
    observe(doc, index) {
      let heap = shards.get(doc.sourceFile);
      if (heap === undefined) {
        heap = new SmallestK(perShard);
        shards.set(doc.sourceFile, heap);
      }
      heap.offer(samplePriority(seed, doc.id), index);
    },
    async select(count, ctx): Promise<Selection> {
      const keep = new Uint8Array(count);
      for (const heap of shards.values()) heap.forEachIndex((i) => (keep[i] = 1));
      ctx.count('shards', shards.size);
      shards = new Map();
      return { keep, dropReason: PRE_SAMPLE_REASON };
    },
  };
}

/** The operator for `options.mode`: a streaming stage for `rate`, a blocking one for `reservoir`. */
export function preSample<T extends { readonly id: string; readonly sourceFile: string }>(
  options: PreSampleOptions,
): RecordOperator<T, T> | BlockingOperator<T> {
  return options.mode === 'rate' ? rateSample<T>(options) : reservoirSample<T>(options);
}
