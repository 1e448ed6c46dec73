// One worker of parallel farthest-point selection: owns rows [lo, hi) of the shared minDist array.
import type { MessagePort } from 'node:worker_threads';
import {
  jsKernel,
  rowOf,
  type KernelKind,
  type RowKernel,
  type VectorMatrix,
} from './farthest-point-kernel.js';
import { hasMemories, SimdKernel } from './simd-kernel.js';

/**
 * What every worker gets at start. All arrays are views of SharedArrayBuffers: the vectors are never copied.
 * `best` holds (value, index) per worker for two alternating steps, so a fast worker writing step t+1 never
 * overwrites what a slow one still reads for step t.
 */
export interface FarthestPointTask {
  readonly matrix: VectorMatrix;
  readonly k: number;
  readonly start: number;
  readonly worker: number;
  readonly workers: number;
  readonly lo: number;
  readonly hi: number;
  readonly minDist: Float64Array;
  /** [0] threads arrived at the barrier, [1] barrier generation. */
  readonly control: Int32Array;
  readonly best: Float64Array;
  /** Written by worker 0 (Atomics mode). */
  readonly selected: Uint32Array;
  readonly distances: Float64Array;
  /** `atomics`: workers step together through a barrier; `messages`: the parent sends each step. */
  readonly sync: 'atomics' | 'messages';
  /** `messages` mode: this worker's end of a channel to the parent. */
  readonly port?: MessagePort;
  /** `simd`: the matrix has memories with a query slot per worker (prepareSimd); this worker uses slot `worker`. */
  readonly kernel: KernelKind;
}

/** Messages of `messages` mode: the parent sends the last selected row, the worker answers its best row. */
export interface StepRequest {
  readonly query: number;
}
export interface StepReply {
  readonly value: number;
  readonly index: number;
}

const COUNT = 0;
const GENERATION = 1;
/** Atomics.load polls before sleeping in Atomics.wait: a step's wake-up then costs no system call. */
const SPINS = 4096;

/** A reusable barrier for `parties` threads on two Int32 cells (count, generation). */
function barrier(control: Int32Array, parties: number): void {
  const generation = Atomics.load(control, GENERATION);
  if (Atomics.add(control, COUNT, 1) === parties - 1) {
    Atomics.store(control, COUNT, 0);
    Atomics.add(control, GENERATION, 1);
    Atomics.notify(control, GENERATION);
    return;
  }
  for (let spin = 0; spin < SPINS; spin++) {
    if (Atomics.load(control, GENERATION) !== generation) return;
  }
  while (Atomics.load(control, GENERATION) === generation) Atomics.wait(control, GENERATION, generation);
}

function kernelOf(task: FarthestPointTask): RowKernel {
  if (task.kernel === 'js') return jsKernel(task.matrix);
  if (!hasMemories(task.matrix)) throw new Error('the simd kernel needs a matrix in WebAssembly memories');
  return new SimdKernel(task.matrix, task.worker);
}

function runAtomics(task: FarthestPointTask): void {
  const { matrix, k, worker, workers, lo, hi, minDist, control, best, selected, distances } = task;
  const kernel = kernelOf(task);
  const scratch = new Float64Array(1);
  let s = task.start;
  for (let t = 1; t < k; t++) {
    const index = kernel.updateAndArgmax(rowOf(matrix, s), minDist, lo, hi, scratch);
    const half = (t & 1) * workers * 2;
    best[half + worker * 2] = scratch[0]!;
    best[half + worker * 2 + 1] = index;
    barrier(control, workers);
    // Every worker reduces the same numbers in the same order, so all agree on the next row without a leader.
    // Ranges ascend with the worker number, so the first maximum is the lowest row index.
    let value = -Infinity;
    let next = -1;
    for (let u = 0; u < workers; u++) {
      const i = best[half + u * 2 + 1]!;
      const v = best[half + u * 2]!;
      if (i >= 0 && (next < 0 || v > value)) {
        value = v;
        next = i;
      }
    }
    s = next;
    if (s >= lo && s < hi) minDist[s] = -Infinity;
    if (worker === 0) {
      selected[t] = s;
      distances[t] = value;
    }
  }
}

/**
 * The piscina task: one per thread, all running at once (the pool has exactly `workers` threads). The parent
 * filled minDist (Infinity, and -Infinity at the start row) before submitting.
 */
export default function farthestPointTask(task: FarthestPointTask): Promise<'done'> | 'done' {
  if (task.sync === 'atomics') {
    runAtomics(task);
    return 'done';
  }
  const port = task.port!;
  const { matrix, minDist, lo, hi } = task;
  const kernel = kernelOf(task);
  const scratch = new Float64Array(1);
  return new Promise((resolve) => {
    port.on('message', (request: StepRequest | 'end') => {
      if (request === 'end') {
        port.close();
        resolve('done');
        return;
      }
      const index = kernel.updateAndArgmax(rowOf(matrix, request.query), minDist, lo, hi, scratch);
      port.postMessage({ value: scratch[0]!, index } satisfies StepReply);
    });
  });
}
