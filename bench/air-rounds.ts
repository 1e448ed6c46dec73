/**
 * air's streaming AIR loop against a baseline that runs the same steps in global rounds, as the reference code
 * does (every document finishes step k before any starts step k+1, and merge + answer run at all five depths).
 * Both sides: the same documents, the same in-flight budget of LLM calls, and each its own fresh simulator
 * process with the same capacity (slots, decode rate) and heavy-tailed reply lengths; no response cache.
 *
 *   npx tsx bench/air-rounds.ts [--docs 600] [--in-flight 64] [--slots 32] [--decode-tps 300]
 *                               [--reply-length lognormal|pareto] [--sigma 1.2] [--alpha 2.5]
 *                               [--mean-reply-tokens 200] [--depths deepest|all] [--only rounds|streaming]
 *                               [--call-layout folded|reference] [--prompt-sets v1,v2] [--min-words 50]
 *                               [--prefill-tps 20000] [--kv-cache-tokens 0] [--reply-per-prompt 0]
 *                               [--seeds 0,1,2] [--reply-key content|prompt] [--stage0 defaults|length]
 *
 * `--docs all` takes every document stage 0 keeps. `--stage0 defaults` (the default) reads the documents
 * through the job's stage 0 at its default settings (quality filters, exact and near dedupe); `length` through
 * the length window only. `--reply-key content` (the default) pairs the sides: the simulator seeds a reply by the
 * prompt's per-request texts, not its layout, so every side takes the same decisions where it makes the same
 * calls. `--seeds` runs every side once per simulator seed and adds tables pooled over the seeds.
 *
 * `--prompt-sets` runs the streaming side once per prompt set (each against a fresh simulator); the rounds side
 * always uses v1, the reference code's prompt layout. With `--kv-cache-tokens` the simulator caches prompt
 * prefixes as vLLM does, and the tables add the GPU work: prompt tokens prefilled, found cached, decoded.
 *
 * Prints markdown tables and writes bench/data/air-rounds.json.
 */
import type { DuckDBInstance } from '@duckdb/node-api';
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { airConfigSchema, type AirConfig } from '../job/config.js';
import type { SimulatorOptions } from '../llm/simulator/index.js';
import { loadPromptSet } from '../operators/air/prompts.js';
import { sumSteps, type StepCounts } from '../llm/accounting.js';
import type { PrefixMetrics } from '../llm/simulator/prefix-cache.js';
import { DEFAULT_REFINE, REFERENCE_CALLS } from '../operators/air/refine.js';
import { GENERATE_TOKENS } from '../operators/air/generate.js';
import { MERGE_TOKENS } from '../operators/air/merge.js';
import { RefineLoop } from '../operators/air/refine-loop.js';
import { StepRunner } from '../operators/air/steps.js';
import { DEFAULT_VALIDITY } from '../operators/air/validity-filter.js';
import { createMinHashPool } from '../operators/dedupe/near-dedupe.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { resolveShards } from '../pipeline/io/shards.js';
import { benchLlm, type BenchClient } from './air-rounds/client.js';
import { chooseDocuments, readDocuments, type DocumentSet } from './air-rounds/documents.js';
import { runRounds } from './air-rounds/rounds.js';
import {
  gpuWorkBetween,
  scrape,
  scrapeGpuWork,
  serverWindow,
  startBenchSim,
  stopBenchSim,
  type ServerWindow,
  type SimMetrics,
} from './air-rounds/sim.js';
import { runStreaming } from './air-rounds/streaming.js';
import { callsByStage, STAGE_OF_STEP, tally, yieldsFromRows, type Yield } from './air-rounds/tally.js';

function arg(flag: string, fallback: string): string {
  const at = process.argv.indexOf(flag);
  return at < 0 ? fallback : (process.argv[at + 1] ?? fallback);
}
const num = (flag: string, fallback: number): number => Number(arg(flag, String(fallback)));

const DOCS = arg('--docs', '600') === 'all' ? 0 : num('--docs', 600);
const IN_FLIGHT = num('--in-flight', 64);
const INPUT = arg('--input', path.resolve(import.meta.dirname, '../../shared/data/web'));
const OUT = arg('--out', path.resolve(import.meta.dirname, 'data/air-rounds.json'));
const ONLY = arg('--only', 'both');
const DEPTHS_MODE = arg('--depths', 'deepest') as AirConfig['depths'];
const MIN_WORDS = num('--min-words', 50);

const SEEDS = arg('--seeds', arg('--seed', '0')).split(',').map(Number);
const STAGE0 = arg('--stage0', 'defaults');
if (STAGE0 !== 'defaults' && STAGE0 !== 'length') {
  throw new Error(`--stage0 must be defaults or length, not "${STAGE0}"`);
}
const REPLY_KEY = arg('--reply-key', 'content');
if (REPLY_KEY !== 'content' && REPLY_KEY !== 'prompt') {
  throw new Error(`--reply-key must be content or prompt, not "${REPLY_KEY}"`);
}

/** The one simulator configuration every side gets (each in a fresh process), but for the seed. */
const SIM: SimulatorOptions = {
  seed: SEEDS[0]!,
  replyKey: REPLY_KEY,
  models: ['air-sim-guidance', 'air-sim-student'],
  maxConcurrentSequences: num('--slots', 32),
  decodeTokensPerSPerSequence: num('--decode-tps', 300),
  prefillTokensPerS: num('--prefill-tps', 20_000),
  maxQueue: 1024,
  contextTokens: 32_768,
  meanReplyTokens: num('--mean-reply-tokens', 200),
  replyTokensPerPromptToken: num('--reply-per-prompt', 0),
  kvCacheTokens: num('--kv-cache-tokens', 0),
  replyLength: arg('--reply-length', 'lognormal') as 'lognormal' | 'pareto',
  replyLengthSigma: num('--sigma', 1.2),
  replyLengthAlpha: num('--alpha', 2.5),
};
const SLOTS = SIM.maxConcurrentSequences!;

/**
 * `folded` (air's default): each round's check rides on the next judge call, duplicates checked by words;
 * `reference`: a check call and a duplicate-check call of their own each round, as the reference code makes.
 */
const CALL_LAYOUT = arg('--call-layout', 'folded');
if (CALL_LAYOUT !== 'folded' && CALL_LAYOUT !== 'reference') {
  throw new Error(`--call-layout must be folded or reference, not "${CALL_LAYOUT}"`);
}

/** air's defaults, less the final LLM quality score (the reference has no such call). */
const AIR: AirConfig = airConfigSchema.parse({
  llmScores: false,
  depths: DEPTHS_MODE,
  refine: CALL_LAYOUT === 'reference' ? REFERENCE_CALLS : {},
});
/** The streaming side runs once per set; the default is the config's own. */
const PROMPT_SETS = arg('--prompt-sets', AIR.promptSet).split(',');
/** The reference code's prompt layout. */
const ROUNDS_PROMPT_SET = 'v1';

interface SideSummary {
  readonly side: 'rounds' | 'streaming';
  readonly promptSet: string;
  /** The server's GPU work in the side's window. */
  readonly gpu: PrefixMetrics;
  /** The client's accounting per step: prompt tokens sent and those the server reports cached. */
  readonly steps: Readonly<Record<string, StepCounts>>;
  readonly wallS: number;
  readonly documents: number;
  readonly documentsPerS: number;
  readonly acceptedPerS: number;
  readonly yield: Yield;
  /** Logical calls (one per step call; HTTP retries and JSON repairs inside it). */
  readonly calls: number;
  readonly callsByRole: Record<string, number>;
  readonly callsByStage: Record<string, number>;
  readonly failedCalls: number;
  readonly callsPerAccepted: number;
  readonly callsPerDocumentWithInstruction: number;
  readonly peakInFlight: number;
  readonly retries: number;
  readonly server: ServerWindow;
  /** Where the documents went: passed generate, dropped by reason, failed by kind. */
  readonly outcomes: Record<string, number>;
  /** Ids of the documents with an accepted instruction, to tell how far two sides are paired. */
  readonly withInstruction: readonly string[];
  readonly rounds?: readonly { name: string; units: number; wallS: number; busy: number }[];
  /** Per second: the server's mean running and waiting requests. */
  readonly timeline: readonly { t: number; running: number; waiting: number }[];
}

/** Samples the simulator every second while `work` runs; the timeline and the whole window. */
async function measured<T>(
  origin: string,
  work: (now: () => Promise<SimMetrics>) => Promise<T>,
): Promise<{
  value: T;
  wallS: number;
  server: ServerWindow;
  gpu: PrefixMetrics;
  timeline: SideSummary['timeline'];
}> {
  const gpuBefore = await scrapeGpuWork(origin);
  const first = await scrape(origin);
  const samples: SimMetrics[] = [first];
  let done = false;
  const sampler = (async () => {
    while (!done) {
      await sleep(1000);
      if (!done) samples.push(await scrape(origin));
    }
  })();
  const started = performance.now();
  const value = await work(() => scrape(origin));
  const wallS = (performance.now() - started) / 1000;
  done = true;
  await sampler;
  const last = await scrape(origin);
  const gpu = gpuWorkBetween(gpuBefore, await scrapeGpuWork(origin));
  samples.push(last);
  const timeline = samples.slice(1).map((s, i) => {
    const w = serverWindow(samples[i]!, s, SLOTS);
    return { t: s.uptime_seconds - first.uptime_seconds, running: w.meanRunning, waiting: w.meanWaiting };
  });
  return { value, wallS, server: serverWindow(first, last, SLOTS), gpu, timeline };
}

function steps(llm: BenchClient): StepRunner {
  const runner = new StepRunner(llm.client, loadPromptSet(ROUNDS_PROMPT_SET), {
    seed: AIR.seed,
    maxTokens: AIR.maxTokens,
  });
  // runRounds calls the reference's steps directly, not through the operators that declare them.
  const reference = RefineLoop.stepsUsed({ ...DEFAULT_REFINE, ...REFERENCE_CALLS });
  runner.uses('rounds', { ...GENERATE_TOKENS, ...reference });
  runner.uses('merge', MERGE_TOKENS);
  return runner;
}

function common(llm: BenchClient, documents: number, wallS: number, result: Yield) {
  const calls = llm.client.totalCalls;
  let failedCalls = 0;
  for (const n of llm.client.failures.values()) failedCalls += n;
  return {
    wallS,
    documents,
    documentsPerS: documents / wallS,
    acceptedPerS: result.accepted / wallS,
    yield: result,
    calls,
    callsByRole: Object.fromEntries(llm.client.calls),
    failedCalls,
    callsPerAccepted: calls / result.accepted,
    callsPerDocumentWithInstruction: calls / result.documentsWithInstruction,
    peakInFlight: llm.client.peakInFlight,
    retries: llm.accounting.snapshot().totals.retries,
  };
}

async function roundsSide(db: DuckDBInstance, set: DocumentSet, seed: number): Promise<SideSummary> {
  const sim = await startBenchSim({ ...SIM, seed });
  const llm = benchLlm(sim.url, IN_FLIGHT);
  try {
    const rounds: { name: string; units: number; wallS: number; busy: number }[] = [];
    const run = await measured(sim.origin, async (now) => {
      // Reading is inside the timed window, as the streaming side reads while it runs.
      const { documents } = await readDocuments(db, set);
      let previous = await now();
      return runRounds(steps(llm), documents, {
        inFlight: IN_FLIGHT,
        generate: AIR.generate,
        maxIterations: AIR.refine.maxIterations,
        constraintWords: { minWords: AIR.refine.constraintMinWords, maxWords: AIR.refine.constraintMaxWords },
        validity: DEFAULT_VALIDITY,
        mergeDepths: 5,
        async onRound(round) {
          const current = await now();
          rounds.push({
            name: round.name,
            units: round.units,
            wallS: round.wallMs / 1000,
            busy: serverWindow(previous, current, SLOTS).busy,
          });
          previous = current;
        },
      });
    });
    const { items } = run.value;
    const result = tally(
      items.map((i) => ({ calls: i.calls.length, depths: i.examples.map((e) => e.depth) })),
    );
    const outcomes: Record<string, number> = {};
    const add = (key: string): void => void (outcomes[key] = (outcomes[key] ?? 0) + 1);
    for (const item of items) {
      if (item.state === 'dropped') add(`dropped:${item.reason}`);
      else if (item.state === 'failed') add(`failed:${item.reason}`);
      else {
        add('passed_generate');
        add(`stop:${item.stopReason}`);
        add(`reached_depth:${item.constraints.length}`);
        if (item.examples.length === 0) add('no_valid_row');
        for (const [rule, n] of item.rejected)
          outcomes[`row_rejected:${rule}`] = (outcomes[`row_rejected:${rule}`] ?? 0) + n;
      }
    }
    return {
      side: 'rounds',
      promptSet: ROUNDS_PROMPT_SET,
      gpu: run.gpu,
      steps: llm.accounting.snapshot().steps ?? {},
      ...common(llm, items.length, run.wallS, result),
      callsByStage: callsByStage(items.flatMap((i) => i.calls)),
      server: run.server,
      outcomes,
      withInstruction: items.filter((i) => i.examples.length > 0).map((i) => i.doc.id),
      rounds,
      timeline: run.timeline,
    };
  } finally {
    await llm.close();
    await stopBenchSim(sim);
  }
}

async function streamingSide(
  db: DuckDBInstance,
  set: DocumentSet,
  promptSet: string,
  seed: number,
): Promise<SideSummary> {
  const sim = await startBenchSim({ ...SIM, seed });
  const llm = benchLlm(sim.url, IN_FLIGHT);
  try {
    const run = await measured(sim.origin, () =>
      runStreaming(db, set, llm.client, { ...AIR, promptSet }, (l) => console.error(l)),
    );
    const { report, rows } = run.value;
    const result = tally(yieldsFromRows(rows));
    const outcomes: Record<string, number> = {};
    const stage = (name: string) => report.stages.find((s) => s.name === name);
    outcomes.passed_generate = stage('generate')?.passed ?? 0;
    for (const [key, n] of Object.entries(report.totals.dropped)) outcomes[`dropped:${key}`] = n;
    for (const [key, n] of Object.entries(report.totals.failed)) outcomes[`failed:${key}`] = n;
    for (const [key, n] of Object.entries(stage('refine')?.counters ?? {})) {
      if (key.startsWith('stop:') || key.startsWith('depth:'))
        outcomes[key.replace(/^depth:/, 'reached_depth:')] = n;
    }
    const byStage: Record<string, number> = {};
    for (const s of report.stages) if (s.counters.calls !== undefined) byStage[s.name] = s.counters.calls;
    return {
      side: 'streaming',
      promptSet,
      gpu: run.gpu,
      steps: llm.accounting.snapshot().steps ?? {},
      ...common(llm, stage('generate')?.in ?? 0, run.wallS, result),
      callsByStage: byStage,
      server: run.server,
      outcomes,
      withInstruction: [...new Set(rows.map((r) => r.doc.id))],
      timeline: run.timeline,
    };
  } finally {
    await llm.close();
    await stopBenchSim(sim);
  }
}

// ---- report ---------------------------------------------------------------------------------------------

const f = (x: number | null | undefined, digits = 2): string =>
  x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
const ratio = (a: number | null | undefined, b: number | null | undefined): string =>
  a === null || a === undefined || b === null || b === undefined || b === 0 ? '-' : `${(a / b).toFixed(2)}x`;

function mainTable(r: SideSummary | undefined, s: SideSummary | undefined): string {
  const row = (label: string, pick: (x: SideSummary) => number, digits = 2, showRatio = true): string =>
    `| ${label} | ${f(r && pick(r), digits)} | ${f(s && pick(s), digits)} | ${showRatio ? ratio(s && pick(s), r && pick(r)) : ''} |`;
  return [
    '| | rounds (reference schedule) | streaming (air) | streaming / rounds |',
    '| --- | ---: | ---: | ---: |',
    row('documents (passed stage 0)', (x) => x.documents, 0, false),
    row('wall time (s)', (x) => x.wallS, 1),
    row('documents/s', (x) => x.documentsPerS),
    row('accepted instructions', (x) => x.yield.accepted, 0),
    row('accepted instructions/s', (x) => x.acceptedPerS),
    row('documents with an accepted instruction', (x) => x.yield.documentsWithInstruction, 0),
    row('documents with an accepted instruction/s', (x) => x.yield.documentsWithInstruction / x.wallS),
    row('LLM calls', (x) => x.calls, 0),
    row('calls per accepted instruction', (x) => x.callsPerAccepted),
    row('calls per document with an accepted instruction', (x) => x.callsPerDocumentWithInstruction),
    row('server busy (slot-time used / slots × time)', (x) => x.server.busy, 3),
    row('mean requests running on the server', (x) => x.server.meanRunning, 1),
    row('mean requests waiting on the server', (x) => x.server.meanWaiting, 1),
    row('completion tokens served', (x) => x.server.completionTokens, 0),
    row(
      'server slot-seconds used per document',
      (x) => (x.server.meanRunning * x.server.seconds) / x.documents,
    ),
    row('peak calls in flight (client)', (x) => x.peakInFlight, 0, false),
    row('failed calls', (x) => x.failedCalls, 0, false),
  ].join('\n');
}

function depthTable(r: SideSummary | undefined, s: SideSummary | undefined): string {
  const lines = [
    '| depth | rounds: documents | rounds: calls per document | rounds: instructions at this depth | ' +
      'streaming: documents | streaming: calls per document | streaming / rounds |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (let d = 0; d < 5; d++) {
    const a = r?.yield.byDepth[d];
    const b = s?.yield.byDepth[d];
    lines.push(
      `| ${d + 1} | ${a?.documents ?? '-'} | ${f(a?.callsPerDocument)} | ${a?.instructions ?? '-'} | ` +
        `${b?.documents ?? '-'} | ${f(b?.callsPerDocument)} | ${ratio(b?.callsPerDocument, a?.callsPerDocument)} |`,
    );
  }
  return lines.join('\n');
}

function roundsTable(r: SideSummary): string {
  const lines = ['| round | calls | wall (s) | server busy |', '| --- | ---: | ---: | ---: |'];
  for (const x of r.rounds ?? []) lines.push(`| ${x.name} | ${x.units} | ${f(x.wallS)} | ${f(x.busy, 3)} |`);
  return lines.join('\n');
}

function machine(): string {
  let model = os.cpus()[0]?.model ?? 'unknown';
  try {
    const lscpu = execFileSync('lscpu', { encoding: 'utf8' });
    model = /^Model name:\s*(.+)$/m.exec(lscpu)?.[1]?.trim() ?? model;
  } catch {
    // lscpu is missing on some systems; Node's CPU model is close enough.
  }
  return `${model} · nproc ${os.availableParallelism()} · node ${process.version} · ${os.platform()} ${os.release()}`;
}

function label(side: SideSummary): string {
  return side.side === 'rounds' ? `rounds (${side.promptSet})` : `streaming ${side.promptSet}`;
}

/**
 * Per side: calls, tokens and GPU work per document with an accepted instruction and per instruction, with the
 * ratios of the last streaming side to the first and to the rounds baseline.
 */
/** Prompt tokens the server computed for the steps of the generate stage, or for every other step. */
function computedIn(side: SideSummary, generate: boolean): number {
  let total = 0;
  for (const [step, c] of Object.entries(side.steps)) {
    if ((STAGE_OF_STEP[step] === 'generate') === generate) total += c.promptTokens - c.serverCachedTokens;
  }
  return total;
}

function gpuTable(sides: readonly SideSummary[]): string {
  const rounds = sides.find((s) => s.side === 'rounds');
  const streams = sides.filter((s) => s.side === 'streaming');
  const first = streams[0];
  const last = streams[streams.length - 1];
  const pairs: [string, SideSummary | undefined, SideSummary | undefined][] = [
    [`${last?.promptSet} / ${first?.promptSet}`, last, first],
    [`${last?.promptSet} / rounds`, last, rounds],
  ].filter(([, a, b]) => a !== undefined && b !== undefined && a !== b) as [
    string,
    SideSummary,
    SideSummary,
  ][];
  const withInstruction = (x: SideSummary): number => x.yield.documentsWithInstruction;
  const serviceS = (x: SideSummary) => ({
    prefill: x.gpu.prefillTokens / SIM.prefillTokensPerS!,
    decode: x.gpu.decodeTokens / SIM.decodeTokensPerSPerSequence!,
  });
  const rows: [string, (x: SideSummary) => number, number][] = [
    ['documents (passed stage 0)', (x) => x.documents, 0],
    ['documents that passed generate', (x) => x.outcomes.passed_generate ?? 0, 0],
    ['documents with an accepted instruction', withInstruction, 0],
    ['accepted instructions', (x) => x.yield.accepted, 0],
    ['wall time (s)', (x) => x.wallS, 1],
    ['documents/s', (x) => x.documentsPerS, 3],
    ['documents with an accepted instruction/s', (x) => withInstruction(x) / x.wallS, 3],
    ['calls per document with an accepted instruction', (x) => x.calls / withInstruction(x), 2],
    [
      'prompt tokens sent per document with an accepted instruction',
      (x) => x.gpu.queries / withInstruction(x),
      0,
    ],
    [
      'completion tokens per document with an accepted instruction',
      (x) => x.gpu.decodeTokens / withInstruction(x),
      0,
    ],
    ['share of prompt tokens found in the prefix cache', (x) => x.gpu.hits / x.gpu.queries, 3],
    [
      '**prefill tokens computed per accepted instruction**',
      (x) => x.gpu.prefillTokens / x.yield.accepted,
      0,
    ],
    [
      '**prefill tokens computed per document with an accepted instruction**',
      (x) => x.gpu.prefillTokens / withInstruction(x),
      0,
    ],
    ['prefill tokens computed per document', (x) => x.gpu.prefillTokens / x.documents, 0],
    [
      'prefill tokens computed in generate per document (client accounting)',
      (x) => computedIn(x, true) / x.documents,
      0,
    ],
    [
      'prefill tokens computed after generate per document that passed it',
      (x) => computedIn(x, false) / (x.outcomes.passed_generate ?? 0),
      0,
    ],
    ['decode tokens per document', (x) => x.gpu.decodeTokens / x.documents, 0],
    [
      'prefill share of GPU time (prefill / (prefill + decode) s)',
      (x) => serviceS(x).prefill / (serviceS(x).prefill + serviceS(x).decode),
      3,
    ],
  ];
  const head = `| | ${sides.map(label).join(' | ')} | ${pairs.map(([name]) => name).join(' | ')} |`;
  const rule = `| --- | ${sides.map(() => '---:').join(' | ')} | ${pairs.map(() => '---:').join(' | ')} |`;
  const lines = rows.map(
    ([name, pick, digits]) =>
      `| ${name} | ${sides.map((x) => f(pick(x), digits)).join(' | ')} | ${pairs.map(([, a, b]) => ratio(pick(a!), pick(b!))).join(' | ')} |`,
  );
  return [head, rule, ...lines].join('\n');
}

/** Per step and side: calls, prompt tokens sent, and the share the server found in its prefix cache. */
function stepsTable(sides: readonly SideSummary[]): string {
  const steps = [...new Set(sides.flatMap((s) => Object.keys(s.steps)))].sort();
  const cell = (c: StepCounts | undefined): string =>
    c === undefined
      ? '- | - | -'
      : `${c.calls} | ${c.promptTokens} | ${c.reportedPromptTokens > 0 ? f(c.serverCachedTokens / c.reportedPromptTokens, 3) : '-'}`;
  const head = `| step | ${sides.map((s) => `${label(s)}: calls | prompt tokens | cached share`).join(' | ')} |`;
  const rule = `| --- | ${sides.map(() => '---: | ---: | ---:').join(' | ')} |`;
  const lines = [
    ...steps.map((step) => `| ${step} | ${sides.map((s) => cell(s.steps[step])).join(' | ')} |`),
    `| all steps | ${sides.map((s) => cell(sumSteps(s.steps))).join(' | ')} |`,
  ];
  return [head, rule, ...lines].join('\n');
}

/** Sides of the same kind and prompt set over several seeds, added up (rates over the summed wall time). */
function pool(sides: readonly SideSummary[]): SideSummary {
  const first = sides[0]!;
  const sum = (pick: (x: SideSummary) => number): number => sides.reduce((n, x) => n + pick(x), 0);
  const add = (maps: readonly Readonly<Record<string, number>>[]): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const m of maps) for (const [k, v] of Object.entries(m)) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  const steps: Record<string, StepCounts> = {};
  for (const name of new Set(sides.flatMap((x) => Object.keys(x.steps)))) {
    steps[name] = sumSteps(
      Object.fromEntries(sides.map((x, i) => [i, x.steps[name]]).filter(([, c]) => c !== undefined)),
    );
  }
  const wallS = sum((x) => x.wallS);
  const documents = sum((x) => x.documents);
  const result: Yield = {
    accepted: sum((x) => x.yield.accepted),
    documentsWithInstruction: sum((x) => x.yield.documentsWithInstruction),
    byDepth: first.yield.byDepth,
  };
  return {
    ...first,
    gpu: add(sides.map((x) => x.gpu)) as unknown as PrefixMetrics,
    steps,
    wallS,
    documents,
    documentsPerS: documents / wallS,
    acceptedPerS: result.accepted / wallS,
    yield: result,
    calls: sum((x) => x.calls),
    callsPerAccepted: sum((x) => x.calls) / result.accepted,
    callsPerDocumentWithInstruction: sum((x) => x.calls) / result.documentsWithInstruction,
    outcomes: add(sides.map((x) => x.outcomes)),
    withInstruction: sides.flatMap((x, i) => x.withInstruction.map((id) => `${i}:${id}`)),
  };
}

/** How far two sides took the same decisions: documents with an accepted instruction on each, and on both. */
function pairing(a: SideSummary, b: SideSummary): string {
  const mine = new Set(a.withInstruction);
  const both = b.withInstruction.filter((id) => mine.has(id)).length;
  return (
    `${label(a)} / ${label(b)}: passed generate ${a.outcomes.passed_generate ?? 0} / ${b.outcomes.passed_generate ?? 0}, ` +
    `documents with an accepted instruction ${a.withInstruction.length} / ${b.withInstruction.length}, on both ${both}`
  );
}

/** Each side against the first (the rounds baseline when it ran), and the last streaming side against the first. */
function pairs(sides: readonly SideSummary[]): [SideSummary, SideSummary][] {
  const out = sides.slice(1).map((x): [SideSummary, SideSummary] => [x, sides[0]!]);
  const streams = sides.filter((x) => x.side === 'streaming');
  if (streams.length > 1 && streams[0] !== sides[0]) out.push([streams[streams.length - 1]!, streams[0]!]);
  return out;
}

// ---- main -----------------------------------------------------------------------------------------------

const db = await openDuckDB({ threads: 2, memoryLimit: '512MB' });
const shards = await resolveShards([INPUT]);
const minHash = STAGE0 === 'defaults' ? createMinHashPool(1) : undefined;
const set = await chooseDocuments(
  db,
  shards,
  DOCS,
  { minWords: MIN_WORDS, maxWords: 2048 },
  minHash === undefined ? { dedupe: false } : { dedupe: true, pool: minHash },
);
console.log(`machine: ${machine()}`);
console.log(
  `documents: the first ${set.documents} of ${MIN_WORDS}-2048 words that stage 0 keeps (${STAGE0 === 'defaults' ? "the job's defaults: quality filters, exact and near dedupe" : 'length window only'}; ${set.rowLimit} rows of ${shards.map((s) => s.label).join(', ')})`,
);
console.log(`simulator (fresh process per side; seeds ${SEEDS.join(', ')}): ${JSON.stringify(SIM)}`);
console.log(
  `in-flight budget per side: ${IN_FLIGHT} calls · air: documentsInFlight ${AIR.documentsInFlight}, depths ${AIR.depths}, call layout ${CALL_LAYOUT}, prompt sets ${PROMPT_SETS.join(', ')} (rounds: ${ROUNDS_PROMPT_SET}), llmScores off\n`,
);

const bySeed: { seed: number; rounds: SideSummary | undefined; streamings: SideSummary[] }[] = [];
for (const seed of SEEDS) {
  console.log(`## seed ${seed}\n`);
  const rounds = ONLY === 'streaming' ? undefined : await roundsSide(db, set, seed);
  if (rounds !== undefined) console.log(`rounds: ${f(rounds.wallS, 1)} s`);
  const streamings: SideSummary[] = [];
  for (const promptSet of ONLY === 'rounds' ? [] : PROMPT_SETS) {
    const side = await streamingSide(db, set, promptSet, seed);
    console.log(`streaming ${promptSet}: ${f(side.wallS, 1)} s`);
    streamings.push(side);
  }
  bySeed.push({ seed, rounds, streamings });
  /** The config's default set when it ran, else the last one. */
  const streaming =
    streamings.find((s) => s.promptSet === AIR.promptSet) ?? streamings[streamings.length - 1];
  console.log(`\n${mainTable(rounds, streaming)}\n`);
  console.log(
    `Calls per document, by the depth of its deepest accepted instruction:\n\n${depthTable(rounds, streaming)}\n`,
  );
  const sides = [...(rounds === undefined ? [] : [rounds]), ...streamings];
  if ((SIM.kvCacheTokens ?? 0) > 0) {
    console.log(`GPU work (the simulator's counters):\n\n${gpuTable(sides)}\n`);
    console.log(`Prompt tokens per step (client accounting):\n\n${stepsTable(sides)}\n`);
  }
  for (const side of sides) {
    console.log(
      `${label(side)}: calls by stage ${JSON.stringify(side.callsByStage)} · by role ${JSON.stringify(side.callsByRole)}`,
    );
    console.log(`${label(side)}: outcomes ${JSON.stringify(side.outcomes)}`);
  }
  for (const [a, b] of pairs(sides)) console.log(`paired: ${pairing(a, b)}`);
  if (rounds !== undefined) console.log(`\nRounds of the baseline:\n\n${roundsTable(rounds)}`);
}
db.closeSync();
await minHash?.close();

if (SEEDS.length > 1 && (SIM.kvCacheTokens ?? 0) > 0) {
  const first = bySeed[0]!;
  const pooled = [
    ...(first.rounds === undefined ? [] : [pool(bySeed.map((b) => b.rounds!))]),
    ...first.streamings.map((_, i) => pool(bySeed.map((b) => b.streamings[i]!))),
  ];
  console.log(`\n## pooled over seeds ${SEEDS.join(', ')}\n`);
  console.log(`GPU work (the simulator's counters):\n\n${gpuTable(pooled)}\n`);
  console.log(`Prompt tokens per step (client accounting):\n\n${stepsTable(pooled)}\n`);
  for (const side of pooled) console.log(`${label(side)}: outcomes ${JSON.stringify(side.outcomes)}`);
  for (const [a, b] of pairs(pooled)) console.log(`paired: ${pairing(a, b)}`);
}

await mkdir(path.dirname(OUT), { recursive: true });
await writeFile(
  OUT,
  `${JSON.stringify({ machine: machine(), documents: { ...set, stage0: STAGE0 }, simulator: SIM, seeds: SEEDS, inFlight: IN_FLIGHT, air: AIR, bySeed }, null, 2)}\n`,
);
console.log(`\nwritten: ${OUT}`);
