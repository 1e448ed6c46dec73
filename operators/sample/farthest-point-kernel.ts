import { fmix32 } from '../../pipeline/hash.js';
import type { WasmMemory } from './block-memory.js';

/**
 * The one step of greedy farthest-point selection that touches every row, shared by the single-thread version and
 * every worker of the parallel one: the same code in the same order, so both produce the same bits.
 */

/**
 * Row-major vectors, `blockRows` rows per block (the last block may be partly used). A plain N×D Float32Array is
 * one block (`matrixOf`); a growing store adds blocks without copying earlier ones.
 */
export interface VectorMatrix {
  readonly count: number;
  readonly dimensions: number;
  readonly blockRows: number;
  readonly blocks: readonly Float32Array[];
  /**
   * When the blocks live in shared WebAssembly memories (VectorStore's do): memories[b] holds blocks[b] at
   * offset 0, laid out by block-memory.ts's blockLayout(blockRows, dimensions), for the SIMD kernel.
   */
  readonly memories?: readonly WasmMemory[];
}

/** `js`: typed-array loops (this file); `simd`: WebAssembly SIMD dot products (simd-kernel.ts), same bits. */
export type KernelKind = 'js' | 'simd';

/** One thread's step over a range of rows; see `updateAndArgmax`. */
export interface RowKernel {
  updateAndArgmax(
    query: Float32Array,
    minDist: Float64Array,
    lo: number,
    hi: number,
    best: Float64Array,
  ): number;
}

/** The JS kernel as a RowKernel. */
export function jsKernel(m: VectorMatrix): RowKernel {
  return {
    updateAndArgmax: (query, minDist, lo, hi, best) => updateAndArgmax(m, query, minDist, lo, hi, best),
  };
}

/** A row-major N×D Float32Array as a one-block matrix (no copy). */
export function matrixOf(vectors: Float32Array, dimensions: number): VectorMatrix {
  if (!Number.isInteger(dimensions) || dimensions < 1 || vectors.length % dimensions !== 0) {
    throw new RangeError(`${vectors.length} values are not rows of ${dimensions}`);
  }
  const count = vectors.length / dimensions;
  return { count, dimensions, blockRows: Math.max(1, count), blocks: [vectors] };
}

/** Row `i` as a view into its block (no copy). */
export function rowOf(m: VectorMatrix, i: number): Float32Array {
  const block = m.blocks[Math.floor(i / m.blockRows)]!;
  const offset = (i % m.blockRows) * m.dimensions;
  return block.subarray(offset, offset + m.dimensions);
}

/**
 * For rows [lo, hi): minDist[i] = min(minDist[i], 1 - row_i · query), then returns the row with the largest
 * minDist (the lowest index among equals), or -1 when every row in the range is already selected (minDist is
 * -Infinity). Its value is written to best[0]. The dot product runs in doubles with four accumulators summed
 * in a fixed order: callers get identical results whichever thread runs which range.
 */
export function updateAndArgmax(
  m: VectorMatrix,
  query: Float32Array,
  minDist: Float64Array,
  lo: number,
  hi: number,
  best: Float64Array,
): number {
  const d = m.dimensions;
  const d4 = d - (d % 4);
  const rows = m.blockRows;
  let bestValue = -Infinity;
  let bestIndex = -1;
  let i = lo;
  while (i < hi) {
    const b = Math.floor(i / rows);
    const block = m.blocks[b]!;
    const end = Math.min(hi, (b + 1) * rows);
    let o = (i - b * rows) * d;
    for (; i < end; i++, o += d) {
      let current = minDist[i]!;
      if (current !== -Infinity) {
        let a0 = 0;
        let a1 = 0;
        let a2 = 0;
        let a3 = 0;
        let j = 0;
        for (; j < d4; j += 4) {
          a0 += block[o + j]! * query[j]!;
          a1 += block[o + j + 1]! * query[j + 1]!;
          a2 += block[o + j + 2]! * query[j + 2]!;
          a3 += block[o + j + 3]! * query[j + 3]!;
        }
        for (; j < d; j++) a0 += block[o + j]! * query[j]!;
        const distance = 1 - (a0 + a1 + (a2 + a3));
        if (distance < current) {
          current = distance;
          minDist[i] = distance;
        }
        if (current > bestValue) {
          bestValue = current;
          bestIndex = i;
        }
      }
    }
  }
  best[0] = bestValue;
  return bestIndex;
}

/** The first selected row: a function of the seed and the row count only. */
export function startIndex(seed: number, count: number): number {
  return fmix32((seed ^ 0x9e3779b9) >>> 0) % count;
}
