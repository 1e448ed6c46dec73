import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../llm/simulator/index.js';
import { Rng } from '../llm/simulator/replies.js';
import { DOLMA, query, tempDir } from './helpers/duckdb.js';
import { runAir, startAir } from './helpers/cli.js';

// air run as a child process over the real Dolma sample, against a simulator in this process (so its counters
// outlive the children), killed with SIGKILL at seeded random moments and resumed each time. The final output
// must equal an uninterrupted run's, and the calls repeated after resumes must not exceed those in flight at
// the kills. Set AIR_CRASH_SEED to replay a failing sequence.

const SEED = Number(process.env.AIR_CRASH_SEED ?? Date.now() % 100_000);
const KILLS = 10;

let dir: string;
let cleanup: () => Promise<void>;
let sim: Simulator;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-crash-'));
  sim = await startSimulator({
    models: ['g', 's'],
    maxConcurrentSequences: 64,
    decodeTokensPerSPerSequence: 2000,
    meanReplyTokens: 120,
  });
});
afterAll(async () => {
  await sim.close();
  await cleanup();
});

async function writeConfig(name: string): Promise<string> {
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(
    file,
    [
      `input: ${DOLMA}`,
      `output: ${path.join(dir, name)}`,
      'llm:',
      `  guidance: { baseUrl: "${sim.url}", model: g }`,
      `  student: { baseUrl: "${sim.url}", model: s }`,
      'air: { documentsInFlight: 16, refine: { maxIterations: 3 } }',
      'writer: { partSeconds: 0.5 }',
      'engine: { checkpointSeconds: 0.2 }',
      'progress: "off"',
    ].join('\n'),
  );
  return file;
}

interface Row {
  document_id: string;
  depth: number;
  instruction: string;
}

async function rows(out: string): Promise<Row[]> {
  const result = await query(
    `select document_id, depth, instruction from read_parquet('${out}/part-*.parquet') order by all`,
  );
  return result.map(([document_id, depth, instruction]) => ({
    document_id: String(document_id),
    depth: Number(depth),
    instruction: String(instruction),
  }));
}

describe(`crash and resume (seed ${SEED})`, () => {
  it(`after ${KILLS} SIGKILLs the output equals an uninterrupted run's, with few calls repeated`, async () => {
    const reference = await writeConfig('reference');
    const before = sim.stats().completions;
    const clean = await runAir(['run', '--config', reference]);
    expect(clean.code, clean.stderr).toBe(0);
    const referenceCalls = sim.stats().completions - before;
    const expected = await rows(path.join(dir, 'reference'));
    expect(expected.length).toBeGreaterThan(10);

    const crashed = await writeConfig('crashed');
    const rng = new Rng(SEED);
    const start = sim.stats().completions;
    let inFlightAtKills = 0;
    let kills = 0;
    let attempts = 0;
    while (kills < KILLS) {
      attempts++;
      expect(attempts, `seed ${SEED}: runs kept finishing before their kill`).toBeLessThan(KILLS * 3);
      const { child, done } = startAir(['run', '--config', crashed]);
      const delayMs = 300 + Math.floor(rng.next() * 2500);
      // For the client a call is in flight until its answer is in the cache: requests the server is still
      // serving, plus answers it sent in the last 100 ms that the (busy, 2-core) child may not have read yet.
      const recent: Array<[number, number]> = [];
      const sampler = setInterval(() => {
        recent.push([performance.now(), sim.stats().completions]);
        while (recent.length > 0 && recent[0]![0] < performance.now() - 100) recent.shift();
      }, 5);
      const timer = setTimeout(() => {
        const s = sim.stats();
        const sentLately = recent.length > 0 ? s.completions - recent[0]![1] : 0;
        inFlightAtKills += s.inService + s.queued + sentLately;
        child.kill('SIGKILL');
      }, delayMs);
      const result = await done;
      clearTimeout(timer);
      clearInterval(sampler);
      if (result.signal === 'SIGKILL') kills++;
      else expect(result.code, `seed ${SEED}: ${result.stderr}`).toBe(0);
      if (result.code === 0) break; // finished before its kill: nothing left to interrupt
    }
    const last = await runAir(['run', '--config', crashed]);
    expect(last.code, `seed ${SEED}: ${last.stderr}`).toBe(0);
    const repeated = sim.stats().completions - start - referenceCalls;

    console.log(
      `crash test seed ${SEED}: ${kills} kills, ${repeated} of ${referenceCalls} calls repeated, ` +
        `${inFlightAtKills} in flight at the kills`,
    );
    const out = path.join(dir, 'crashed');
    const got = await rows(out);
    const keys = got.map((r) => `${r.document_id}@${r.depth}`);
    expect(new Set(keys).size, `seed ${SEED}: duplicate rows`).toBe(keys.length);
    expect(got, `seed ${SEED}`).toEqual(expected);
    const ledger = JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as {
      status: string;
      totals: {
        read: number;
        written: number;
        dropped: Record<string, number>;
        failed: Record<string, number>;
      };
    };
    expect(ledger.status).toBe('completed');
    const t = ledger.totals;
    const settled =
      t.written +
      Object.values(t.dropped).reduce((a, b) => a + b, 0) +
      Object.values(t.failed).reduce((a, b) => a + b, 0);
    expect(t.read).toBe(727);
    expect(settled).toBe(727);
    expect(
      repeated,
      `seed ${SEED}: ${repeated} calls repeated, ${inFlightAtKills} in flight at the kills`,
    ).toBeLessThanOrEqual(inFlightAtKills);
  }, 900_000);
});
