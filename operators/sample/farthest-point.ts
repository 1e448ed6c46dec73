import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { siblingModule } from '../../pipeline/pool/worker-file.js';
import { WorkerPool } from '../../pipeline/pool/worker-pool.js';
import {
  jsKernel,
  rowOf,
  startIndex,
  type KernelKind,
  type RowKernel,
  type VectorMatrix,
} from './farthest-point-kernel.js';
import type { FarthestPointTask, StepReply, StepRequest } from './farthest-point-worker.js';
import { prepareSimd, SimdKernel, simdAvailable } from './simd-kernel.js';

export { matrixOf, rowOf, startIndex, type KernelKind, type VectorMatrix } from './farthest-point-kernel.js';

/**
 * Greedy farthest-point (max-min) selection of k rows under cosine distance 1 - a·b (rows L2-normalised):
 * start at a seeded row, then repeatedly add the row whose distance to its nearest selected row is largest.
 * O(N·K·D) time, O(N) extra memory (one minDist array updated in place: nothing is ever deleted from an array).
 * Ties go to the lowest row index, so the selection is a function of the vectors, k and the seed only.
 */
export interface FarthestPointOptions {
  /** Rows to select; more than there are selects all of them (in farthest-first order). */
  readonly k: number;
  /** Picks the first row (`startIndex`). */
  readonly seed: number;
  /**
   * The per-row step: `simd` (default where WebAssembly SIMD runs; 3.3-3.6x faster, bench/RESULTS-sample.md §6) or
   * `js`. Both give the same selection bit for bit. `simd` reads matrices backed by WebAssembly memories
   * (VectorStore) in place and copies any other (matrixOf) into memories once per selection.
   */
  readonly kernel?: KernelKind;
}

export interface FarthestPointResult {
  /** Row indices in the order they were selected. */
  readonly selected: Uint32Array;
  /** distances[t]: the distance of selected[t] to the nearest row selected before it (Infinity for the first). */
  readonly distances: Float64Array;
}

export interface ParallelFarthestPointOptions extends FarthestPointOptions {
  /** Worker threads; rows are split into this many contiguous ranges. */
  readonly threads: number;
  /**
   * How the threads agree on each step: `atomics` (default) steps them through a barrier on shared memory;
   * `messages` has this thread send each step and reduce the answers (kept to measure against).
   */
  readonly sync?: 'atomics' | 'messages';
  /** Aborting terminates the workers and rejects. */
  readonly signal?: AbortSignal;
}

function checkMatrix(m: VectorMatrix): void {
  if (m.blocks.length * m.blockRows < m.count) {
    throw new RangeError(`${m.blocks.length} blocks of ${m.blockRows} rows cannot hold ${m.count} rows`);
  }
  for (let i = 0; i < m.count; i++) {
    const row = rowOf(m, i);
    for (let j = 0; j < row.length; j++) {
      if (!Number.isFinite(row[j]!)) throw new RangeError(`row ${i} holds a value that is not finite`);
    }
  }
}

/** k clamped to [0, count], and the start row (undefined when nothing is selected). */
function plan(m: VectorMatrix, options: FarthestPointOptions): { k: number; start: number | undefined } {
  if (!Number.isInteger(options.k) || options.k < 0) {
    throw new RangeError(`k must be a non-negative integer, got ${options.k}`);
  }
  const k = Math.min(options.k, m.count);
  return { k, start: k === 0 ? undefined : startIndex(options.seed, m.count) };
}

function kernelOf(options: FarthestPointOptions): KernelKind {
  const kernel = options.kernel ?? (simdAvailable ? 'simd' : 'js');
  if (kernel === 'simd' && !simdAvailable)
    throw new Error('this runtime has no WebAssembly SIMD: use kernel js');
  return kernel;
}

/** Single-thread selection, in the calling thread. */
export function farthestPoint(m: VectorMatrix, options: FarthestPointOptions): FarthestPointResult {
  checkMatrix(m);
  const { k, start } = plan(m, options);
  const selected = new Uint32Array(k);
  const distances = new Float64Array(k);
  if (start === undefined) return { selected, distances };
  const simd = kernelOf(options) === 'simd' ? prepareSimd(m, 1) : undefined;
  const matrix = simd?.matrix ?? m;
  const kernel: RowKernel = simd === undefined ? jsKernel(m) : new SimdKernel(simd.matrix, 0);
  try {
    const minDist = new Float64Array(m.count).fill(Infinity);
    const best = new Float64Array(1);
    let s = start;
    minDist[s] = -Infinity;
    selected[0] = s;
    distances[0] = Infinity;
    for (let t = 1; t < k; t++) {
      s = kernel.updateAndArgmax(rowOf(matrix, s), minDist, 0, m.count, best);
      minDist[s] = -Infinity;
      selected[t] = s;
      distances[t] = best[0]!;
    }
  } finally {
    simd?.release();
  }
  return { selected, distances };
}

function sharedFloat64(length: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(length * 8));
}

/** The matrix with every block on shared memory; blocks that are not are copied (once). */
function sharedMatrix(m: VectorMatrix): VectorMatrix {
  if (m.blocks.every((b) => b.buffer instanceof SharedArrayBuffer)) return m;
  const blocks = m.blocks.map((block) => {
    if (block.buffer instanceof SharedArrayBuffer) return block;
    const copy = new Float32Array(new SharedArrayBuffer(block.byteLength));
    copy.set(block);
    return copy;
  });
  return { ...m, blocks };
}

/**
 * The same selection as `farthestPoint`, bit for bit, computed by `threads` worker threads that each own a
 * contiguous range of rows and share the vectors and the minDist array through SharedArrayBuffers. Each step
 * costs one barrier (Atomics) per thread, no message. The calling thread only waits, so the event loop stays free.
 */
export async function farthestPointParallel(
  m: VectorMatrix,
  options: ParallelFarthestPointOptions,
): Promise<FarthestPointResult> {
  checkMatrix(m);
  const { k, start } = plan(m, options);
  if (start === undefined) return { selected: new Uint32Array(0), distances: new Float64Array(0) };
  options.signal?.throwIfAborted();
  const workers = Math.max(1, Math.min(Math.floor(options.threads), m.count));
  const sync = options.sync ?? 'atomics';
  const kernel = kernelOf(options);
  // Worker w uses query slot w of every block (simd-kernel.ts).
  const simd = kernel === 'simd' ? prepareSimd(m, workers) : undefined;
  try {
    const matrix = simd?.matrix ?? sharedMatrix(m);
    return await runWorkers(matrix, { k, start, workers, sync, kernel, signal: options.signal });
  } finally {
    simd?.release();
  }
}

interface WorkersPlan {
  readonly k: number;
  readonly start: number;
  readonly workers: number;
  readonly sync: 'atomics' | 'messages';
  readonly kernel: KernelKind;
  readonly signal: AbortSignal | undefined;
}

async function runWorkers(matrix: VectorMatrix, plan: WorkersPlan): Promise<FarthestPointResult> {
  const { k, start, workers, sync, kernel } = plan;
  const minDist = sharedFloat64(matrix.count).fill(Infinity);
  minDist[start] = -Infinity;
  const selected = new Uint32Array(new SharedArrayBuffer(k * 4));
  const distances = sharedFloat64(k);
  selected[0] = start;
  distances[0] = Infinity;
  const base = {
    matrix,
    k,
    start,
    workers,
    minDist,
    control: new Int32Array(new SharedArrayBuffer(8)),
    best: sharedFloat64(workers * 4),
    selected,
    distances,
    sync,
    kernel,
  };
  const pool = new WorkerPool({
    filename: siblingModule(import.meta.url, 'farthest-point-worker'),
    threads: workers,
    maxQueue: workers,
  });
  const channels = sync === 'messages' ? Array.from({ length: workers }, () => new MessageChannel()) : [];
  try {
    const runs = Array.from({ length: workers }, (_, worker) => {
      const port = channels[worker]?.port2;
      const task: FarthestPointTask = {
        ...base,
        worker,
        lo: Math.floor((matrix.count * worker) / workers),
        hi: Math.floor((matrix.count * (worker + 1)) / workers),
        port,
      };
      return pool.run<'done'>(task, {
        transferList: port === undefined ? [] : [port],
        signal: plan.signal,
      });
    });
    // The first failure rejects at once; closing the pool below then terminates threads left at the barrier.
    const finished = Promise.all(runs);
    if (sync === 'messages') {
      const ports = channels.map((c) => new StepPort(c.port1));
      const stop = finished.then(() => {
        throw new Error('a farthest-point worker ended before the selection did');
      });
      stop.catch(() => {});
      let s = start;
      for (let t = 1; t < k; t++) {
        const replies = await Promise.race([Promise.all(ports.map((p) => p.ask({ query: s }))), stop]);
        let value = -Infinity;
        let next = -1;
        for (const reply of replies) {
          if (reply.index >= 0 && (next < 0 || reply.value > value)) {
            value = reply.value;
            next = reply.index;
          }
        }
        s = next;
        minDist[s] = -Infinity;
        selected[t] = s;
        distances[t] = value;
      }
      for (const port of ports) port.end();
    }
    await finished;
  } finally {
    for (const c of channels) c.port1.close();
    await pool.close();
  }
  return { selected: Uint32Array.from(selected), distances: Float64Array.from(distances) };
}

/** The parent's end of a `messages`-mode channel: one request, one reply. */
class StepPort {
  private pending: ((reply: StepReply) => void) | undefined;

  constructor(private readonly port: MessagePort) {
    port.on('message', (reply: StepReply) => this.pending?.(reply));
  }

  ask(request: StepRequest): Promise<StepReply> {
    return new Promise((resolve) => {
      this.pending = resolve;
      this.port.postMessage(request);
    });
  }

  end(): void {
    this.port.postMessage('end');
  }
}
