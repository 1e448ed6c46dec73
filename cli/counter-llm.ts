import { openResponseCache } from '../llm/cache.js';
import { HttpLlmClient } from '../llm/client.js';
import { endpointSchema, resolveEndpoint } from '../llm/endpoint.js';
import { startSimulator, type Simulator } from '../llm/simulator/index.js';
import { LlmConstraintCounter } from '../operators/llm-constraint-counter.js';
import { ConfigError } from '../pipeline/errors.js';

/** The flags that switch on the optional LLM constraint counter (`air score`, bench/tagger.ts). */
export interface CounterFlags {
  counterUrl?: string;
  counterModel?: string;
  apiKeyEnv?: string;
  concurrency?: number;
  llm?: string;
  cache?: string;
  seed?: number;
}

export interface OpenedCounter {
  readonly counter: LlmConstraintCounter;
  close(): Promise<void>;
}

const ROLE = 'counter';
/** Defaults of `--concurrency` and `--seed`, for the command's help and for callers that pass neither. */
export const COUNTER_DEFAULTS = { concurrency: 16, seed: 0 } as const;
const SIM_MODEL = 'air-sim-counter';

/**
 * Builds the LLM counter the flags ask for, or undefined without them (the model-free count alone). `--llm sim`
 * starts the built-in simulator on 127.0.0.1, whose lists are seeded noise: it shows the plumbing, not a figure.
 * There is no output folder, so replies are cached only in memory unless `--cache <file>` names a SQLite file.
 */
export async function openLlmCounter(
  flags: CounterFlags,
  env: NodeJS.ProcessEnv = process.env,
): Promise<OpenedCounter | undefined> {
  const sim = flags.llm !== undefined;
  if (sim && flags.llm !== 'sim')
    throw new ConfigError(`--llm: only "sim" is accepted here (got "${flags.llm}")`);
  if (!sim && flags.counterUrl === undefined && flags.counterModel === undefined) return undefined;
  if (sim && (flags.counterUrl !== undefined || flags.counterModel !== undefined)) {
    throw new ConfigError('--llm sim and --counter-url/--counter-model exclude each other');
  }
  if (!sim && (flags.counterUrl === undefined || flags.counterModel === undefined)) {
    throw new ConfigError('the LLM constraint counter needs both --counter-url and --counter-model');
  }
  const concurrency = flags.concurrency ?? COUNTER_DEFAULTS.concurrency;
  const seed = flags.seed ?? COUNTER_DEFAULTS.seed;
  let simulator: Simulator | undefined;
  if (sim) simulator = await startSimulator({ models: [SIM_MODEL], zeroLatency: true, seed });
  const parsed = endpointSchema.safeParse({
    baseUrl: simulator?.url ?? flags.counterUrl,
    model: simulator === undefined ? flags.counterModel : SIM_MODEL,
    apiKeyEnv: simulator === undefined ? flags.apiKeyEnv : undefined, // the simulator asks for no key
    maxConcurrency: concurrency,
    initialConcurrency: Math.min(8, concurrency),
  });
  if (!parsed.success) {
    await simulator?.close();
    throw new ConfigError(
      `--counter-url/--counter-model: ${parsed.error.issues.map((i) => i.message).join('; ')}`,
    );
  }
  const endpoint = resolveEndpoint(ROLE, parsed.data, env, '--api-key-env');
  const cache = openResponseCache(flags.cache);
  const client = new HttpLlmClient({ endpoints: [endpoint], cache });
  const counter = new LlmConstraintCounter(client, {
    role: ROLE,
    model: endpoint.model,
    concurrency,
    seed,
    maxTokens: 1024,
  });
  return {
    counter,
    async close() {
      await client.close();
      cache.close();
      await simulator?.close();
    },
  };
}
