/**
 * The sample stage's costs: greedy farthest-point selection (serial against worker threads, Atomics against a
 * message per step), the hashing vectorizer (in-thread against a worker pool, alone and inside the engine), and
 * the quality filters.
 *
 *   npx tsx bench/farthest-point.ts [--part all|fp|kernels|sync|simd|vectorizer|engine|filters] [--n 100000]
 *       [--k 10000] [--dims 256,384] [--shard bench/data/shard-500m.zstd.parquet]
 *
 * `fp` and `kernels` at N = 100k, K = 10k run for several minutes: run them in the background with output to a
 * log file. `kernels` uses the first of --dims.
 * Run it compiled, from the repository root: worker threads started from .ts sources load them through tsx,
 * whose module interop made the vectorizer ~5x slower in a worker than in the main thread (bench/RESULTS-sample.md):
 *
 *   npx tsc -p tsconfig.json --outDir /tmp/air-build && ln -sfn "$PWD/node_modules" /tmp/air-build/node_modules
 *   node /tmp/air-build/bench/farthest-point.js --part all > /tmp/farthest-point.log 2>&1 &
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import {
  farthestPoint,
  farthestPointParallel,
  matrixOf,
  rowOf,
  type FarthestPointResult,
  type VectorMatrix,
} from '../operators/sample/farthest-point.js';
import { diversitySelect } from '../operators/sample/diversity-select.js';
import type { Embedder } from '../llm/embedder.js';
import { HashingEmbedder, PooledHashingEmbedder } from '../operators/sample/hashing-embedder.js';
import { HashingVectorizer } from '../operators/sample/hashing-vectorizer.js';
import { qualityIssue, type QualityFilterOptions } from '../operators/sample/quality-filters.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { ParquetSource } from '../pipeline/io/parquet-source.js';
import { resolveShards } from '../pipeline/io/shards.js';
import type { Ticket } from '../pipeline/ledger.js';
import { pipeline } from '../pipeline/run.js';
import type { Sink } from '../pipeline/source.js';
import type { Document } from '../schemas/documents.js';
import { seededRandom } from '../pipeline/random.js';
import { VectorStore } from '../operators/sample/vector-store.js';
import { leb, name, section } from '../operators/sample/wasm-bytes.js';

// Paths are relative to the working directory (the repository root), so the compiled copy finds them too.
const ROOT = process.cwd();
const WEB = path.resolve(ROOT, '../shared/data/web');
const FINEWEB = path.join(WEB, 'fineweb-sample.snappy.parquet');
const DOLMA = path.join(WEB, 'dolma-sample.zstd.parquet');

const { values } = parseArgs({
  options: {
    part: { type: 'string', default: 'all' },
    n: { type: 'string', default: '100000' },
    k: { type: 'string', default: '10000' },
    dims: { type: 'string', default: '256,384' },
    shard: { type: 'string', default: path.join(ROOT, 'bench/data/shard-500m.zstd.parquet') },
  },
});
const part = values.part!;
const wants = (name: string): boolean => part === 'all' || part === name;

function log(line: string): void {
  console.log(line);
}

function peakRssMB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** n unit vectors of d dimensions with uniform random directions per coordinate (seeded). */
function randomUnitVectors(n: number, d: number, seed: number): VectorMatrix {
  const next = seededRandom(seed);
  const v = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let j = 0; j < d; j++) {
      const x = next() - 0.5;
      v[i * d + j] = x;
      norm += x * x;
    }
    const scale = 1 / Math.sqrt(norm);
    for (let j = 0; j < d; j++) v[i * d + j]! *= scale;
  }
  return matrixOf(v, d);
}

function same(a: FarthestPointResult, b: FarthestPointResult): boolean {
  return (
    Buffer.from(a.selected.buffer).equals(Buffer.from(b.selected.buffer)) &&
    Buffer.from(a.distances.buffer).equals(Buffer.from(b.distances.buffer))
  );
}

async function timed<T>(run: () => Promise<T> | T): Promise<{ value: T; seconds: number }> {
  const started = performance.now();
  const value = await run();
  return { value, seconds: (performance.now() - started) / 1000 };
}

async function texts(file: string): Promise<string[]> {
  const db = await DuckDBInstance.create(':memory:');
  const rows = (await (await db.connect()).runAndReadAll(`SELECT text FROM '${file}'`)).getRowsJS();
  db.closeSync();
  return rows.map((row) => row[0] as string);
}

const megabytes = (list: readonly string[]): number =>
  list.reduce((n, t) => n + Buffer.byteLength(t), 0) / 1e6;

// ---- farthest point: serial against 2 workers ------------------------------------------------------------

async function benchFarthestPoint(n: number, k: number, dims: number[]): Promise<void> {
  log(`\n## farthest point, N = ${n}, K = ${k}`);
  log('| D | vectors MB | serial s | 2 workers (Atomics) s | speed-up | identical |');
  log('| -: | -: | -: | -: | -: | :-: |');
  for (const d of dims) {
    const m = randomUnitVectors(n, d, d);
    const serial = await timed(() => farthestPoint(m, { k, seed: 1 }));
    const loadSerial = os.loadavg()[0]!;
    const parallel = await timed(() => farthestPointParallel(m, { k, seed: 1, threads: 2 }));
    const loadParallel = os.loadavg()[0]!;
    const macs = (n * k * d) / 1e9;
    log(
      `| ${d} | ${((n * d * 4) / 1e6).toFixed(0)} | ${serial.seconds.toFixed(1)} | ${parallel.seconds.toFixed(1)} | ` +
        `${(serial.seconds / parallel.seconds).toFixed(2)}x | ${same(serial.value, parallel.value) ? 'yes' : 'NO'} |`,
    );
    log(
      `  (${macs.toFixed(0)} G multiply-adds: ${(macs / serial.seconds).toFixed(2)} G/s serial, ` +
        `${(macs / parallel.seconds).toFixed(2)} G/s parallel; 1-min load average after each: ` +
        `${loadSerial.toFixed(1)}, ${loadParallel.toFixed(1)}; peak RSS so far ${peakRssMB().toFixed(0)} MB)`,
    );
  }
}

// ---- Atomics barrier against a message per step ----------------------------------------------------------

async function benchSync(): Promise<void> {
  log('\n## step synchronisation, 2 workers, D = 256 (best of two runs each)');
  log('| N | K | Atomics s | messages s | per step: Atomics µs | messages µs | identical |');
  log('| -: | -: | -: | -: | -: | -: | :-: |');
  for (const [n, k] of [
    [2_000, 2_000],
    [20_000, 5_000],
    [100_000, 2_000],
  ] as const) {
    const m = randomUnitVectors(n, 256, 7);
    // Worker start-up is included in both; warm the module cache once.
    await farthestPointParallel(m, { k: 2, seed: 1, threads: 2 });
    // Alternating runs, best of two each: other work on the machine shifts single runs by tens of percent.
    const runs: Array<{ sync: string; seconds: number; value: FarthestPointResult }> = [];
    for (const sync of ['atomics', 'messages', 'messages', 'atomics'] as const) {
      runs.push({ sync, ...(await timed(() => farthestPointParallel(m, { k, seed: 1, threads: 2, sync }))) });
    }
    const best = (sync: string) =>
      runs.filter((r) => r.sync === sync).reduce((a, b) => (a.seconds <= b.seconds ? a : b));
    const atomics = best('atomics');
    const messages = best('messages');
    log(
      `| ${n} | ${k} | ${atomics.seconds.toFixed(2)} | ${messages.seconds.toFixed(2)} | ` +
        `${((atomics.seconds / k) * 1e6).toFixed(0)} | ${((messages.seconds / k) * 1e6).toFixed(0)} | ` +
        `${same(atomics.value, messages.value) ? 'yes' : 'NO'} |`,
    );
  }
}

// ---- per step: air's JS and SIMD kernels, and a float32 SIMD kernel (headroom, not air's code path) ----------

/**
 * `dots(vec, n, d, q, out)`: out[i] = row_i · q for n rows of d float32 (d a multiple of 4), four lanes at a
 * time with f32x4 multiply and add, then the four lanes summed. Float32 sums round differently from air's
 * kernels (float64, simd-kernel.ts), so this one is measured only, as the ceiling of dropping exactness.
 */
function simdDotModule(): Uint8Array {
  const [I32, V128] = [0x7f, 0x7b];
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const tee = (i: number) => [0x22, i];
  const i32 = (v: number) => [0x41, v];
  const simd = (op: number) => [0xfd, ...leb(op)];
  const [ADD, SHL, LT_S, BR_IF, LOOP, END, F32_ADD] = [0x6a, 0x74, 0x48, 0x0d, 0x03, 0x0b, 0x92];
  const V128_LOAD = [...simd(0x00), 2, 0];
  const lane = (l: number) => [...get(8), ...simd(0x1f), l]; // f32x4.extract_lane
  // params: 0 vec, 1 n, 2 d, 3 q, 4 out; locals: 5 i, 6 row byte offset, 7 j, 8 accumulator (v128)
  const code = [
    ...[...get(1), 0x45, 0x04, 0x40, 0x0f, END], // if n == 0: return
    ...[LOOP, 0x40],
    ...[...simd(0x0c), ...new Array<number>(16).fill(0), ...set(8)], // acc = 0
    ...[...i32(0), ...set(7)],
    ...[LOOP, 0x40],
    ...get(8),
    ...[...get(0), ...get(6), ADD, ...get(7), ...i32(2), SHL, ADD, ...V128_LOAD], // vec[o + j]
    ...[...get(3), ...get(7), ...i32(2), SHL, ADD, ...V128_LOAD], // q[j]
    ...[...simd(0xe6), ...simd(0xe4), ...set(8)], // acc = acc + a * b (f32x4.mul, f32x4.add)
    ...[...get(7), ...i32(4), ADD, ...tee(7), ...get(2), LT_S, BR_IF, 0], // j += 4; loop while j < d
    END,
    ...[...get(4), ...get(5), ...i32(2), SHL, ADD], // &out[i]
    ...[...lane(0), ...lane(1), F32_ADD, ...lane(2), ...lane(3), F32_ADD, F32_ADD, 0x38, 2, 0], // f32.store
    ...[...get(6), ...get(2), ...i32(2), SHL, ADD, ...set(6)], // o += d * 4
    ...[...get(5), ...i32(1), ADD, ...tee(5), ...get(1), LT_S, BR_IF, 0], // i++; loop while i < n
    END,
    END,
  ];
  const body = [...leb(2), 3, I32, 1, V128, ...code];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [1, 0x60, 5, I32, I32, I32, I32, I32, 0]), // type: (i32 x5) -> ()
    ...section(2, [1, ...name('env'), ...name('mem'), 0x02, 0x00, ...leb(1)]), // import memory
    ...section(3, [1, 0]),
    ...section(7, [1, ...name('dots'), 0x00, 0]),
    ...section(10, [1, ...leb(body.length), ...body]),
  ]);
}

/** The few WebAssembly calls used here (the project's TypeScript lib has no WebAssembly types). */
interface WasmApi {
  Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer };
  instantiate(
    bytes: Uint8Array,
    imports: object,
  ): Promise<{ instance: { exports: Record<string, unknown> } }>;
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

async function benchSimdHeadroom(n: number, d: number): Promise<void> {
  const bytes = n * d * 4 + d * 4 + n * 4;
  const memory = new wasm.Memory({ initial: Math.ceil(bytes / 65536) });
  const { instance } = await wasm.instantiate(simdDotModule(), { env: { mem: memory } });
  const dots = instance.exports.dots as (vec: number, n: number, d: number, q: number, out: number) => void;
  const source = randomUnitVectors(n, d, 11).blocks[0]!;
  const floats = new Float32Array(memory.buffer);
  floats.set(source);
  const [Q, OUT] = [n * d * 4, n * d * 4 + d * 4];
  const out = new Float32Array(memory.buffer, OUT, n);
  const minDist = new Float64Array(n).fill(Infinity);
  // One farthest-point step: the dot products in wasm, the min and argmax in JS (N operations, not N·D).
  const step = (s: number): number => {
    floats.copyWithin(Q / 4, s * d, s * d + d);
    dots(0, n, d, Q, OUT);
    let best = -Infinity;
    let index = -1;
    for (let i = 0; i < n; i++) {
      const m = Math.min(minDist[i]!, 1 - out[i]!);
      minDist[i] = m;
      if (m > best) {
        best = m;
        index = i;
      }
    }
    minDist[index] = -Infinity;
    return index;
  };
  const store = storeOf(matrixOf(source, d));
  let s = 0;
  for (let w = 0; w < 3; w++) s = step(s);
  const steps = 100;
  const simd = await timed(() => {
    for (let t = 0; t < steps; t++) s = step(s);
  });
  const js = await timed(() => farthestPoint(store, { k: steps + 1, seed: 1, kernel: 'js' }));
  const exact = await timed(() => farthestPoint(store, { k: steps + 1, seed: 1, kernel: 'simd' }));
  log(`\n## per step, one thread, N = ${n}, D = ${d}, ${steps} steps`);
  log('| kernel | ms per step | G multiply-adds/s |');
  log('| - | -: | -: |');
  for (const [label, seconds] of [
    ["air kernel 'js' (typed arrays, 4 double accumulators)", js.seconds],
    ["air kernel 'simd' (f64x2, the same bits as 'js')", exact.seconds],
    ['float32 SIMD f32x4 dot + JS min/argmax (not air)', simd.seconds],
  ] as const) {
    log(
      `| ${label} | ${((seconds / steps) * 1000).toFixed(1)} | ${((n * d * steps) / seconds / 1e9).toFixed(2)} |`,
    );
  }
}

// ---- full selection: JS against SIMD kernel, one and two threads ---------------------------------------------

/** The matrix in a VectorStore, as the diversity stage holds it (the SIMD kernel reads it in place). */
function storeOf(m: VectorMatrix): VectorMatrix {
  const store = new VectorStore({ dimensions: m.dimensions });
  for (let i = 0; i < m.count; i++) store.set(i, rowOf(m, i));
  return store.matrix();
}

async function benchKernels(n: number, k: number, d: number): Promise<void> {
  const m = storeOf(randomUnitVectors(n, d, d));
  // Warm both kernels and the worker module cache.
  for (const kernel of ['js', 'simd'] as const) {
    farthestPoint(m, { k: 3, seed: 1, kernel });
    await farthestPointParallel(m, { k: 3, seed: 1, threads: 2, kernel });
  }
  log(`\n## farthest point, JS against SIMD kernel: N = ${n}, K = ${k}, D = ${d}, VectorStore blocks`);
  log('| kernel | threads | s | ms per step | G multiply-adds/s | load avg after | same as js, 1 thread |');
  log('| - | -: | -: | -: | -: | -: | :-: |');
  const runs: Array<{ kernel: 'js' | 'simd'; threads: number; seconds: number; value: FarthestPointResult }> =
    [];
  for (const [kernel, threads] of [
    ['js', 1],
    ['simd', 1],
    ['simd', 2],
    ['js', 2],
  ] as const) {
    const run = await timed(() =>
      threads === 1
        ? farthestPoint(m, { k, seed: 1, kernel })
        : farthestPointParallel(m, { k, seed: 1, threads, kernel }),
    );
    runs.push({ kernel, threads, ...run });
    const macs = (n * k * d) / 1e9;
    log(
      `| ${kernel} | ${threads} | ${run.seconds.toFixed(1)} | ${((run.seconds / k) * 1000).toFixed(2)} | ` +
        `${(macs / run.seconds).toFixed(2)} | ${os.loadavg()[0]!.toFixed(1)} | ` +
        `${same(runs[0]!.value, run.value) ? 'yes' : 'NO'} |`,
    );
  }
  const time = (kernel: string, threads: number) =>
    runs.find((r) => r.kernel === kernel && r.threads === threads)!.seconds;
  log(
    `  simd/js speed-up: ${(time('js', 1) / time('simd', 1)).toFixed(2)}x on 1 thread, ` +
      `${(time('js', 2) / time('simd', 2)).toFixed(2)}x on 2; simd 2 threads against js 1 thread: ` +
      `${(time('js', 1) / time('simd', 2)).toFixed(2)}x; peak RSS ${peakRssMB().toFixed(0)} MB`,
  );
}

// ---- vectorizer alone ------------------------------------------------------------------------------------

async function benchVectorizer(): Promise<void> {
  const sample = await texts(FINEWEB);
  const docs = Array.from({ length: 20_000 }, (_, i) => sample[i % sample.length]!);
  const mb = megabytes(docs);
  log(
    `\n## hashing vectorizer alone: ${docs.length} FineWeb-sample documents (${mb.toFixed(0)} MB), D = 256`,
  );
  log('| how | docs/s | text MB/s |');
  log('| - | -: | -: |');
  for (const bigrams of [false, true]) {
    const options = { dimensions: 256, bigrams, seed: 0 };
    const vectorizer = new HashingVectorizer(options);
    const out = new Float32Array(256);
    for (const text of docs.slice(0, 2000)) vectorizer.vectorizeInto(text, out, 0); // JIT warm-up
    const inThread = await timed(() => {
      for (const text of docs) vectorizer.vectorizeInto(text, out, 0);
    });
    const label = bigrams ? 'unigrams + bigrams' : 'unigrams';
    log(
      `| in-thread, ${label} | ${Math.round(docs.length / inThread.seconds)} | ${(mb / inThread.seconds).toFixed(0)} |`,
    );
    for (const threads of [1, 2]) {
      const embedder = new PooledHashingEmbedder(options, threads);
      const batches: string[][] = [];
      for (let i = 0; i < docs.length; i += embedder.batchSize)
        batches.push(docs.slice(i, i + embedder.batchSize));
      await Promise.all(batches.slice(0, threads * 2).map((b) => embedder.embed(b))); // start and warm the threads
      const pooled = await timed(() => Promise.all(batches.map((b) => embedder.embed(b))));
      await embedder.close();
      log(
        `| pool, ${threads} thread${threads > 1 ? 's' : ''}, ${label} | ${Math.round(docs.length / pooled.seconds)} | ` +
          `${(mb / pooled.seconds).toFixed(0)} |`,
      );
    }
  }
}

// ---- vectorizer inside the engine ------------------------------------------------------------------------

/** Counts rows and commits them at once (the engine's own cost, without writing Parquet). */
class CountingSink implements Sink<Document> {
  readonly name = 'write';
  rows = 0;
  private onCommit: (tickets: readonly Ticket[]) => void = () => {};
  async open(onCommit: (tickets: readonly Ticket[]) => void): Promise<void> {
    this.onCommit = onCommit;
  }
  async write(_value: Document, ticket: Ticket): Promise<void> {
    this.rows++;
    this.onCommit([ticket]);
  }
  async close(): Promise<void> {}
}

/** Vectors of zeros: the engine, spill and store cost of the blocking stage without any vectorizing. */
class ZeroEmbedder implements Embedder {
  readonly description = 'zeros';
  readonly dimensions = 256;
  readonly batchSize = 64;
  readonly concurrency = 1;
  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    return texts.map(() => new Float32Array(256));
  }
}

async function benchEngine(shard: string): Promise<void> {
  if (!existsSync(shard)) {
    log(`\n(engine part skipped: ${shard} does not exist; make it as bench/RESULTS.md §3 says)`);
    return;
  }
  log(
    `\n## diversity_select inside the engine: ${path.relative(ROOT, shard)} → diversity_select (keeps all) → count`,
  );
  log('| embedder | wall s | docs/s | busy s in the stage |');
  log('| - | -: | -: | -: |');
  const options = { dimensions: 256, bigrams: false, seed: 0 };
  const makers: Array<[string, () => Embedder]> = [
    ['zeros (no vectorizing: engine + spill only)', () => new ZeroEmbedder()],
    ['hashing, in-thread', () => new HashingEmbedder(options)],
    ['hashing, pool of 1 thread', () => new PooledHashingEmbedder(options, 1)],
    ['hashing, pool of 2 threads', () => new PooledHashingEmbedder(options, 2)],
  ];
  for (const [label, make] of makers) {
    const db = await openDuckDB({ threads: 2, memoryLimit: '512MB' });
    const source = new ParquetSource(db, {
      shards: await resolveShards([shard]),
      textColumn: 'text',
      metaColumns: [],
    });
    const sink = new CountingSink();
    const op = diversitySelect<Document>({
      keep: Number.MAX_SAFE_INTEGER,
      seed: 0,
      threads: 2,
      embedder: make(),
    });
    const { value: report, seconds } = await timed(() =>
      pipeline(source).pipe(op).into(sink, { spillDir: os.tmpdir() }).run(),
    );
    db.closeSync();
    if (report.status !== 'completed') throw new Error(`${label}: ${report.status} ${report.error ?? ''}`);
    const stage = report.stages.find((s) => s.name === 'diversity_select')!;
    log(
      `| ${label} | ${seconds.toFixed(1)} | ${Math.round(sink.rows / seconds)} | ${(stage.busyMs / 1000).toFixed(1)} |`,
    );
  }
}

// ---- quality filters -------------------------------------------------------------------------------------

async function benchFilters(): Promise<void> {
  const options: QualityFilterOptions = {
    symbolRatio: { enabled: true, max: 0.5 },
    duplicateLines: { enabled: true, maxFraction: 0.1 },
    charRun: { enabled: true, maxRun: 10, includeWhitespace: true },
  };
  log('\n## quality filters (all three rules), in-thread');
  log('| sample | docs | text MB | MB/s | dropped: symbol_ratio / char_run / duplicate_lines |');
  log('| - | -: | -: | -: | - |');
  for (const file of [FINEWEB, DOLMA]) {
    const docs = await texts(file);
    const mb = megabytes(docs);
    const reasons: Record<string, number> = { symbol_ratio: 0, char_run: 0, duplicate_lines: 0 };
    for (const text of docs) {
      const issue = qualityIssue(text, options);
      if (issue !== undefined) reasons[issue]!++;
    }
    const rounds = Math.ceil(300 / mb);
    const { seconds } = await timed(() => {
      for (let r = 0; r < rounds; r++) for (const text of docs) qualityIssue(text, options);
    });
    log(
      `| ${path.basename(file)} | ${docs.length} | ${mb.toFixed(1)} | ${((mb * rounds) / seconds).toFixed(0)} | ` +
        `${reasons.symbol_ratio} / ${reasons.char_run} / ${reasons.duplicate_lines} |`,
    );
  }
}

log(`# bench/farthest-point.ts, ${new Date().toISOString()}`);
log(`machine: ${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism()} cores, Node ${process.version}`);
log(
  `load average at start: ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
if (wants('filters')) await benchFilters();
if (wants('vectorizer')) await benchVectorizer();
if (wants('engine')) await benchEngine(values.shard!);
if (wants('sync')) await benchSync();
if (wants('simd')) await benchSimdHeadroom(Number(values.n), 256);
if (wants('kernels')) {
  await benchKernels(Number(values.n), Number(values.k), Number(values.dims!.split(',')[0]));
}
if (wants('fp')) {
  const dims = values.dims!.split(',').map(Number);
  await benchFarthestPoint(Number(values.n), Number(values.k), dims);
}
log(
  `\nload average at end: ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
