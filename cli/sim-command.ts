import type { Command } from 'commander';
import { Option } from 'commander';
import {
  describeFaults,
  resolveCapacity,
  resolveReplies,
  serverOptionsSchema,
  startSimulator,
  throughputCeiling,
  type Simulator,
  type SimulatorOptions,
  type SimulatorStats,
} from '../llm/simulator/index.js';
import { AirError, errorMessage } from '../pipeline/errors.js';
import { countArg, integerArg, portArg, positiveArg, positiveIntArg, rateArg } from './args.js';
import { formatCount, formatRate } from '../report/format.js';

/** Where `air sim` writes, and an extra way to stop it besides SIGINT/SIGTERM (for tests). */
export interface SimCommandIO {
  readonly stdout?: (text: string) => void;
  readonly signal?: AbortSignal;
}

interface SimFlags {
  port: number;
  host: string;
  model?: string[];
  maxConcurrency?: number;
  prefillTps?: number;
  kvCacheTokens?: number;
  decodeTps?: number;
  meanReplyTokens?: number;
  maxQueue?: number;
  contextTokens?: number;
  seed?: number;
  replyKey?: 'prompt' | 'content';
  zeroLatency?: boolean;
  apiKeyEnv?: string;
  rate429?: number;
  retryAfter?: number;
  rate500?: number;
  rate503?: number;
  rateReset?: number;
  rateStall?: number;
  stallMs?: number;
  rateMalformed?: number;
  rateTruncated?: number;
}

/** Adds `air sim`: an OpenAI-compatible simulated LLM server on 127.0.0.1, until SIGINT/SIGTERM. */
export function registerSimCommand(program: Command, io: SimCommandIO = {}): void {
  const stdout = io.stdout ?? ((text: string) => void process.stdout.write(text));
  program
    .command('sim')
    .description('Run the LLM simulator: an OpenAI-compatible server with seeded replies (not a real model).')
    .option('--port <n>', 'port on 127.0.0.1 (0 picks a free one)', portArg, 8000)
    .addOption(
      new Option('--host <address>', 'listen address; the simulator only listens on loopback')
        .choices(['127.0.0.1'])
        .default('127.0.0.1'),
    )
    .option('--model <name...>', 'model name(s) served (default: air-sim)')
    .option('--max-concurrency <n>', 'sequences served at once (default: 64)', positiveIntArg)
    .option('--prefill-tps <n>', 'prompt tokens per second per sequence (default: 20000)', positiveArg)
    .option(
      '--kv-cache-tokens <n>',
      'KV cache size in tokens for prefix caching, vLLM-style (default: 0, off; ~400000 for one 80 GB GPU)',
      countArg,
    )
    .option('--decode-tps <n>', 'completion tokens per second per sequence (default: 40)', positiveArg)
    .option(
      '--mean-reply-tokens <n>',
      'mean length of text replies, heavy-tailed (default: 200)',
      positiveArg,
    )
    .option(
      '--max-queue <n>',
      'requests that may wait for a slot; more get 503 (default: 1024; 100000 queues without refusing, as vLLM)',
      countArg,
    )
    .option('--context-tokens <n>', 'context length: prompt + max_tokens (default: 8192)', positiveIntArg)
    .option('--seed <n>', 'seed of replies, embeddings and faults (default: 0)', integerArg)
    .addOption(
      new Option(
        '--reply-key <key>',
        'what seeds a reply: the whole prompt, or only its fenced per-request texts, so prompt layouts carrying ' +
          'the same texts get the same replies (default: prompt)',
      ).choices(['prompt', 'content']),
    )
    .option('--zero-latency', 'answer at once (every rate infinite), to measure client overhead')
    .option('--api-key-env <VAR>', 'require Authorization: Bearer <key>, the key read from this variable')
    .option('--rate-429 <p>', 'fraction of completions answered 429 (0..1)', rateArg)
    .option('--retry-after <s>', 'Retry-After seconds sent with 429 (default: 1)', countArg)
    .option('--rate-500 <p>', 'fraction answered 500', rateArg)
    .option('--rate-503 <p>', 'fraction answered 503', rateArg)
    .option('--rate-reset <p>', 'fraction whose connection is destroyed mid-answer', rateArg)
    .option('--rate-stall <p>', 'fraction that get no answer (see --stall-ms)', rateArg)
    .option('--stall-ms <ms>', 'a stall answers after this long (default: never)', countArg)
    .option('--rate-malformed <p>', 'fraction answered 200 with a body that is not JSON', rateArg)
    .option('--rate-truncated <p>', 'fraction cut to half their tokens, finish_reason "length"', rateArg)
    .addHelpText(
      'after',
      `
Service time of a request = prompt_tokens / prefill-tps + completion_tokens / decode-tps (with
--kv-cache-tokens, the prompt tokens found in the prefix cache are not prefilled); at most
max-concurrency requests are served at once, the rest wait in a FIFO queue. Stops on Ctrl-C or SIGTERM
and prints its counters.

Example:
  air sim --port 8000 --model guidance student --rate-429 0.05`,
    )
    .action((flags: SimFlags, command: Command) => serve(flags, command, io, stdout));
}

/** Starts the simulator, prints where it listens, serves until stopped, then prints its counters. */
async function serve(
  flags: SimFlags,
  command: Command,
  io: SimCommandIO,
  stdout: (text: string) => void,
): Promise<void> {
  const options = simulatorOptions(flags, command);
  let sim: Simulator;
  try {
    sim = await startSimulator(options);
  } catch (error) {
    const inUse = (error as NodeJS.ErrnoException).code === 'EADDRINUSE';
    const message = inUse
      ? `port ${flags.port} is in use on 127.0.0.1: pass --port <n> (0 picks a free one)`
      : errorMessage(error);
    if (inUse || error instanceof AirError) command.error(`error: ${message}`, { exitCode: 2 });
    throw error;
  }
  const started = performance.now();
  stdout(`${startLine(sim, options)}\n`);
  await stopRequested(io.signal);
  const stats = sim.stats();
  await sim.close();
  for (const line of statsLines(stats, performance.now() - started, options)) stdout(`${line}\n`);
}

function simulatorOptions(flags: SimFlags, command: Command): SimulatorOptions {
  let apiKey: string | undefined;
  if (flags.apiKeyEnv !== undefined) {
    apiKey = process.env[flags.apiKeyEnv];
    if (apiKey === undefined || apiKey === '') {
      command.error(`error: --api-key-env ${flags.apiKeyEnv}: that environment variable is not set`, {
        exitCode: 2,
      });
    }
  }
  return {
    port: flags.port,
    models: flags.model,
    apiKey,
    contextTokens: flags.contextTokens,
    maxConcurrentSequences: flags.maxConcurrency,
    prefillTokensPerS: flags.prefillTps,
    kvCacheTokens: flags.kvCacheTokens,
    decodeTokensPerSPerSequence: flags.decodeTps,
    maxQueue: flags.maxQueue,
    zeroLatency: flags.zeroLatency,
    meanReplyTokens: flags.meanReplyTokens,
    seed: flags.seed,
    replyKey: flags.replyKey,
    rate429: flags.rate429,
    retryAfterS: flags.retryAfter,
    rate500: flags.rate500,
    rate503: flags.rate503,
    rateReset: flags.rateReset,
    rateStall: flags.rateStall,
    stallMs: flags.stallMs,
    rateMalformed: flags.rateMalformed,
    rateTruncated: flags.rateTruncated,
  };
}

/** One line: that this is a simulator, where, which models, the throughput ceiling and any faults. */
function startLine(sim: Simulator, options: SimulatorOptions): string {
  const capacity = resolveCapacity(options);
  const { meanReplyTokens } = resolveReplies(options);
  const models = serverOptionsSchema.parse(options).models.join(', ');
  let ceiling: string;
  if (capacity.zeroLatency) {
    ceiling = 'zero-latency mode: no throughput ceiling';
  } else {
    const c = throughputCeiling(capacity, { meanPromptTokens: 0, meanReplyTokens });
    const prefillS = 1000 / capacity.prefillTokensPerS;
    ceiling =
      `ceiling ${formatRate(c.requestsPerS)} req/s = ${formatRate(c.completionTokensPerS)} completion tok/s ` +
      `(${capacity.maxConcurrentSequences} sequences × ${capacity.decodeTokensPerSPerSequence} tok/s, ` +
      `${meanReplyTokens}-token mean replies; each 1k prompt tokens adds ${+prefillS.toFixed(3)} s per request)`;
  }
  const faults = describeFaults(options);
  return (
    `air sim: LLM SIMULATOR (seeded fake replies, not a real model) at ${sim.url} · models: ${models} · ${ceiling}` +
    (faults === '' ? '' : ` · faults: ${faults}`)
  );
}

function statsLines(stats: SimulatorStats, elapsedMs: number, options: SimulatorOptions): string[] {
  const statuses = Object.entries(stats.byStatus)
    .map(([status, n]) => `${status}×${formatCount(n)}`)
    .join(', ');
  const faults = Object.entries(stats.faults)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${kind.replace('status', '')}×${formatCount(n)}`)
    .join(', ');
  const slots = resolveCapacity(options).maxConcurrentSequences;
  const occupancy = elapsedMs > 0 ? stats.sequenceMs / elapsedMs : 0;
  return [
    `air sim: stopped after ${(elapsedMs / 1000).toFixed(1)} s · ${formatCount(stats.requests)} requests ` +
      `(${statuses === '' ? 'none answered' : statuses}) · ${formatCount(stats.dropped)} dropped`,
    `air sim: ${formatCount(stats.completions)} completions · ${formatCount(stats.promptTokens)} prompt + ` +
      `${formatCount(stats.completionTokens)} completion tokens · ${formatCount(stats.embeddingInputs)} embeddings`,
    `air sim: max ${stats.maxConcurrent} of ${slots} sequences in service · max queue ${stats.maxQueue} · ` +
      `${formatCount(stats.queueFull)} refused (queue full) · busy ${(stats.busyMs / 1000).toFixed(1)} s · ` +
      `mean occupancy ${occupancy.toFixed(1)}`,
    `air sim: faults injected: ${faults === '' ? 'none' : faults}`,
    `air sim: GPU work: ${formatCount(stats.prefixCache.prefillTokens)} prompt tokens prefilled ` +
      `(${formatCount(stats.prefixCache.hits)} of ${formatCount(stats.prefixCache.queries)} looked up found in the ` +
      `prefix cache) · ${formatCount(stats.prefixCache.decodeTokens)} tokens decoded`,
  ];
}

/** Resolves on the first SIGINT or SIGTERM, or when `signal` aborts. */
function stopRequested(signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      signal?.removeEventListener('abort', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    if (signal?.aborted === true) stop();
    else signal?.addEventListener('abort', stop, { once: true });
  });
}
