import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FINEWEB, SAMPLE, SHARED, query, scalar, tempDir, writeParquet } from './helpers/duckdb.js';
import { runAir, startAir } from './helpers/cli.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir('air-cli-')));
afterAll(() => cleanup());

interface LedgerFile {
  status: string;
  totals: {
    read: number;
    written: number;
    rowsWritten: number;
    abandoned: number;
    dropped: Record<string, number>;
  };
  parts: Array<{ file: string; rows: number }>;
  config: { filter: { minWords: number } };
}

const readLedger = async (out: string) =>
  JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as LedgerFile;
/** Rows in the folder's part files; a run stopped before its first part has none (read_parquet would throw). */
const countRows = async (out: string) =>
  (await readdir(out)).some((f) => f.endsWith('.parquet'))
    ? Number(await scalar(`select count(*) from read_parquet('${out}/*.parquet')`))
    : 0;

describe('air CLI: help and usage errors', () => {
  it('prints help with exit code 0', async () => {
    const top = await runAir(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/Usage: air/);
    expect(top.stdout).toMatch(/run \[options\]/);
    const run = await runAir(['run', '--help']);
    expect(run.code).toBe(0);
    for (const flag of ['--input', '--output', '--config', '--min-words', '--compression', '--progress']) {
      expect(run.stdout).toContain(flag);
    }
  });

  it('exits 2 on an unknown flag, an unknown command, a bad value or a missing input', async () => {
    for (const args of [
      ['run', '--bogus'],
      ['frobnicate'],
      ['run', '--input', SAMPLE, '--output', dir, '--min-words', 'many'],
      ['run', '--input', SAMPLE, '--output', dir, '--compression', 'lzo'],
      ['run', '--output', dir],
      [],
    ]) {
      const result = await runAir(args);
      expect(result.code, args.join(' ')).toBe(2);
    }
  });

  it('names the bad key of a YAML config, and rejects malformed JSON with exit 2', async () => {
    const yamlFile = path.join(dir, 'bad.yaml');
    await writeFile(
      yamlFile,
      `input: ${SAMPLE}\noutput: ${dir}/x\nsource:\n  textColum: body\nfilter:\n  minWords: many\n`,
    );
    const yaml = await runAir(['run', '--config', yamlFile]);
    expect(yaml.code).toBe(2);
    expect(yaml.stderr).toContain(`${yamlFile}: unknown key "source.textColum"`);
    expect(yaml.stderr).toContain('"filter.minWords": Invalid input: expected number, received string');
    const jsonFile = path.join(dir, 'bad.json');
    await writeFile(jsonFile, '{"input": "a", ');
    const json = await runAir(['run', '--config', jsonFile]);
    expect(json.code).toBe(2);
    expect(json.stderr).toMatch(/bad\.json: not valid JSON/);
  });
});

describe('air run', () => {
  it('on the shared real samples writes parts whose DuckDB row count equals the ledger', async () => {
    const out = path.join(dir, 'shared');
    const result = await runAir([
      'run',
      '--input',
      path.join(SHARED, 'data/web'),
      '--output',
      out,
      '--method',
      'documents',
      '--progress',
      'off',
    ]);
    expect(result.code, result.stderr).toBe(0);
    const ledger = await readLedger(out);
    expect(ledger.status).toBe('completed');
    expect(ledger.totals.read).toBe(1701 + 727);
    expect(await countRows(out)).toBe(ledger.totals.rowsWritten);
    expect(ledger.parts.reduce((s, p) => s + p.rows, 0)).toBe(ledger.totals.rowsWritten);
    expect(result.stderr).toMatch(/total\s+2,428/);
    // The Dolma sample repeats FineWeb documents: each removed one names a kept one in duplicates.jsonl.
    const notes = (await readFile(path.join(out, 'duplicates.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { stage: string; duplicateOf: string });
    const removed = Object.entries(ledger.totals.dropped)
      .filter(([reason]) => /(_dedupe|unique_ids):/.test(reason))
      .reduce((sum, [, n]) => sum + n, 0);
    expect(removed).toBeGreaterThan(100);
    expect(notes).toHaveLength(removed);
    const kept = new Set(
      (await query(`select id from read_parquet('${out}/*.parquet')`)).map((r) => String(r[0])),
    );
    for (const note of notes) expect(kept.has(note.duplicateOf), note.duplicateOf).toBe(true);
  });

  it('runs the AIR method on the bundled sample against the simulator (the README command)', async () => {
    const out = path.join(dir, 'air-sim');
    const result = await runAir([
      'run',
      '--input',
      SAMPLE,
      '--output',
      out,
      '--llm',
      'sim',
      '--progress',
      'off',
    ]);
    expect(result.code, result.stderr).toBe(0);
    const ledger = await readLedger(out);
    expect(ledger.status).toBe('completed');
    expect(ledger.totals.rowsWritten).toBeGreaterThan(0);
    expect(await countRows(out)).toBe(ledger.totals.rowsWritten);
    expect(result.stderr).toMatch(/refine:no_constraint_accepted/);
  });

  it('lets flags override the config file', async () => {
    const out = path.join(dir, 'override');
    const config = path.join(dir, 'air.yaml');
    await writeFile(
      config,
      `input: ${SAMPLE}\noutput: ${out}\nmethod: documents\nfilter:\n  minWords: 100000\n  maxWords: 200000\n`,
    );
    const result = await runAir(['run', '--config', config, '--min-words', '50', '--progress', 'off']);
    expect(result.code, result.stderr).toBe(0);
    const ledger = await readLedger(out);
    expect(ledger.config.filter.minWords).toBe(50);
    expect(ledger.totals.rowsWritten).toBeGreaterThan(100);
  });

  it('exits 1 with one line naming the file for an input that is not Parquet', async () => {
    const bad = path.join(dir, 'bad.parquet');
    await writeFile(bad, 'id,text\n1,hello\n');
    const result = await runAir([
      'run',
      '--input',
      bad,
      '--output',
      path.join(dir, 'bad-out'),
      '--progress',
      'off',
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe(`air: ${bad}: not a Parquet file (no PAR1 magic at start)`);
  });

  it('logs progress lines when not on a terminal', async () => {
    const out = path.join(dir, 'progress');
    const result = await runAir([
      'run',
      '-i',
      FINEWEB,
      '-o',
      out,
      '--method',
      'documents',
      '--progress',
      'log',
      '--progress-interval',
      '0.01',
      '--part-rows',
      '100',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/progress: .*read [\d,]+\/1,701 rows .*ETA/);
  });

  it('on SIGTERM stops reading, commits finished rows, exits 143 with a balanced ledger', async () => {
    const input = path.join(dir, 'many');
    await mkdir(input, { recursive: true });
    for (let i = 0; i < 24; i++)
      await copyFile(FINEWEB, path.join(input, `shard-${String(i).padStart(2, '0')}.parquet`));
    const out = path.join(dir, 'sigterm');
    const { child, done } = startAir([
      'run',
      '-i',
      input,
      '-o',
      out,
      '--method',
      'documents',
      '--no-dedupe', // 24 copies of one shard: dedupe would drop all but the first
      '--progress',
      'log',
      '--progress-interval',
      '0.1',
      '--part-rows',
      '40',
    ]);
    let sent = false;
    child.stderr!.on('data', (d: Buffer) => {
      if (!sent && d.toString().includes('progress:')) {
        sent = true;
        child.kill('SIGTERM');
      }
    });
    const result = await done;
    expect(sent).toBe(true);
    expect(result.code, result.stderr).toBe(143);
    expect(result.stderr).toMatch(/SIGTERM received: reading no new input/);
    const ledger = await readLedger(out);
    expect(ledger.status).toBe('interrupted');
    expect(ledger.totals.read).toBeLessThanOrEqual(24 * 1701);
    expect(ledger.totals.read).toBe(
      ledger.totals.written +
        Object.values(ledger.totals.dropped).reduce((a, b) => a + b, 0) +
        ledger.totals.abandoned,
    );
    expect(await countRows(out)).toBe(ledger.totals.rowsWritten);
    const files = await readdir(out);
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('air bench', () => {
  it('sweeps concurrency against a server, finds the knee and writes JSON and HTML', async () => {
    const { startSimulator } = await import('../llm/simulator/index.js');
    // 4 sequences, 25 ms per call: throughput stops growing past 4 in flight.
    const sim = await startSimulator({
      models: ['m'],
      maxConcurrentSequences: 4,
      decodeTokensPerSPerSequence: 1000,
      meanReplyTokens: 25,
      replyLength: 'fixed',
    });
    try {
      const out = path.join(dir, 'bench');
      const result = await runAir([
        'bench',
        '--url',
        sim.url,
        '--model',
        'm',
        '--max-concurrency',
        '16',
        '--requests-per-level',
        '40',
        '--out',
        out,
      ]);
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(await readFile(path.join(out, 'bench.json'), 'utf8')) as {
        levels: Array<{ concurrency: number; requestsPerS: number }>;
        knee: number;
      };
      expect(report.levels.map((l) => l.concurrency)).toEqual([1, 2, 4, 8, 16]);
      expect(report.knee).toBeGreaterThanOrEqual(4);
      expect(report.knee).toBeLessThanOrEqual(8);
      const html = await readFile(path.join(out, 'bench.html'), 'utf8');
      expect(html.match(/<polyline class="series"/g)?.length).toBe(6);
      expect(result.stdout).toMatch(/knee at \d+ in flight/);
    } finally {
      await sim.close();
    }
  });

  it('--pipeline runs the AIR method on N documents and reports documents/s, calls and tokens per document', async () => {
    const out = path.join(dir, 'bench-pipeline');
    const result = await runAir([
      'bench',
      '--pipeline',
      '--input',
      SAMPLE,
      '--docs',
      '80',
      '--llm',
      'sim',
      '--out',
      out,
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/documents\/s\s+\d/);
    expect(result.stdout).toMatch(/calls per document\s+\d/);
    const report = JSON.parse(await readFile(path.join(out, 'bench-pipeline.json'), 'utf8')) as {
      documents: number;
      calls: number;
      byRole: Array<{ role: string; calls: number }>;
      callsPerDocument: number;
      documentsToLlm: number;
      promptTokensPerDocument: number;
      serverCachedTokensPerDocument: number | null;
      promptTokensComputedPerDocument: number | null;
      bySteps: Record<string, { calls: number; promptTokens: number; serverCachedTokens: number }>;
    };
    expect(report.documents).toBe(80);
    // The built-in simulator caches prefixes (vLLM-style) and reports cached tokens, summed per step.
    expect(result.stdout).toMatch(/prompt tokens per document cached by the server\s+\d/);
    expect(report.serverCachedTokensPerDocument).toBeGreaterThan(0);
    expect(report.promptTokensComputedPerDocument! + report.serverCachedTokensPerDocument!).toBeCloseTo(
      report.promptTokensPerDocument,
      6,
    );
    const steps = Object.values(report.bySteps);
    expect(steps.reduce((n, s) => n + s.calls, 0)).toBe(report.calls);
    expect(Object.keys(report.bySteps)).toContain('judge-check');
    // The run's stats.json and report carry the same per-step figures.
    const [run] = (await readdir(out)).filter((name) => name.startsWith('pipeline-'));
    const stats = JSON.parse(await readFile(path.join(out, run!, 'stats.json'), 'utf8')) as {
      llm: { accounting: { steps: Record<string, { serverCachedTokens: number; reportedCalls: number }> } };
    };
    expect(stats.llm.accounting.steps['judge-check']!.serverCachedTokens).toBe(
      report.bySteps['judge-check']!.serverCachedTokens,
    );
    const html = await readFile(path.join(out, run!, 'report.html'), 'utf8');
    expect(html).toContain("found in the servers' prefix cache");
    expect(report.byRole.map((r) => r.role).sort()).toEqual(['guidance', 'student']);
    expect(report.byRole.reduce((s, r) => s + r.calls, 0)).toBe(report.calls);
    // Every document that reaches the LLM stages costs at least the instruction call; no cache hides calls.
    expect(report.calls).toBeGreaterThanOrEqual(report.documentsToLlm);
    expect(report.callsPerDocument).toBeCloseTo(report.calls / report.documentsToLlm, 6);
  });

  it('exits 2 with a clear message for a malformed URL', async () => {
    const result = await runAir(['bench', '--url', 'not a url', '--model', 'm']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/air bench: baseUrl/);
  });
});

describe('air score', () => {
  const rows = [
    {
      instruction:
        'Write a formal email to a client, under 150 words, in Spanish, without mentioning prices.',
      output: 'Estimado cliente, gracias.',
    },
    { instruction: 'Explain photosynthesis.', output: 'Plants turn light into sugar.' },
    {
      instruction: 'List three benefits of exercise as bullet points for beginners.',
      output: '- a\n- b\n- c',
    },
  ];

  it('measures a JSON-lines and a Parquet dataset the same way, without an LLM', async () => {
    const jsonl = path.join(dir, 'alpaca.jsonl');
    await writeFile(jsonl, rows.map((r) => JSON.stringify(r)).join('\n'));
    const parquet = path.join(dir, 'alpaca.parquet');
    const values = rows.map(
      (r) => `(${[r.instruction, r.output].map((v) => `'${v.replaceAll("'", "''")}'`).join(', ')})`,
    );
    await writeParquet(parquet, `select * from (values ${values.join(', ')}) t(instruction, output)`);
    const summaries = [];
    for (const file of [jsonl, parquet]) {
      const json = `${file}.summary.json`;
      const result = await runAir(['score', file, '--json', json]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/3 instructions/);
      summaries.push(
        JSON.parse(await readFile(json, 'utf8')) as {
          rows: number;
          constraintsPerInstruction: { mean: number; max: number };
          constraintsStated: { mean: number; max: number };
          typeShare: Record<string, number>;
        },
      );
    }
    expect(summaries[0]).toEqual(summaries[1]);
    const s = summaries[0]!;
    expect(s.rows).toBe(3);
    expect(s.constraintsPerInstruction.max).toBe(5); // tone, domain format, length, language, exclusion
    expect(s.constraintsStated.max).toBe(5);
    expect(s.constraintsStated.mean).toBeCloseTo((5 + 0 + 2) / 3, 5); // the third: bullet points, beginners
    expect(s.typeShare.multilingual).toBeCloseTo(1 / 3, 5);
    expect(s.typeShare.citation).toBe(0);
  });

  it('names the missing column and the ones there are', async () => {
    const file = path.join(dir, 'prompts.jsonl');
    await writeFile(file, '{"prompt":"hi","completion":"yo"}\n');
    const result = await runAir(['score', file]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /no column "instruction" \(columns: prompt, completion\); use --instruction-column/,
    );
  });
});
