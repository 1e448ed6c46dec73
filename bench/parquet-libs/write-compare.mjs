// Writer comparison: ~500 MiB of text rows (text, id, url, constraints list<struct<type, text, iteration:int32>>)
// into rolling zstd part files of ~128 MiB of text, one child process per writer (so maxRSS is per writer):
//   duckdb           per part: in-memory table filled by the Appender (constraints via appendList), then
//                    COPY ... (FORMAT parquet, COMPRESSION zstd); DuckDB's default row groups unless --duckdb-rg-rows
//   hyparquet-writer ParquetWriter + fileWriter, explicit schema, ZSTD via zstd-napi (level 3),
//                    one row group per ~32 MiB of text (--rg-mb)
//   duckdb-json      the same, but constraints appended as JSON text and cast with from_json() inside the COPY
// Then a separate child verifies every part with DuckDB: exact row count, text bytes, and that
// `constraints` reads back as STRUCT(...)[] with the values that were written (first 50 rows).
//
// Usage: node write-compare.mjs [--reps 3] [--total-mb 500] [--part-mb 128] [--rg-mb 32] [--duckdb-rg-rows N]
//                               [--writers duckdb,duckdb-json,hyparquet-writer] [--out DIR]
//   (MB here = MiB of UTF-8 text)
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setImmediate as tick } from 'node:timers/promises';
import { constraintsFor, hex8, loadSampleHyparquet, makeSynth, mix } from './synth.mjs';
import { cpuSecs, vmHwmMB, vmRssMB, waitIdle } from './benchutil.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const MiB = 1024 * 1024;
const POOL_ROWS = 20_000; // pre-generated rows (~62 MB of text), cycled with unique id/url per row
const YIELD_EVERY = 1_000; // rows between yields to the event loop (as a streaming job would)
// Time spent inside those yields: it is not idle time, native finalizers queued by N-API objects
// (e.g. DuckDB values) run there.
let yieldMs = 0;
async function yieldLoop() {
  const t = performance.now();
  await tick();
  yieldMs += performance.now() - t;
}

function parseArgs() {
  const a = process.argv.slice(2);
  const o = {};
  for (let i = 0; i < a.length; i++) if (a[i].startsWith('--')) o[a[i].slice(2)] = a[i + 1];
  return o;
}

// ---------------------------------------------------------------- row source (child side)
async function makeRows() {
  const sample = await loadSampleHyparquet();
  const synth = makeSynth(sample.map((r) => r.text));
  const pool = [];
  for (let r = 0; r < POOL_ROWS; r++) {
    const { text, d, h } = synth(r);
    const u = sample[d].url ?? 'https://unknown.example.org/';
    pool.push({ text, bytes: Buffer.byteLength(text), url: u.endsWith('/') ? u : `${u}/`, constraints: constraintsFor(h) });
  }
  return (i) => {
    const p = pool[i % POOL_ROWS];
    const h = mix(i * 0x9e3779b1 + 7);
    return { text: p.text, bytes: p.bytes, id: hex8(h) + hex8(mix(h)), url: p.url + i.toString(36), constraints: p.constraints };
  };
}

// ---------------------------------------------------------------- writers (child side)
// Each writer gets: rows(i), totalBytes, partBytes, outDir, opts; returns parts [{path, rows, textBytes}]
const writers = {
  // json = false: constraints appended with appendList(listValue(structValue...)) (the typed way)
  // json = true:  constraints appended as a JSON VARCHAR, turned into STRUCT(...)[] by from_json() inside COPY
  async duckdb(rows, { totalBytes, partBytes, outDir, duckdbRgRows }, json = false) {
    const { DuckDBInstance, LIST, STRUCT, VARCHAR, INTEGER, listValue, structValue } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:', { threads: '2' });
    const con = await db.connect();
    const listType = LIST(STRUCT({ type: VARCHAR, text: VARCHAR, iteration: INTEGER }));
    const structSql = 'STRUCT(type VARCHAR, text VARCHAR, iteration INTEGER)[]';
    const jsonShape = `'[{"type":"VARCHAR","text":"VARCHAR","iteration":"INTEGER"}]'`;
    const select = json ? `SELECT text, id, url, from_json(constraints, ${jsonShape})::${structSql} AS constraints FROM part` : 'SELECT * FROM part';
    const rgOpt = duckdbRgRows ? `, ROW_GROUP_SIZE ${duckdbRgRows}` : '';
    const parts = [];
    let i = 0;
    let written = 0;
    let appendMs = 0;
    let copyMs = 0;
    while (written < totalBytes) {
      const path = join(outDir, `part-${String(parts.length).padStart(5, '0')}.parquet`);
      await con.run(`CREATE OR REPLACE TABLE part (text VARCHAR, id VARCHAR, url VARCHAR, constraints ${json ? 'VARCHAR' : structSql})`);
      const app = await con.createAppender('part');
      let partRows = 0;
      let partText = 0;
      let t = performance.now();
      while (partText < partBytes && written < totalBytes) {
        const r = rows(i++);
        app.appendVarchar(r.text);
        app.appendVarchar(r.id);
        app.appendVarchar(r.url);
        if (json) app.appendVarchar(JSON.stringify(r.constraints));
        else app.appendList(listValue(r.constraints.map((c) => structValue(c))), listType);
        app.endRow();
        partRows++;
        partText += r.bytes;
        written += r.bytes;
        if (partRows % YIELD_EVERY === 0) {
          appendMs += performance.now() - t;
          await yieldLoop();
          t = performance.now();
        }
      }
      app.closeSync();
      appendMs += performance.now() - t;
      t = performance.now();
      await con.run(`COPY (${select}) TO '${path}' (FORMAT parquet, COMPRESSION zstd${rgOpt})`);
      await con.run('DROP TABLE part');
      copyMs += performance.now() - t;
      parts.push({ path, rows: partRows, textBytes: partText });
    }
    con.closeSync();
    return {
      parts,
      note:
        `Appender into an in-memory table per part (constraints ${json ? 'as JSON VARCHAR, from_json() in COPY' : 'via appendList(listValue(structValue))'}), ` +
        `COPY (FORMAT parquet, COMPRESSION zstd${rgOpt}), 2 threads; appending ${(appendMs / 1000).toFixed(1)} s, COPY+DROP ${(copyMs / 1000).toFixed(1)} s`,
    };
  },
  async 'duckdb-json'(rows, opts) {
    return writers.duckdb(rows, opts, true);
  },

  async 'hyparquet-writer'(rows, { totalBytes, partBytes, outDir, rgBytes }) {
    const { ParquetWriter, fileWriter } = await import('hyparquet-writer');
    const zstd = await import('zstd-napi');
    const compressors = { ZSTD: (input) => zstd.compress(input) }; // zstd-napi default level 3
    const str = (name) => ({ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' });
    const schema = [
      { name: 'root', num_children: 4 },
      str('text'),
      str('id'),
      str('url'),
      { name: 'constraints', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      { name: 'element', repetition_type: 'OPTIONAL', num_children: 3 },
      str('type'),
      str('text'),
      { name: 'iteration', type: 'INT32', repetition_type: 'OPTIONAL' },
    ];
    const parts = [];
    let i = 0;
    let written = 0;
    let maxWriteMs = 0;
    while (written < totalBytes) {
      const path = join(outDir, `part-${String(parts.length).padStart(5, '0')}.parquet`);
      const pw = new ParquetWriter({ writer: fileWriter(path), schema, codec: 'ZSTD', compressors });
      let partRows = 0;
      let partText = 0;
      let cols = { text: [], id: [], url: [], constraints: [] };
      let rgText = 0;
      const flush = () => {
        if (!cols.text.length) return;
        const t = performance.now();
        pw.write({
          columnData: Object.entries(cols).map(([name, data]) => ({ name, data })),
          rowGroupSize: cols.text.length,
        });
        maxWriteMs = Math.max(maxWriteMs, performance.now() - t);
        cols = { text: [], id: [], url: [], constraints: [] };
        rgText = 0;
      };
      while (partText < partBytes && written < totalBytes) {
        const r = rows(i++);
        cols.text.push(r.text);
        cols.id.push(r.id);
        cols.url.push(r.url);
        cols.constraints.push(r.constraints);
        partRows++;
        partText += r.bytes;
        rgText += r.bytes;
        written += r.bytes;
        if (rgText >= rgBytes) {
          flush();
          await yieldLoop();
        }
        if (partRows % YIELD_EVERY === 0) await yieldLoop();
      }
      flush();
      await pw.finish();
      parts.push({ path, rows: partRows, textBytes: partText });
    }
    return {
      parts,
      note: `ParquetWriter per part, explicit schema, ZSTD via zstd-napi level 3, row groups of ~${rgBytes / MiB} MiB text (longest synchronous write() ${Math.round(maxWriteMs)} ms)`,
    };
  },
};

async function child(name, opts) {
  const isDuck = name.startsWith('duckdb');
  await import(isDuck ? '@duckdb/node-api' : 'hyparquet-writer');
  if (!isDuck) await import('zstd-napi');
  const rows = await makeRows();
  const baseRssMB = vmRssMB();
  const outDir = join(opts.outDir, name);
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const cpu0 = cpuSecs();
  const t0 = performance.now();
  const { parts, note } = await writers[name](rows, { ...opts, outDir });
  const secs = (performance.now() - t0) / 1000;
  h.disable();
  const textBytes = parts.reduce((s, p) => s + p.textBytes, 0);
  const out = {
    secs,
    textMB: textBytes / 1e6,
    rows: parts.reduce((s, p) => s + p.rows, 0),
    parts: parts.map((p) => ({ ...p, fileMB: statSync(p.path).size / 1e6 })),
    baseRssMB,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
    vmHwmMB: vmHwmMB(),
    cpuSecs: cpuSecs() - cpu0,
    yieldMs,
    loopDelayMaxMs: h.max / 1e6,
    loopDelayP99Ms: h.percentile(99) / 1e6,
    loopDelayMeanMs: h.mean / 1e6,
    note,
    // the first 50 rows' constraints, for the read-back check
    firstConstraints: Array.from({ length: 50 }, (_, i) => rows(i).constraints),
  };
  process.stdout.write(`RESULT ${JSON.stringify(out)}\n`);
}

// ---------------------------------------------------------------- verification (separate child)
async function verify(spec) {
  const { parts, firstConstraints } = JSON.parse(readFileSync(spec, 'utf8'));
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const results = [];
  for (const [k, p] of parts.entries()) {
    const [rows, textBytes, ctype, nItems] = (
      await con.runAndReadAll(`SELECT count(*), sum(strlen(text)), any_value(typeof(constraints)), sum(len(constraints))
        FROM read_parquet('${p.path}')`)
    ).getRows()[0];
    const rgs = (await con.runAndReadAll(`SELECT count(DISTINCT row_group_id), string_agg(DISTINCT compression, '+') FROM parquet_metadata('${p.path}')`)).getRows()[0];
    let firstOk = null;
    if (k === 0) {
      const got = (await con.runAndReadAll(`SELECT constraints FROM read_parquet('${p.path}') LIMIT 50`)).getRowObjectsJS().map((r) => r.constraints);
      firstOk = JSON.stringify(got) === JSON.stringify(firstConstraints);
    }
    results.push({
      file: p.path.split('/').slice(-2).join('/'),
      rowsOk: Number(rows) === p.rows,
      rows: Number(rows),
      textBytesOk: Number(textBytes) === p.textBytes,
      constraintsType: ctype,
      listOfStruct: ctype === 'STRUCT("type" VARCHAR, "text" VARCHAR, iteration INTEGER)[]',
      constraintItems: Number(nItems),
      rowGroups: Number(rgs[0]),
      codec: rgs[1],
      firstRowConstraintsEqual: firstOk,
    });
  }
  process.stdout.write(`VERIFY ${JSON.stringify(results)}\n`);
}

// ---------------------------------------------------------------- parent
function runNode(argv) {
  return new Promise((res) => {
    const p = spawn(process.execPath, ['--max-old-space-size=16384', self, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code, signal) => res({ out, err, code, signal }));
  });
}

async function main() {
  const args = parseArgs();
  const outDir = resolve(args.out ?? join(here, '../data/write-out'));
  const opts = {
    totalBytes: Number(args['total-mb'] ?? 500) * MiB,
    partBytes: Number(args['part-mb'] ?? 128) * MiB,
    rgBytes: Number(args['rg-mb'] ?? 32) * MiB,
    duckdbRgRows: args['duckdb-rg-rows'] ? Number(args['duckdb-rg-rows']) : undefined, // DuckDB default: 122,880 rows
    outDir,
  };
  if (args.child) return child(args.child, JSON.parse(args.opts));
  if (args.verify) return verify(args.verify);

  mkdirSync(outDir, { recursive: true });
  const reps = Number(args.reps ?? 3);
  const names = (args.writers ?? 'duckdb,duckdb-json,hyparquet-writer').split(',');
  console.log(`# target ${opts.totalBytes / MiB} MiB of text, parts of ${opts.partBytes / MiB} MiB, out ${outDir}`);
  console.log(`# ${cpus().length} x ${cpus()[0].model}, node ${process.version}, ${reps} run(s) per writer`);
  console.log(`| writer | text MB/s | secs median (min-max) | CPU s | rows | parts | output MB | peak RSS MB (maxRSS / VmHWM; RSS before write) | event loop delay max / p99 / mean ms | machine busy % before each run | DuckDB read-back |`);
  console.log(`|---|---|---|---|---|---|---|---|---|---|---|`);
  const details = [];
  for (const name of names) {
    // `reps` runs, each after the machine is idle (2 cores; other sessions may build on it); the run with
    // the median time is reported with the min-max range. The last run's files are verified.
    const runs = [];
    let failed = null;
    for (let k = 0; k < reps; k++) {
      const { busy } = await waitIdle();
      const r = await runNode(['--child', name, '--opts', JSON.stringify(opts)]);
      const line = r.out.split('\n').find((l) => l.startsWith('RESULT '));
      if (!line) {
        failed = r;
        break;
      }
      runs.push({ ...JSON.parse(line.slice(7)), busy });
    }
    if (failed) {
      console.log(`| ${name} | FAILED (exit ${failed.code} ${failed.signal ?? ''}): ${failed.err.trim().split('\n').slice(-3).join(' / ').replace(/\|/g, '/')} |`);
      continue;
    }
    const last = runs.at(-1);
    const sorted = [...runs].sort((a, b) => a.secs - b.secs);
    const res = sorted[(sorted.length - 1) >> 1];
    const spec = join(outDir, `${name}.verify.json`);
    writeFileSync(spec, JSON.stringify({ parts: last.parts, firstConstraints: last.firstConstraints }));
    const v = await runNode(['--verify', spec]);
    const vline = v.out.split('\n').find((l) => l.startsWith('VERIFY '));
    const checks = vline ? JSON.parse(vline.slice(7)) : null;
    const allOk = checks && checks.every((c) => c.rowsOk && c.textBytesOk && c.listOfStruct && c.firstRowConstraintsEqual !== false);
    const verdict = !checks ? `verify FAILED: ${v.err.trim().split('\n').slice(-2).join(' / ')}` : allOk ? 'ok (rows, text bytes, LIST of STRUCT, values)' : 'MISMATCH (see details)';
    const range = sorted.length > 1 ? ` (${sorted[0].secs.toFixed(1)}-${sorted.at(-1).secs.toFixed(1)})` : '';
    console.log(
      `| ${name} | ${(res.textMB / res.secs).toFixed(1)} | ${res.secs.toFixed(1)}${range} | ${res.cpuSecs.toFixed(1)} | ${res.rows} | ${res.parts.length} | ${res.parts.reduce((s, p) => s + p.fileMB, 0).toFixed(1)} | ${Math.round(res.maxRssMB)} / ${Math.round(res.vmHwmMB)}; ${Math.round(res.baseRssMB)} | ${Math.round(res.loopDelayMaxMs)} / ${Math.round(res.loopDelayP99Ms)} / ${res.loopDelayMeanMs.toFixed(1)} | ${runs.map((x) => Math.round(x.busy * 100)).join(' ')} | ${verdict} |`,
    );
    details.push({ name, note: res.note, parts: last.parts, checks, runs: runs.map((x) => `${x.secs.toFixed(1)} s (${(x.yieldMs / 1000).toFixed(1)} s inside yields) / ${Math.round(x.maxRssMB)} MB / loop max ${Math.round(x.loopDelayMaxMs)} ms`) });
  }
  console.log('\ndetails:');
  for (const d of details) {
    console.log(`- ${d.name}: ${d.note}\n    runs: ${d.runs.join('; ')}`);
    for (const [k, p] of d.parts.entries()) {
      const c = d.checks?.[k];
      console.log(
        `    ${p.path.split('/').slice(-2).join('/')}: ${p.rows} rows, ${(p.textBytes / 1e6).toFixed(1)} MB text -> ${p.fileMB.toFixed(1)} MB file` +
          (c ? `; DuckDB: ${c.rows} rows (${c.rowsOk ? 'exact' : 'WRONG'}), text bytes ${c.textBytesOk ? 'exact' : 'WRONG'}, ${c.rowGroups} row groups ${c.codec}, constraints ${c.constraintsType} (${c.constraintItems} items)${c.firstRowConstraintsEqual === null ? '' : `, first 50 rows' values ${c.firstRowConstraintsEqual ? 'equal' : 'DIFFER'}`}` : ''),
      );
    }
  }
}

await main();
