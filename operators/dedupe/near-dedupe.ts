import { availableParallelism } from 'node:os';
import { drop, emit, fail, type BatchOperator, type Outcome } from '../../pipeline/operator.js';
import { packTexts, transferablesOf } from '../../pipeline/pool/packed-texts.js';
import { siblingModule } from '../../pipeline/pool/worker-file.js';
import { WorkerPool } from '../../pipeline/pool/worker-pool.js';
import { IdStore } from './id-store.js';
import { DEFAULT_LSH, LshIndex } from './lsh.js';
import { DEFAULT_MINHASH, signatureAt } from './minhash.js';
import type { MinHashResult, MinHashTask } from './minhash-worker.js';

/** The tunable parameters of near-duplicate detection. */
export interface NearDedupeParams {
  /** Words per shingle (default 5). */
  readonly shingle: number;
  /** MinHash permutations, i.e. signature length (default 128). */
  readonly numPerm: number;
  /** LSH bands; numPerm / bands rows each, must divide evenly (default 16, i.e. 8 rows; see DEFAULT_LSH). */
  readonly bands: number;
  /** Estimated Jaccard similarity of word shingles at or above which a record is a duplicate (default 0.8). */
  readonly threshold: number;
  /** Seed of the MinHash permutations (default 1). */
  readonly seed: number;
}

export const DEFAULT_NEAR_DEDUPE: NearDedupeParams = {
  shingle: DEFAULT_MINHASH.shingle,
  numPerm: DEFAULT_MINHASH.numPerm,
  bands: DEFAULT_LSH.bands,
  threshold: 0.8,
  seed: DEFAULT_MINHASH.seed,
};

/** What the operator needs of a worker pool (a WorkerPool running minhash-worker; see createMinHashPool). */
export type SignaturePool = Pick<WorkerPool, 'run'>;

export interface NearDedupeOptions<T> extends Partial<NearDedupeParams> {
  /** The text compared (normalised and shingled as in minhash.ts). */
  readonly textOf: (record: T) => string;
  /** The id named as `duplicateOf` when a later record is a near-duplicate of this one. */
  readonly idOf: (record: T) => string;
  /** Computes the signatures; owned by the caller, who closes it after the run (two instances may share one). */
  readonly pool: SignaturePool;
  /** Stage name; default "near_dedupe". */
  readonly name?: string;
  /**
   * See the rows an interrupted run settled again on resume, so the index holds what it held (default true).
   * Off for a dedupe placed after LLM stages: replayed rows must never reach those.
   */
  readonly replay?: boolean;
  /** Records per task sent to the pool (default 256: ~0.75 MB of web text, ~25 ms of one core). */
  readonly batchSize?: number;
  /** Batches in flight (default 4: keeps two workers busy while the main thread decides). */
  readonly concurrency?: number;
}

export const NEAR_DUPLICATE = 'near_duplicate';

/** A record kept before this run: indexed so later records are compared with it, never emitted. */
export interface KnownRecord {
  readonly id: string;
  readonly text: string;
}

export interface NearDedupe<T> extends BatchOperator<T, T> {
  /**
   * Indexes records kept before the run starts (e.g. rows an interrupted run wrote, for a stage that cannot
   * replay), batch by batch; a known record that duplicates an earlier one is not indexed twice. Call it
   * before the run, not during.
   */
  prime(batches: AsyncIterable<readonly KnownRecord[]>, signal: AbortSignal): Promise<void>;
  /** Records kept so far, i.e. indexed. */
  readonly kept: number;
  /** Bytes held by the LSH index (band tables, 8-bit sketches) and the kept ids. */
  readonly bytes: number;
}

/** A pool of `threads` workers computing MinHash signatures (minhash-worker.ts). */
export function createMinHashPool(threads = availableParallelism(), maxQueue = threads): WorkerPool {
  return new WorkerPool({ filename: siblingModule(import.meta.url, 'minhash-worker'), threads, maxQueue });
}

/**
 * MinHash signatures of `texts` computed in the pool (one task), text i at [i*numPerm, (i+1)*numPerm): what
 * nearDedupe indexes, and what the global dedupe's keys pass writes.
 */
export async function signTexts(
  pool: SignaturePool,
  texts: readonly string[],
  params: Pick<NearDedupeParams, 'shingle' | 'numPerm' | 'seed'>,
  signal: AbortSignal,
): Promise<Uint32Array> {
  const { shingle, numPerm, seed } = params;
  const packed = packTexts(texts);
  const task: MinHashTask = { texts: packed, shingle, numPerm, seed };
  const result = await pool.run<MinHashResult>(task, { transferList: transferablesOf(packed), signal });
  if (result.signatures.length !== texts.length * numPerm) {
    throw new Error(
      `worker returned ${result.signatures.length / numPerm} signatures for ${texts.length} texts`,
    );
  }
  return result.signatures;
}

/**
 * Drops every record whose estimated Jaccard similarity (word shingles) with an earlier kept record is at
 * least `threshold`, with reason `near_duplicate` and `duplicateOf` = that record's id (the most similar
 * candidate; the earliest on ties). Signatures are computed in the worker pool; the LSH index lives in the
 * main thread (see LshIndex for its memory: ~290-450 bytes per kept record at 16 bands and 128 permutations,
 * plus the id). Candidates from band matches are verified against 8-bit sketches of the kept signatures, not
 * trusted.
 *
 * Deterministic: decisions are a function of the order records reach the stage, never of timing. Batches are
 * signed concurrently and may finish in any order, but each decides (queries and inserts into the index) only
 * after the batch before it has, in the order the engine called processBatch, which is input order (see
 * BatchOperator). `ordered` makes the engine pass outputs on in that order too. What the stage relies on
 * upstream: the source reads shards and rows in a fixed order, and every stage before it keeps order
 * (synchronous record operators do; an asynchronous one with concurrency > 1 must set `ordered`).
 *
 * Generic over `textOf`: the same operator dedupes documents (textOf = d => d.text) and final instructions
 * (textOf = r => r.instruction).
 */
export function nearDedupe<T>(options: NearDedupeOptions<T>): NearDedupe<T> {
  const params = { ...DEFAULT_NEAR_DEDUPE, ...definedOnly(options) };
  const { shingle, numPerm, bands, threshold, seed } = params;
  if (!(threshold > 0 && threshold <= 1))
    throw new RangeError(`threshold must be in (0, 1], got ${threshold}`);
  if (!Number.isInteger(bands) || bands < 1 || numPerm % bands !== 0) {
    throw new RangeError(`bands must divide numPerm: ${numPerm} permutations in ${bands} bands`);
  }
  const index = new LshIndex(numPerm, { bands, rows: numPerm / bands });
  const ids = new IdStore();
  const pool = options.pool;
  // Resolved once the previous batch has decided; each batch waits for it before touching the index.
  let tail: Promise<void> = Promise.resolve();

  const sign = (texts: readonly string[], signal: AbortSignal): Promise<Uint32Array> =>
    signTexts(pool, texts, { shingle, numPerm, seed }, signal);

  function decide(inputs: readonly T[], signatures: Uint32Array): Array<Outcome<T>> {
    const outcomes: Array<Outcome<T>> = [];
    for (let i = 0; i < inputs.length; i++) {
      const signature = signatureAt(signatures, numPerm, i);
      try {
        const duplicate = index.findDuplicate(signature, threshold);
        if (duplicate !== undefined) {
          outcomes.push(drop(NEAR_DUPLICATE, { duplicateOf: ids.get(duplicate.ordinal) }));
          continue;
        }
        // The id first: if it cannot be stored (too long), the record fails and is not indexed.
        const ordinal = ids.add(options.idOf(inputs[i]!));
        if (index.add(signature) !== ordinal) throw new Error('LSH index and id store out of step');
        outcomes.push(emit(inputs[i]!));
      } catch (error) {
        outcomes.push(fail(error));
      }
    }
    return outcomes;
  }

  return {
    name: options.name ?? 'near_dedupe',
    replay: options.replay ?? true,
    batchSize: options.batchSize ?? 256,
    concurrency: options.concurrency ?? 4,
    ordered: true,
    get kept() {
      return ids.size;
    },
    get bytes() {
      return index.bytes + ids.bytes;
    },
    async prime(batches, signal) {
      await tail;
      for await (const batch of batches) {
        if (batch.length === 0) continue;
        const signatures = await sign(
          batch.map((r) => r.text),
          signal,
        );
        for (let i = 0; i < batch.length; i++) {
          const signature = signatureAt(signatures, numPerm, i);
          if (index.findDuplicate(signature, threshold) !== undefined) continue;
          const ordinal = ids.add(batch[i]!.id);
          if (index.add(signature) !== ordinal) throw new Error('LSH index and id store out of step');
        }
      }
    },
    async processBatch(inputs, ctx) {
      // Synchronous up to the first await: the engine calls batches in input order, so this claims the turn.
      const previous = tail;
      let release!: () => void;
      tail = new Promise<void>((resolve) => (release = resolve));
      let signatures: Uint32Array | undefined;
      let failure: unknown;
      try {
        signatures = await sign(
          inputs.map((record) => options.textOf(record)),
          ctx.signal,
        );
      } catch (error) {
        failure = error;
      }
      await previous;
      try {
        if (signatures === undefined) throw failure;
        return decide(inputs, signatures);
      } finally {
        release();
      }
    },
  };
}

/** The options that are set: an explicit `undefined` must not override a default. */
function definedOnly(options: Partial<NearDedupeParams>): Partial<NearDedupeParams> {
  const out: Partial<Record<keyof NearDedupeParams, number>> = {};
  for (const key of ['shingle', 'numPerm', 'bands', 'threshold', 'seed'] as const) {
    if (options[key] !== undefined) out[key] = options[key];
  }
  return out;
}
