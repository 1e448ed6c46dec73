/**
 * Streams big Parquet shards through `air run` (read → length filter → write) and through DuckDB alone on
 * the same files, in one run, and reports peak RSS and text MB/s side by side.
 *
 *   npm run build && npx tsx bench/stream-shard.ts bench/data/shard-1g-rg128.parquet bench/data/shard-500m-rg1.parquet
 *
 * Every measurement runs in its own child process, so each peak RSS is that process's own.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';

const ROOT = path.resolve(import.meta.dirname, '..');
const AIR = path.join(ROOT, 'dist/cli/air.js');

interface Measure {
  label: string;
  wallS: number;
  peakRssMB: number;
  textMBps: number;
  rows?: number;
}

async function describeFile(file: string) {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  const q = async (sql: string) => (await conn.runAndReadAll(sql)).getRowsJS()[0]!;
  const [rows, textBytes] = await q(`select count(*), sum(strlen(text)) from read_parquet('${file}')`);
  const [groups, maxGroupBytes] = await q(
    `select count(*), max(b) from (select row_group_id, sum(total_uncompressed_size) b from parquet_metadata('${file}') group by 1)`,
  );
  const [fileBytes] = await q(`select file_size_bytes from parquet_file_metadata('${file}')`);
  db.closeSync();
  return {
    rows: Number(rows),
    textMB: Number(textBytes) / 1e6,
    rowGroups: Number(groups),
    maxRowGroupMB: Number(maxGroupBytes) / 1e6,
    fileMB: Number(fileBytes) / 1e6,
  };
}

function run(
  cmd: string,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string; wallS: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) =>
      resolve({ code, stdout, stderr, wallS: (performance.now() - started) / 1000 }),
    );
  });
}

/** air's own pipeline; `keep` writes every document, `!keep` drops all after reading (read-only cost). */
async function measureAir(
  file: string,
  textMB: number,
  keep: boolean,
  extra: string[] = [],
): Promise<Measure> {
  const out = await mkdtemp(path.join(os.tmpdir(), 'air-bench-'));
  try {
    const words = keep
      ? ['--min-words', '0', '--max-words', '100000000']
      : ['--min-words', '100000000', '--max-words', '100000001'];
    const result = await run(process.execPath, [
      AIR,
      'run',
      '-i',
      file,
      '-o',
      out,
      '--progress',
      'off',
      ...words,
      ...extra,
    ]);
    if (result.code !== 0) throw new Error(`air failed on ${file}: ${result.stderr}`);
    const ledger = JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as {
      resources: { peakRssMB: number };
      totals: { rowsWritten: number };
    };
    return {
      label: keep
        ? `air run (read → filter → write zstd)${extra.length ? ' ' + extra.join(' ') : ''}`
        : 'air run, read only (all dropped)',
      wallS: result.wallS,
      peakRssMB: ledger.resources.peakRssMB,
      textMBps: textMB / result.wallS,
      rows: ledger.totals.rowsWritten,
    };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** DuckDB alone, in a child Node process with the same library: the ceiling air's I/O can reach. */
async function measureDuckDB(file: string, textMB: number, write: boolean): Promise<Measure> {
  const out = path.join(await mkdtemp(path.join(os.tmpdir(), 'duck-bench-')), 'copy.parquet');
  const sql = write
    ? `COPY (SELECT * FROM read_parquet('${file}')) TO '${out}' (FORMAT parquet, COMPRESSION zstd)`
    : `SELECT sum(strlen(text)) FROM read_parquet('${file}')`;
  const script = `
    import { DuckDBInstance } from '@duckdb/node-api';
    const db = await DuckDBInstance.create(':memory:', { threads: '2' });
    const c = await db.connect();
    await c.runAndReadAll(${JSON.stringify(sql)});
    const hwm = /^VmHWM:\\s+(\\d+) kB$/m.exec((await import('node:fs')).readFileSync('/proc/self/status', 'utf8'));
    console.log(JSON.stringify({ rss: Number(hwm[1]) }));`;
  const result = await run(process.execPath, ['--input-type=module', '-e', script]);
  await rm(path.dirname(out), { recursive: true, force: true });
  if (result.code !== 0) throw new Error(`duckdb failed on ${file}: ${result.stderr}`);
  const { rss } = JSON.parse(result.stdout.trim().split('\n').pop()!) as { rss: number };
  return {
    label: write ? 'DuckDB alone: COPY read → write (zstd)' : 'DuckDB alone: scan sum(strlen(text))',
    wallS: result.wallS,
    peakRssMB: Math.round(rss / 1024),
    textMBps: textMB / result.wallS,
  };
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: tsx bench/stream-shard.ts <file.parquet>...');
  process.exit(2);
}
const results = [];
for (const file of files) {
  const info = await describeFile(file);
  console.log(
    `\n${path.basename(file)}: ${info.fileMB.toFixed(0)} MB on disk, ${info.textMB.toFixed(0)} MB of text, ` +
      `${info.rows} rows, ${info.rowGroups} row groups (largest ${info.maxRowGroupMB.toFixed(0)} MB uncompressed)`,
  );
  const measures = [
    await measureAir(file, info.textMB, true),
    await measureAir(file, info.textMB, false),
    await measureDuckDB(file, info.textMB, true),
    await measureDuckDB(file, info.textMB, false),
  ];
  console.log('| run | wall s | text MB/s | peak RSS MB |\n| --- | ---: | ---: | ---: |');
  for (const m of measures) {
    console.log(`| ${m.label} | ${m.wallS.toFixed(1)} | ${m.textMBps.toFixed(0)} | ${m.peakRssMB} |`);
  }
  const [airWrite, airRead, duckWrite, duckRead] = measures as [Measure, Measure, Measure, Measure];
  console.log(
    `ratio air/DuckDB, read: ${(airRead.textMBps / duckRead.textMBps).toFixed(2)}; read → write: ${(airWrite.textMBps / duckWrite.textMBps).toFixed(2)}`,
  );
  results.push({ file: path.basename(file), ...info, measures });
}
console.log(
  `\nmachine: ${os.cpus()[0]?.model} · ${os.cpus().length} cores · ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB · node ${process.version}`,
);
