// Reader comparison: each (library, file) pair runs in its own child process, so maxRSS is per library.
// Every reader reads the `text` column (DuckDB: text,id,url) of every file, touching each string.
//
// Usage: node read-compare.mjs [--data DIR] [--libs a,b] [--files a,b] [--reps 3] [--timeout 600] [--heap 16384]
//   --data DIR  folder with the generated shards (default ../data, i.e. bench/data)
// Child mode (used internally): node read-compare.mjs --child LIB FILE
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { cpus } from 'node:os';
import { cpuSecs, vmHwmMB, waitIdle } from './benchutil.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------- readers (child side)
// Each reader calls onText(stringOrNull) per row and returns a note on how it streams.
const readers = {
  async duckdb(file, onText, threads = 2) {
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:', { threads: String(threads) });
    const con = await db.connect();
    // Dolma keeps the url inside the `metadata` struct
    const cols = (await con.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${file}')`)).getRows().map((r) => r[0]);
    const url = cols.includes('url') ? 'url' : cols.includes('metadata') ? 'metadata.url AS url' : 'NULL AS url';
    const result = await con.stream(`SELECT text, id, ${url} FROM read_parquet('${file}')`);
    for (;;) {
      const chunk = await result.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      const texts = chunk.getColumnVector(0);
      for (let i = 0; i < chunk.rowCount; i++) onText(texts.getItem(i));
    }
    con.closeSync();
    return `connection.stream + fetchChunk (2,048-row chunks), ${threads} DuckDB thread(s)`;
  },
  async 'duckdb-1thread'(file, onText) {
    return readers.duckdb(file, onText, 1);
  },
  async hyparquet(file, onText, zstdNapi = false) {
    const { asyncBufferFromFile, parquetMetadataAsync, parquetRead } = await import('hyparquet');
    const { compressors } = await import('hyparquet-compressors');
    let comp = compressors;
    if (zstdNapi) {
      const zstd = await import('zstd-napi');
      comp = { ...compressors, ZSTD: (input) => zstd.decompress(input) };
    }
    const buf = await asyncBufferFromFile(file);
    const metadata = await parquetMetadataAsync(buf);
    let rowStart = 0;
    for (const rg of metadata.row_groups) {
      const rowEnd = rowStart + Number(rg.num_rows);
      await parquetRead({
        file: buf,
        metadata,
        columns: ['text'],
        rowStart,
        rowEnd,
        compressors: comp,
        onChunk: ({ columnData, rowStart: s, rowEnd: e }) => {
          for (let i = Math.max(s, rowStart); i < Math.min(e, rowEnd); i++) onText(columnData[i - s]);
        },
      });
      rowStart = rowEnd;
    }
    return `parquetRead per row group (onChunk), columns [text]${zstdNapi ? ', ZSTD via zstd-napi' : ', ZSTD via fzstd (JS)'}`;
  },
  async 'hyparquet+zstd-napi'(file, onText) {
    return readers.hyparquet(file, onText, true);
  },
  async 'parquetjs-lite'(file, onText) {
    const { default: parquet } = await import('parquetjs-lite');
    const reader = await parquet.ParquetReader.openFile(file);
    const cursor = reader.getCursor(['text']);
    for (let rows; (rows = await cursor.nextRowGroup()); ) for (const r of rows) onText(r.text ?? null);
    await reader.close();
    return 'getCursor([text]).nextRowGroup(): one materialised row group at a time';
  },
  async '@dsnp/parquetjs'(file, onText) {
    const { ParquetReader } = await import('@dsnp/parquetjs');
    const reader = await ParquetReader.openFile(file);
    const cursor = reader.getCursor(['text']);
    for (let r; (r = await cursor.next()); ) onText(r.text ?? null);
    await reader.close();
    return 'getCursor([text]).next(): materialises one row group at a time';
  },
};

// modules are imported before the clock starts, so start-up/import time is not counted
const preload = {
  duckdb: ['@duckdb/node-api'],
  'duckdb-1thread': ['@duckdb/node-api'],
  hyparquet: ['hyparquet', 'hyparquet-compressors'],
  'hyparquet+zstd-napi': ['hyparquet', 'hyparquet-compressors', 'zstd-napi'],
  'parquetjs-lite': ['parquetjs-lite'],
  '@dsnp/parquetjs': ['@dsnp/parquetjs'],
};

async function child(lib, file) {
  for (const m of preload[lib]) await import(m);
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  let rows = 0;
  let chars = 0;
  let nulls = 0;
  let firstRowMs = null;
  const cpu0 = cpuSecs();
  const t0 = performance.now();
  const onText = (t) => {
    if (rows === 0) firstRowMs = performance.now() - t0;
    rows++;
    if (t == null) nulls++;
    else chars += t.length;
  };
  let note;
  try {
    note = await readers[lib](file, onText);
  } catch (e) {
    // parquetjs-lite throws plain strings
    process.stdout.write(`ERROR ${JSON.stringify(String(e?.message ?? e))}\n`);
    process.stderr.write(`${e?.stack ?? e}\n`);
    process.exit(1);
  }
  const secs = (performance.now() - t0) / 1000;
  h.disable();
  const out = {
    rows,
    chars,
    nulls,
    secs,
    firstRowMs,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
    vmHwmMB: vmHwmMB(),
    cpuSecs: cpuSecs() - cpu0,
    maxLoopDelayMs: h.max / 1e6,
    note,
  };
  process.stdout.write(`RESULT ${JSON.stringify(out)}\n`);
}

async function refFigures(files) {
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const ref = {};
  for (const f of files) {
    const [rows, textBytes] = (await con.runAndReadAll(`SELECT count(*), sum(strlen(text)) FROM read_parquet('${f}')`)).getRows()[0];
    const [rgs, codec, rgMaxText] = (
      await con.runAndReadAll(`SELECT count(DISTINCT row_group_id), string_agg(DISTINCT compression, '+'),
        max(total_uncompressed_size) FILTER (WHERE path_in_schema = 'text') FROM parquet_metadata('${f}')`)
    ).getRows()[0];
    ref[f] = { rows: Number(rows), textMB: Number(textBytes) / 1e6, rgs: Number(rgs), codec, rgMaxTextMB: Number(rgMaxText) / 1e6, fileMB: statSync(f).size / 1e6 };
  }
  process.stdout.write(JSON.stringify(ref));
}

// ---------------------------------------------------------------- parent
function parseArgs() {
  const a = process.argv.slice(2);
  const o = {};
  for (let i = 0; i < a.length; i++) if (a[i].startsWith('--')) o[a[i].slice(2)] = a[i + 1];
  return o;
}

function runChild(lib, file, timeoutS, heapMB) {
  return new Promise((res) => {
    const p = spawn(process.execPath, [`--max-old-space-size=${heapMB}`, self, '--child', lib, file], {
      cwd: here,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutS * 1000);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (line) return res({ ok: true, ...JSON.parse(line.slice(7)) });
      const errLine = out.split('\n').find((l) => l.startsWith('ERROR '));
      if (errLine) return res({ ok: false, error: JSON.parse(errLine.slice(6)), code, signal, stderr: err.slice(-2000) });
      const msg =
        signal === 'SIGKILL'
          ? `killed after ${timeoutS} s timeout`
          : (err.match(/^\w*Error.*$/m)?.[0] ?? err.trim().split('\n').slice(-3).join(' | ')) || `exit ${code} ${signal ?? ''}`;
      res({ ok: false, error: msg.slice(0, 300), code, signal, stderr: err.slice(-2000) });
    });
  });
}

async function main() {
  const args = parseArgs();
  if (args.child) return child(args.child, process.argv[process.argv.indexOf('--child') + 2]);
  if (args.ref) return refFigures(args.ref.split(','));
  const dataDir = resolve(args.data ?? join(here, '../data'));
  const libs = (args.libs ?? 'duckdb,duckdb-1thread,hyparquet,hyparquet+zstd-napi,parquetjs-lite,@dsnp/parquetjs').split(',');
  const files = (
    args.files ??
    [
      '/work/shared/data/web/fineweb-sample.snappy.parquet',
      '/work/shared/data/web/dolma-sample.zstd.parquet',
      join(dataDir, 'shard-500m.zstd.parquet'),
      join(dataDir, 'shard-500m-rg1.parquet'),
      join(dataDir, 'shard-1g-rg128.parquet'),
    ].join(',')
  ).split(',');
  const timeoutS = Number(args.timeout ?? 600);
  const heapMB = Number(args.heap ?? 16384);
  const reps = Number(args.reps ?? 3);

  // Reference figures from DuckDB metadata, computed in a child too: a child's maxRSS starts from the
  // parent's RSS at fork time (Linux keeps ru_maxrss across execve), so the parent must stay small.
  for (const f of files) if (!existsSync(f)) throw new Error(`missing ${f}: run gen-shards.mjs first`);
  const ref = await new Promise((res, rej) => {
    const p = spawn(process.execPath, [self, '--ref', files.join(',')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('close', (code) => (code === 0 ? res(JSON.parse(out)) : rej(new Error(`--ref exited ${code}`))));
  });
  for (const f of files) {
    const r = ref[f];
    console.log(`# ${basename(f)}: ${r.fileMB.toFixed(1)} MB file, ${r.rows} rows, ${r.textMB.toFixed(1)} MB text, ${r.rgs} row groups (largest text chunk ${r.rgMaxTextMB.toFixed(1)} MB uncompressed), ${r.codec}`);
  }
  console.log(`# ${cpus().length} x ${cpus()[0].model}, node ${process.version}, ${reps} run(s) per cell, children get --max-old-space-size=${heapMB}`);
  console.log(`# parent maxRSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MB (lower bound of every child's maxRSS)`);

  console.log(`\n| file | library | rows/s | text MB/s | peak RSS MB (maxRSS / VmHWM) | max loop delay ms | first row ms | secs median (min-max) | CPU s | machine busy % before each run | result |`);
  console.log(`|---|---|---|---|---|---|---|---|---|---|---|`);
  const all = [];
  for (const f of files) {
    for (const lib of libs) {
      // `reps` runs; the run with the median time is reported, with the min-max range of the times.
      // Each run waits until the machine is idle (2 cores; other sessions may build on it) and keeps
      // the busy fraction measured just before it; CPU seconds of the child are reported too.
      const runs = [];
      for (let k = 0; k < reps; k++) {
        const { busy } = await waitIdle();
        const r = await runChild(lib, f, timeoutS, heapMB);
        runs.push({ ...r, load: busy * 100 });
        if (!r.ok) break;
      }
      const okRuns = runs.filter((x) => x.ok).sort((a, b) => a.secs - b.secs);
      const r = okRuns.length === runs.length ? okRuns[(okRuns.length - 1) >> 1] : runs.find((x) => !x.ok);
      const fr = ref[f];
      all.push({ file: basename(f), lib, ...r, runs });
      if (r.ok) {
        const good = r.rows === fr.rows ? 'ok' : `ROW COUNT ${r.rows} != ${fr.rows}`;
        const range = okRuns.length > 1 ? ` (${okRuns[0].secs.toFixed(2)}-${okRuns.at(-1).secs.toFixed(2)})` : '';
        console.log(
          `| ${basename(f)} | ${lib} | ${Math.round(r.rows / r.secs).toLocaleString('en-US')} | ${(fr.textMB / r.secs).toFixed(1)} | ${Math.round(r.maxRssMB)} / ${Math.round(r.vmHwmMB)} | ${Math.round(r.maxLoopDelayMs)} | ${Math.round(r.firstRowMs)} | ${r.secs.toFixed(2)}${range} | ${r.cpuSecs.toFixed(2)} | ${runs.map((x) => x.load.toFixed(0)).join(' ')} | ${good} |`,
        );
      } else {
        console.log(`| ${basename(f)} | ${lib} | - | - | - | - | - | - | - | ${r.load.toFixed(0)} | FAILED: ${r.error.replace(/\|/g, '/')} |`);
      }
    }
  }
  console.log('\nnotes per library:');
  for (const lib of libs) console.log(`- ${lib}: ${all.find((x) => x.lib === lib && x.ok)?.note ?? '(never succeeded)'}`);
  console.log('\nfailures (stderr tail):');
  for (const x of all.filter((x) => !x.ok)) console.log(`- ${x.lib} on ${x.file}: exit ${x.code} ${x.signal ?? ''}\n    ${x.stderr.trim().split('\n').slice(-6).join('\n    ')}`);
}

await main();
