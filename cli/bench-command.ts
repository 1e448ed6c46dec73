import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { endpointSchema, resolveEndpoint } from '../llm/endpoint.js';
import { ConfigError } from '../pipeline/errors.js';
import { concurrencyLevels, loadTest, type LevelResult } from '../llm/load-test.js';
import { loadTestHtml } from '../llm/load-test-report.js';
import { positiveIntArg } from './args.js';
import { formatTable } from './format.js';

export interface BenchIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

interface BenchFlags {
  url: string;
  model: string;
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
      'Measure an OpenAI-compatible endpoint: throughput and latency by concurrency, and the knee.',
    )
    .requiredOption('--url <baseUrl>', 'base URL up to /v1, e.g. http://127.0.0.1:8000/v1')
    .requiredOption('--model <name>', 'model name to send')
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
      const header = [
        'concurrency',
        'req/s',
        'prompt tok/s',
        'compl tok/s',
        'p50 ms',
        'p95 ms',
        'p99 ms',
        'errors',
      ];
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
      setExit(report.levels.every((l) => l.errors === l.requests) ? 1 : 0);
    });
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
