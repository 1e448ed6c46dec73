import { rowOf, type RowKernel, type VectorMatrix } from './farthest-point-kernel.js';
import {
  allocateBlock,
  blockLayout,
  DEFAULT_BLOCK_ROWS,
  ensureQuerySlots,
  lockBlocks,
  type BlockLayout,
  type WasmMemory,
} from './block-memory.js';
import { leb, oneFunctionModule, sleb, TYPE } from './wasm-bytes.js';

/**
 * The farthest-point step (farthest-point-kernel.ts) with its dot products in WebAssembly SIMD, bit for bit the
 * JS kernel's results: each float32 is widened to float64 (f64x2.promote_low_f32x4), multiplied in float64 (exact,
 * as in JS), and added into the same four accumulators in the same order, a0..a3 over the j % 4 lanes as two
 * f64x2 vectors (a0, a1) and (a2, a3), summed a0 + a1 + (a2 + a3); the tail j >= d - d % 4 goes into a0. WebAssembly
 * never fuses a multiply and an add, so every rounding is the JS kernel's. The min and argmax over the dots stay
 * in JS (N operations per step, against N·D in the kernel).
 */

// ---- the module: dots(rows, n, d, q, out) -------------------------------------------------------------------

const [I32, F64, V128] = [TYPE.i32, TYPE.f64, TYPE.v128];
const get = (i: number): number[] => [0x20, i];
const set = (i: number): number[] => [0x21, i];
const tee = (i: number): number[] => [0x22, i];
const i32 = (v: number): number[] => [0x41, ...sleb(v)];
const simd = (op: number): number[] => [0xfd, ...leb(op)];
const [BLOCK, LOOP, IF, END, BR, BR_IF, VOID] = [0x02, 0x03, 0x04, 0x0b, 0x0c, 0x0d, 0x40];
const [ADD, AND, SHL, LT_U, GE_U] = [0x6a, 0x71, 0x74, 0x49, 0x4f];
const [F32_LOAD, F64_LOAD, F64_STORE, F64_ADD, F64_MUL, F64_PROMOTE] = [0x2a, 0x2b, 0x39, 0xa0, 0xa2, 0xbb];
const v128Load = (offset: number): number[] => [...simd(0x00), 4, ...leb(offset)];
const load64Zero = (offset: number): number[] => [...simd(0x5d), 3, ...leb(offset)];
const PROMOTE_LOW = simd(0x5f); // f64x2.promote_low_f32x4
const [F64X2_ADD, F64X2_MUL] = [simd(0xf0), simd(0xf2)];
const lane = (l: number): number[] => [...simd(0x21), l]; // f64x2.extract_lane
const ZERO = [...simd(0x0c), ...new Array<number>(16).fill(0)];

// params: rows (byte address of the first row), n rows, d, q (byte address of d float64), out (n float64)
const [P_ROWS, P_N, P_D, P_Q, P_OUT] = [0, 1, 2, 3, 4];
// locals: row counter, element counter, d rounded down to 4, row address, element address (i32); a0 (f64);
// (a0, a1) and (a2, a3) (v128). One row at a time: computing two at once (sharing the query loads) measured
// 2.7x slower in V8 (16 against 6 ms for 100k rows of 256).
const [I, J, D4, ROW, ELEM, A0, ACC01, ACC23] = [5, 6, 7, 8, 9, 10, 11, 12];

const QUERY_AT_J = [...get(P_Q), ...get(J), ...i32(3), SHL, ADD];

function dotsBody(): number[] {
  return [
    ...[...get(P_D), ...i32(-4), AND, ...set(D4)],
    ...[...get(P_ROWS), ...set(ROW)],
    ...[BLOCK, VOID, LOOP, VOID, ...get(I), ...get(P_N), GE_U, BR_IF, 1], // for i < n
    ...[...ZERO, ...set(ACC01), ...ZERO, ...set(ACC23), ...i32(0), ...set(J)],
    // Four lanes per iteration: (a0, a1) += row[j, j+1] · q[j, j+1]; (a2, a3) += row[j+2, j+3] · q[j+2, j+3].
    ...[...get(D4), IF, VOID, LOOP, VOID],
    ...[...get(ROW), ...get(J), ...i32(2), SHL, ADD, ...set(ELEM)],
    ...[...get(ACC01), ...get(ELEM), ...load64Zero(0), ...PROMOTE_LOW, ...QUERY_AT_J, ...v128Load(0)],
    ...[...F64X2_MUL, ...F64X2_ADD, ...set(ACC01)],
    ...[...get(ACC23), ...get(ELEM), ...load64Zero(8), ...PROMOTE_LOW, ...QUERY_AT_J, ...v128Load(16)],
    ...[...F64X2_MUL, ...F64X2_ADD, ...set(ACC23)],
    ...[...get(J), ...i32(4), ADD, ...tee(J), ...get(D4), LT_U, BR_IF, 0, END, END],
    // The d % 4 tail goes into a0, as in JS.
    ...[...get(ACC01), ...lane(0), ...set(A0)],
    ...[BLOCK, VOID, LOOP, VOID, ...get(J), ...get(P_D), GE_U, BR_IF, 1],
    ...[...get(A0), ...get(ROW), ...get(J), ...i32(2), SHL, ADD, F32_LOAD, 2, 0, F64_PROMOTE],
    ...[...QUERY_AT_J, F64_LOAD, 3, 0, F64_MUL, F64_ADD, ...set(A0)],
    ...[...get(J), ...i32(1), ADD, ...set(J), BR, 0, END, END],
    // out[i] = a0 + a1 + (a2 + a3)
    ...[...get(P_OUT), ...get(I), ...i32(3), SHL, ADD],
    ...[...get(A0), ...get(ACC01), ...lane(1), F64_ADD],
    ...[...get(ACC23), ...lane(0), ...get(ACC23), ...lane(1), F64_ADD, F64_ADD, F64_STORE, 3, 0],
    ...[...get(ROW), ...get(P_D), ...i32(2), SHL, ADD, ...set(ROW)], // next row
    ...[...get(I), ...i32(1), ADD, ...set(I), BR, 0, END, END],
    END,
  ];
}

/** The module's bytes: `dots(rows, n, d, q, out)`, out[i] = row_i · q as float64, rows of d float32. */
export const DOTS_WASM: Uint8Array = oneFunctionModule({
  exportName: 'dots',
  params: [I32, I32, I32, I32, I32],
  locals: [
    [5, I32],
    [1, F64],
    [2, V128],
  ],
  body: dotsBody(),
  sharedMaxPages: 65536,
});

// ---- compiling it, once per thread ---------------------------------------------------------------------------

interface WasmModule {
  readonly kind?: never;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

type Dots = (rows: number, n: number, d: number, q: number, out: number) => void;

/** Whether this runtime runs the kernel (WebAssembly with SIMD and shared memory). */
export const simdAvailable: boolean = wasm?.validate(DOTS_WASM) ?? false;

let compiled: WasmModule | undefined;

function dotsFor(memory: WasmMemory): Dots {
  if (!simdAvailable) throw new Error('this runtime has no WebAssembly SIMD: use the js kernel');
  compiled ??= new wasm!.Module(DOTS_WASM);
  return new wasm!.Instance(compiled, { env: { mem: memory } }).exports.dots as Dots;
}

// ---- the step ------------------------------------------------------------------------------------------------

/** A matrix whose blocks live in WebAssembly memories laid out by blockLayout(blockRows, dimensions). */
export interface MemoryMatrix extends VectorMatrix {
  readonly memories: readonly WasmMemory[];
}

export const hasMemories = (m: VectorMatrix): m is MemoryMatrix =>
  m.memories !== undefined && m.memories.length === m.blocks.length;

interface BlockKernel {
  readonly dots: Dots;
  /** This thread's query slot, as float64. */
  readonly query: Float64Array;
  readonly queryAddress: number;
  /** The block's dot-product area, one per row. */
  readonly out: Float64Array;
}

/**
 * `updateAndArgmax` for one thread, which owns query slot `slot` in every block it touches and the dots of the
 * rows it is given. Instantiates the module for a block the first time a range reaches it.
 */
export class SimdKernel implements RowKernel {
  private readonly layout: BlockLayout;
  private readonly blocks: Array<BlockKernel | undefined>;

  constructor(
    private readonly m: MemoryMatrix,
    private readonly slot: number,
  ) {
    this.layout = blockLayout(m.blockRows, m.dimensions);
    this.blocks = new Array<BlockKernel | undefined>(m.blocks.length);
  }

  private block(b: number): BlockKernel {
    const existing = this.blocks[b];
    if (existing !== undefined) return existing;
    const memory = this.m.memories[b]!;
    const { rows, dims, dotsOffset, queryOffset, queryStride } = this.layout;
    const queryAddress = queryOffset + this.slot * queryStride;
    if (queryAddress + dims * 8 > memory.buffer.byteLength) {
      throw new RangeError(`block ${b} has no query slot ${this.slot} (ensureQuerySlots first)`);
    }
    const made: BlockKernel = {
      dots: dotsFor(memory),
      query: new Float64Array(memory.buffer, queryAddress, dims),
      queryAddress,
      out: new Float64Array(memory.buffer, dotsOffset, rows),
    };
    this.blocks[b] = made;
    return made;
  }

  updateAndArgmax(
    query: Float32Array,
    minDist: Float64Array,
    lo: number,
    hi: number,
    best: Float64Array,
  ): number {
    const d = this.m.dimensions;
    const rows = this.m.blockRows;
    const { dotsOffset } = this.layout;
    let bestValue = -Infinity;
    let bestIndex = -1;
    let i = lo;
    while (i < hi) {
      const b = Math.floor(i / rows);
      const end = Math.min(hi, (b + 1) * rows);
      const first = i - b * rows;
      const block = this.block(b);
      block.query.set(query); // float32 to float64: exact
      block.dots(first * d * 4, end - i, d, block.queryAddress, dotsOffset + first * 8);
      const out = block.out;
      for (let r = first; i < end; i++, r++) {
        let current = minDist[i]!;
        if (current !== -Infinity) {
          const distance = 1 - out[r]!;
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
}

// ---- getting a matrix ready ----------------------------------------------------------------------------------

/**
 * `m` itself when its blocks live in memories (VectorStore); otherwise a copy into new shared memories of
 * DEFAULT_BLOCK_ROWS rows each: N·D·4 more bytes while the selection runs, copied in well under a step's time.
 */
export function memoryMatrix(m: VectorMatrix): MemoryMatrix {
  if (hasMemories(m)) return m;
  const d = m.dimensions;
  const blockRows = Math.max(1, Math.min(DEFAULT_BLOCK_ROWS, m.count));
  const blocks: Float32Array[] = [];
  const memories: WasmMemory[] = [];
  for (let lo = 0; lo < m.count; lo += blockRows) {
    const { memory, vectors } = allocateBlock(blockRows, d);
    for (let i = lo; i < Math.min(m.count, lo + blockRows); i++) vectors.set(rowOf(m, i), (i - lo) * d);
    blocks.push(vectors);
    memories.push(memory);
  }
  return { count: m.count, dimensions: d, blockRows, blocks, memories };
}

/**
 * `m` ready for SIMD kernels in slots 0 .. threads-1: in memories (memoryMatrix), with that many query slots in
 * every block, and locked against a second selection until `release`.
 */
export function prepareSimd(m: VectorMatrix, threads: number): { matrix: MemoryMatrix; release: () => void } {
  const matrix = memoryMatrix(m);
  const layout = blockLayout(matrix.blockRows, matrix.dimensions);
  const release = lockBlocks(matrix.memories, layout);
  try {
    for (const memory of matrix.memories) ensureQuerySlots(memory, layout, threads);
  } catch (error) {
    release();
    throw error;
  }
  return { matrix, release };
}
