/**
 * Which settings of a run's config decide what it writes. One classification serves the config fingerprint
 * (job/fingerprint.ts: a resume with another value of a deciding setting is refused) and the dataset card
 * (report/card: it lists the deciding settings and leaves out addresses, paths and concurrency).
 */

const transport = 'how calls reach the server (address, key, limits, timeouts, retries); not what it answers';

/** The settings of an OpenAI-compatible endpoint that decide nothing but how its calls travel. */
function endpointTransport(at: string, keys: readonly string[]): Record<string, string> {
  return Object.fromEntries(keys.map((k) => [`${at}.${k}`, transport]));
}
const CHAT_TRANSPORT = [
  'baseUrl',
  'endpoints',
  'apiKeyEnv',
  'maxConcurrency',
  'initialConcurrency',
  'rpm',
  'tpm',
  'timeoutSeconds',
  'maxAttempts',
  'circuitBreakerSeconds',
  'saturation',
  'metricsIntervalMs',
  'local.threads',
  'local.parallel',
  'local.modelsDir',
];

/**
 * The settings that do not decide what a run writes, each with why. Every other key of the config does: it is
 * in the result settings (and so in `config_fingerprint`), and a resume with another value is refused. A key
 * names a setting or a whole section. New settings decide results until listed here, and test/fingerprint.test.ts
 * fails for a key of the schema that is in neither list, so that each is classified on purpose.
 */
export const NON_RESULT_SETTINGS: Readonly<Record<string, string>> = {
  output: 'where the rows are written, not which',
  writer: 'how rows are grouped into part files and compressed; the rows are the same',
  engine: 'buffers, threads, memory and failure limits: throughput only (the tests compare rows across them)',
  storage:
    'where object storage is and how requests to it travel (endpoint, retries, uploads); not the bytes',
  progress: 'display only',
  progressIntervalSeconds: 'display only',
  'air.documentsInFlight': 'concurrency; each document moves through its own seeded calls',
  'llm.cache': 'whether answered calls are kept; a seeded call gets the same reply either way',
  'llm.prices': 'cost accounting only',
  'llm.modelsDir': 'where model files are kept',
  'llm.processes': 'how many processes share the servers: concurrency only',
  'llm.simulator.maxConcurrentSequences': "the simulator's speed; its replies do not depend on it",
  'llm.simulator.prefillTokensPerS': "the simulator's speed; its replies do not depend on it",
  'llm.simulator.decodeTokensPerSPerSequence': "the simulator's speed; its replies do not depend on it",
  'llm.simulator.kvCacheTokens': "the simulator's speed; its replies do not depend on it",
  'llm.simulator.faults':
    'injected server faults, as a flaky real server would give (not a setting of a real run either); a failed row is retried by air retry-failed',
  ...endpointTransport('llm.guidance', CHAT_TRANSPORT),
  ...endpointTransport('llm.student', CHAT_TRANSPORT),
  ...endpointTransport('sample.diversity.embeddings', [
    'baseUrl',
    'apiKeyEnv',
    'batchSize',
    'maxConcurrency',
    'timeoutSeconds',
    'maxAttempts',
  ]),
  'sample.diversity.embeddings.encodingFormat': 'the same float32 vectors in another encoding',
};

/**
 * The config sections and settings that decide what a run writes, each with why. The most specific entry of the
 * two lists classifies a key (`sample` decides results, `sample.diversity.embeddings.baseUrl` does not).
 */
export const RESULT_SETTINGS: Readonly<Record<string, string>> = {
  input: 'which shards are read',
  method: 'which stages run',
  source: 'which columns and rows are read, and how bad rows are treated',
  filter: 'the length window',
  sample: 'quality filters, pre-sample and diversity selection decide which documents go on',
  'sample.diversity.embeddings.model': 'the vectors diversity selection decides by',
  'sample.diversity.embeddings.dimensions': 'the vectors diversity selection decides by',
  'sample.diversity.embeddings.maxInputChars': 'the text each vector is computed from',
  dedupe: 'which documents and instructions are kept',
  air: "the method's prompts, seeds, rounds, rules and filters",
  'llm.mode': 'a simulator or real models answer',
  'llm.guidance': 'model, sampling and context decide replies',
  'llm.student': 'model, sampling and context decide replies',
  'llm.simulator': "the simulator's seed, reply lengths and context decide its replies",
};

/** Whether `key` is `section` or lies inside it. */
function within(key: string, section: string): boolean {
  return key === section || key.startsWith(`${section}.`);
}

export interface SettingClass {
  readonly decidesResults: boolean;
  /** The entry of RESULT_SETTINGS or NON_RESULT_SETTINGS that classifies the key: the most specific one. */
  readonly entry: string;
  readonly why: string;
}

/** How a setting is classified; undefined for a key neither list covers (it then decides results). */
export function classifySetting(key: string): SettingClass | undefined {
  let best: SettingClass | undefined;
  for (const [lists, decidesResults] of [
    [RESULT_SETTINGS, true],
    [NON_RESULT_SETTINGS, false],
  ] as const) {
    for (const [entry, why] of Object.entries(lists)) {
      if (within(key, entry) && (best === undefined || entry.length > best.entry.length)) {
        best = { decidesResults, entry, why };
      }
    }
  }
  return best;
}

/**
 * The settings that decide what a run writes, flattened to `a.b.c` keys (see NON_RESULT_SETTINGS): what the
 * config fingerprint hashes and what the dataset card lists.
 */
export function resultSettings(config: object): Record<string, unknown> {
  const flat: Record<string, unknown> = {};
  flatten(config, '', flat);
  for (const key of Object.keys(flat)) if (classifySetting(key)?.decidesResults === false) delete flat[key];
  return flat;
}

function flatten(value: unknown, prefix: string, into: Record<string, unknown>): void {
  if (value === undefined) return;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const key of Object.keys(value).sort()) {
      flatten((value as Record<string, unknown>)[key], prefix === '' ? key : `${prefix}.${key}`, into);
    }
    return;
  }
  into[prefix] = value;
}
