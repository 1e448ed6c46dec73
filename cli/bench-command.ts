import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { parseRunConfig } from '../job/config.js';
import { benchPipeline, type PipelineBenchReport } from '../job/pipeline-bench.js';
import { endpointSchema, resolveEndpoint } from '../llm/endpoint.js';
import { ConfigError } from '../pipeline/errors.js';
import { concurrencyLevels, loadTest, type LevelResult } from '../llm/load-test.js';
import { loadTestHtml } from '../report/load-test-page.js';
import { positiveIntArg } from './args.js';
import { mergeConfig, readConfigFile } from './config-file.js';
import { formatTable } from '../report/format.js';

export interface BenchIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

interface BenchFlags {
  url?: string;
  model?: string;
  pipeline?: boolean;
  input?: string[];
  docs: number;
  config?: string;
  llm?: string;
  apiKeyEnv?: string;
  maxConcurrency: number;
  requestsPerLevel: number;
  promptWords: number;
  maxTokens: number;
  timeoutSeconds: number;
  out: string;
}

/** `air bench`: sweep an endpoint's concurrency, find the knee, write JSON and an HTML page with the curves. */
export function registerBenchCommand(program: Command, io: BenchIO, setExit: (code: number) => void): void {
  program
    .command('bench')
    .description(
      'Measure an OpenAI-compatible endpoint: throughput and latency by concurrency, and the knee; ' +
        'or (--pipeline) the AIR method on N documents: documents/s, calls and tokens per document.',
    )
    .option('--url <baseUrl>', 'base URL up to /v1, e.g. http://127.0.0.1:8000/v1')
    .option('--model <name>', 'model name to send')
    .option('--pipeline', 'run the AIR pipeline on --docs documents of --input instead of a sweep')
    .option('--input <path...>', 'with --pipeline: Parquet shards to take the documents from')
    .option('--docs <n>', 'with --pipeline: documents to read', positiveIntArg, 200)
    .option('--config <file>', 'with --pipeline: a run config whose llm and air sections are used')
    .option('--llm <mode>', 'with --pipeline: sim runs against the built-in simulator')
    .option('--api-key-env <VAR>', 'environment variable holding the API key')
    .option(
      '--max-concurrency <n>',
      'highest level of the sweep (1, 2, 4, ... up to it)',
      positiveIntArg,
      256,
    )
    .option('--requests-per-level <n>', 'requests measured at each level', positiveIntArg, 200)
    .option('--prompt-words <n>', 'words per prompt', positiveIntArg, 200)
    .option('--max-tokens <n>', 'max_tokens per request', positiveIntArg, 128)
    .option('--timeout-seconds <n>', 'per-request time limit', positiveIntArg, 300)
    .option('--out <dir>', 'where bench.json and bench.html go', 'air-bench')
    .action(async (flags: BenchFlags) => {
      if (flags.pipeline === true) {
        const report = await runPipelineBench(flags, io);
        setExit(report.status === 'completed' ? 0 : 1);
        return;
      }
      setExit(await runSweep(flags, io));
    });
}

const LEVEL_HEADER = [
  'concurrency',
  'req/s',
  'prompt tok/s',
  'compl tok/s',
  'p50 ms',
  'p95 ms',
  'p99 ms',
  'errors',
];

/** The concurrency sweep against one endpoint: a line per level as it ends, then bench.json and bench.html. */
async function runSweep(flags: BenchFlags, io: BenchIO): Promise<number> {
  if (flags.url === undefined || flags.model === undefined) {
    throw new ConfigError('air bench: --url and --model are required (or --pipeline with --input)');
  }
  const parsed = endpointSchema.safeParse({
    baseUrl: flags.url,
    model: flags.model,
    apiKeyEnv: flags.apiKeyEnv,
    maxConcurrency: flags.maxConcurrency,
    timeoutSeconds: flags.timeoutSeconds,
  });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`air bench: ${problems}`);
  }
  const endpoint = resolveEndpoint('bench', parsed.data);
  const header = LEVEL_HEADER;
  io.stderr(`air bench: ${flags.model} at ${flags.url}, ${flags.requestsPerLevel} requests per level\n`);
  io.stderr(`${formatTable([header, header])[0]}\n`);
  const report = await loadTest(endpoint, {
    levels: concurrencyLevels(flags.maxConcurrency),
    requestsPerLevel: flags.requestsPerLevel,
    promptWords: flags.promptWords,
    maxTokens: flags.maxTokens,
    onLevel: (level) => io.stderr(`${formatTable([header, levelCells(level)])[1]}\n`),
  });
  await mkdir(flags.out, { recursive: true });
  const json = path.join(flags.out, 'bench.json');
  const html = path.join(flags.out, 'bench.html');
  await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(html, loadTestHtml(report));
  for (const line of formatTable([header, ...report.levels.map(levelCells)])) io.stdout(`${line}\n`);
  io.stdout(`knee at ${report.knee} in flight: set maxConcurrency: ${report.recommendedConcurrency}\n`);
  io.stdout(`wrote ${json} and ${html}\n`);
  return report.levels.every((l) => l.errors === l.requests) ? 1 : 0;
}

function levelCells(l: LevelResult): string[] {
  return [
    String(l.concurrency),
    l.requestsPerS.toFixed(1),
    l.promptTokensPerS.toFixed(0),
    l.completionTokensPerS.toFixed(0),
    l.latencyMs.p50.toFixed(0),
    l.latencyMs.p95.toFixed(0),
    l.latencyMs.p99.toFixed(0),
    `${((100 * l.errors) / l.requests).toFixed(1)}%`,
  ];
}

async function runPipelineBench(flags: BenchFlags, io: BenchIO): Promise<PipelineBenchReport> {
  if (flags.input === undefined) throw new ConfigError('air bench --pipeline: --input <shards> is required');
  const fromFile = flags.config === undefined ? {} : await readConfigFile(flags.config);
  const single =
    flags.url === undefined || flags.model === undefined
      ? undefined
      : { baseUrl: flags.url, model: flags.model, apiKeyEnv: flags.apiKeyEnv };
  // A fresh folder per run: a bench never appends to, or deletes, an earlier one.
  const output = path.join(flags.out, `pipeline-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  const merged = mergeConfig(fromFile, {
    input: flags.input,
    output,
    method: 'air',
    source: { limit: flags.docs },
    progress: 'off',
    llm: { mode: flags.llm, guidance: single, student: single },
  });
  const config = parseRunConfig(merged, flags.config ?? 'air bench');
  io.stderr(
    `air bench --pipeline: up to ${flags.docs} documents of ${flags.input.join(', ')} -> ${output}\n`,
  );
  const report = await benchPipeline(config, { log: (line) => io.stderr(`air: ${line}\n`) });
  const rows = [
    ['documents read', String(report.documents)],
    ['documents to the LLM stages', String(report.documentsToLlm)],
    ['instructions written', String(report.rowsWritten)],
    ['wall time', `${report.wallS.toFixed(1)} s`],
    ['documents/s', report.documentsPerS.toFixed(2)],
    ['instructions/s', report.rowsPerS.toFixed(2)],
    ['LLM calls/s', report.callsPerS.toFixed(1)],
    ['calls per document', report.callsPerDocument.toFixed(2)],
    ['calls per instruction', report.callsPerRow.toFixed(2)],
    ['prompt tokens per document', report.promptTokensPerDocument.toFixed(0)],
    ['completion tokens per document', report.completionTokensPerDocument.toFixed(0)],
    ['tokens per instruction', report.tokensPerRow.toFixed(0)],
    [
      'prompt tokens per document cached by the server',
      report.serverCachedTokensPerDocument?.toFixed(0) ?? '- (not reported)',
    ],
    [
      'prompt tokens per document computed by the server',
      report.promptTokensComputedPerDocument?.toFixed(0) ?? '- (not reported)',
    ],
  ];
  for (const line of formatTable([['measure', 'value'], ...rows])) io.stdout(`${line}\n`);
  const roles = report.byRole.map((r) => [
    r.role,
    r.model,
    String(r.calls),
    String(r.promptTokens),
    String(r.completionTokens),
    r.latencyP50Ms === null ? '-' : r.latencyP50Ms.toFixed(0),
    r.latencyP95Ms === null ? '-' : r.latencyP95Ms.toFixed(0),
    String(r.errors),
  ]);
  const header = ['role', 'model', 'calls', 'prompt tok', 'compl tok', 'p50 ms', 'p95 ms', 'errors'];
  for (const line of formatTable([header, ...roles])) io.stdout(`${line}\n`);
  const steps = Object.entries(report.bySteps).map(([step, s]) => [
    step,
    String(s.calls),
    String(s.promptTokens),
    s.reportedCalls > 0 ? String(s.serverCachedTokens) : '-',
    s.reportedCalls > 0 && s.reportedPromptTokens > 0
      ? `${((100 * s.serverCachedTokens) / s.reportedPromptTokens).toFixed(1)}%`
      : '-',
  ]);
  const stepHeader = ['step', 'calls', 'prompt tok', 'cached by server', 'cached share'];
  for (const line of formatTable([stepHeader, ...steps])) io.stdout(`${line}\n`);
  // A fleet: how each server of a role was used (a single server per role says nothing more than the above).
  if (new Set(report.byReplica.map((r) => r.role)).size < report.byReplica.length) {
    const replicas = report.byReplica.map((r) => [
      r.role,
      r.baseUrl,
      String(r.attempts),
      String(r.answered),
      String(r.errors),
    ]);
    const head = ['role', 'replica', 'attempts', 'answered', 'errors'];
    for (const line of formatTable([head, ...replicas])) io.stdout(`${line}\n`);
  }
  await mkdir(flags.out, { recursive: true });
  const json = path.join(flags.out, 'bench-pipeline.json');
  await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  io.stdout(`wrote ${json} (run output in ${output})\n`);
  return report;
}
