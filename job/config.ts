import { z } from 'zod';
import { PriceTableSchema } from '../llm/accounting.js';
import { embeddingsEndpointSchema } from '../llm/embeddings.js';
import { refineOptionsSchema, ruleMessage } from '../operators/air/refine-options.js';
import { endpointSchema } from '../llm/endpoint.js';
import { ConfigError } from '../pipeline/errors.js';

/**
 * The one schema of a run's configuration. Defaults live here and nowhere else; the TypeScript type is
 * inferred from it. Unknown keys are errors (a typo must never be silently ignored).
 */
const positiveInt = z.number().int().positive();

export const sourceConfigSchema = z.strictObject({
  /** Column holding the document text. */
  textColumn: z.string().min(1).default('text'),
  /** Column holding the document id; when unset, `id` if present, else `<shard>#<row>`. */
  idColumn: z.string().min(1).optional(),
  /** Scalar columns to carry into the output; `a.b` reads field b of struct a; same-named specs are alternatives. */
  metaColumns: z.array(z.string().min(1)).default(['url', 'metadata.url', 'language']),
  /** Read BINARY columns without a UTF-8 annotation as text. */
  binaryAsString: z.boolean().default(false),
  /** Longer documents are dropped as read:too_large, never loaded (a decompression bomb stays in DuckDB's limit). */
  maxDocumentMB: z.number().positive().default(8),
  /** A null, blank or oversized text: `skip` drops it with a ledger reason, `stop` ends the run naming the row. */
  badRecords: z.enum(['skip', 'stop']).default('skip'),
  /** Read at most this many documents in all (shards in order): for trial runs and `air bench --pipeline`. */
  limit: positiveInt.optional(),
});

export const filterConfigSchema = z.strictObject({
  minWords: z.number().int().nonnegative().default(50),
  maxWords: positiveInt.default(2048),
});

const fraction = z.number().gt(0).max(1);

const switchable = <T extends z.ZodRawShape>(shape: T) =>
  z.strictObject({ enabled: z.boolean().default(true), ...shape });

const qualitySchema = z.strictObject({
  /** Drop a document with more than `max` of its characters neither letters, digits nor whitespace. */
  symbolRatio: switchable({ max: fraction.default(0.5) }).default({ enabled: true, max: 0.5 }),
  /** Drop a document with more than `maxFraction` of its non-empty lines repeating an earlier line. */
  duplicateLines: switchable({ maxFraction: fraction.default(0.1) }).default({
    enabled: true,
    maxFraction: 0.1,
  }),
  /** Drop a document with a character repeated more than `maxRun` times in a row. */
  charRun: switchable({
    maxRun: positiveInt.default(10),
    includeWhitespace: z.boolean().default(true),
  }).default({
    enabled: true,
    maxRun: 10,
    includeWhitespace: true,
  }),
});

const preSampleSchema = z.strictObject({
  /** off; rate: keep each document with probability `rate` (streaming); reservoir: `perShard` per shard (blocking). */
  mode: z.enum(['off', 'rate', 'reservoir']).default('off'),
  rate: fraction.default(1),
  perShard: positiveInt.default(100_000),
  seed: z.number().int().default(0),
});

const diversitySchema = z.strictObject({
  /** A blocking stage (nothing leaves it before the input ends): off by default, so runs stream. */
  enabled: z.boolean().default(false),
  /** Documents kept by greedy farthest-point selection (reference: 60,000 of 300,000). */
  keep: positiveInt.default(60_000),
  seed: z.number().int().default(0),
  /** Hashing-vectorizer dimensions (the default vectors). */
  dimensions: positiveInt.default(256),
  bigrams: z.boolean().default(false),
  /** Vectors from an OpenAI-compatible /v1/embeddings endpoint instead of the hashing vectorizer. */
  embeddings: embeddingsEndpointSchema.optional(),
});

/** The AIR method's stage 0 after the length window: quality filters, a seeded pre-sample, diversity selection. */
export const sampleConfigSchema = z.strictObject({
  quality: qualitySchema.default(qualitySchema.parse({})),
  preSample: preSampleSchema.default(preSampleSchema.parse({})),
  diversity: diversitySchema.default(diversitySchema.parse({})),
});

const nearDedupeSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** Words per shingle. */
    shingle: positiveInt.max(64).default(5),
    /** MinHash permutations (signature length). */
    numPerm: positiveInt.max(1024).default(128),
    /** LSH bands (must divide numPerm); 16 bands of 8 catch ~95% of pairs at Jaccard 0.8, ~6% at 0.5. */
    bands: positiveInt.default(16),
    /** Estimated Jaccard similarity at which a document is a near duplicate of an earlier one. */
    threshold: fraction.default(0.8),
  })
  .refine((n) => n.numPerm % n.bands === 0, { message: 'bands must divide numPerm', path: ['bands'] });

const instructionDedupeSchema = z.strictObject({
  enabled: z.boolean().default(true),
  threshold: fraction.default(0.8),
});

/** Across all shards of the run; every removed record names the one it duplicates in duplicates.jsonl. */
export const dedupeConfigSchema = z.strictObject({
  /** Drop later documents whose id repeats an earlier one's (ids key rows, seeds and notes). */
  ids: z.boolean().default(true),
  /** Drop documents whose normalised text equals an earlier one's. */
  exact: z.boolean().default(true),
  /** MinHash + LSH near-duplicate documents (signatures in worker threads). */
  near: nearDedupeSchema.default(nearDedupeSchema.parse({})),
  /** Near-duplicate final instructions (method `air`). */
  instructions: instructionDedupeSchema.default(instructionDedupeSchema.parse({})),
});

export const writerConfigSchema = z.strictObject({
  /** A part file is closed at this many rows... */
  partRows: positiveInt.default(100_000),
  /** ...or this many MB of text, whichever comes first. */
  partMB: z.number().positive().default(256),
  /** A row group is written at this many rows or MB of text (the writer holds about two in memory). */
  rowGroupRows: positiveInt.default(50_000),
  rowGroupMB: z.number().positive().default(16),
  /** ...or once it has been open this many seconds: a crash redoes at most this much written work. */
  partSeconds: z.number().positive().default(120),
  compression: z.enum(['zstd', 'snappy', 'gzip', 'brotli', 'uncompressed']).default('zstd'),
});

export const engineConfigSchema = z.strictObject({
  /** Records each buffer between two stages holds before its producer waits. */
  queueCapacity: positiveInt.default(256),
  /** After Ctrl-C or SIGTERM, how long in-flight records may take to finish. */
  graceSeconds: z.number().nonnegative().default(30),
  /** DuckDB threads for decoding input Parquet (the writer has its own thread). */
  duckdbThreads: positiveInt.default(2),
  /** DuckDB's buffer memory limit. */
  duckdbMemoryMB: positiveInt.default(512),
  /** Worker threads for CPU work (MinHash signatures, vectors); default: one per core. */
  workerThreads: positiveInt.optional(),
  /** Stop the run once more than this fraction of settled input rows failed (1: never)... */
  maxFailureRate: z.number().gt(0).max(1).default(0.5),
  /** ...counted once this many rows have settled. */
  minRowsForFailureRate: positiveInt.default(200),
  /** Seconds between checkpoints of dropped and failed rows (written rows are checkpointed with their part). */
  checkpointSeconds: z.number().positive().default(10),
});

/**
 * S3-compatible object storage, for `s3://` inputs and outputs. Credentials are never set here: the AWS SDK's
 * standard chain reads them (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws files, roles).
 */
export const storageConfigSchema = z.strictObject({
  /** An S3-compatible server (MinIO, Ceph, R2, GCS interoperability); unset: AWS S3. */
  endpoint: z.url().optional(),
  /** Unset: AWS_REGION, the profile's region, else us-east-1. */
  region: z.string().min(1).optional(),
  /** Buckets as <endpoint>/<bucket> rather than <bucket>.<endpoint>; unset: on with an endpoint. */
  pathStyle: z.boolean().optional(),
  /** Local working folder of an s3:// output; unset: <tmp>/air-work/<hash of the output URL>. */
  workDir: z.string().min(1).optional(),
  /** Attempts per request on throttling (503 SlowDown), 5xx and connection failures, with backoff. */
  maxAttempts: positiveInt.default(10),
  /** Uploads (and parts of one multipart upload) in flight at once. */
  uploadConcurrency: positiveInt.default(4),
  /** Files above this many MB are uploaded in parts of this size (S3 needs at least 5). */
  multipartMB: z.number().min(5).default(64),
  /** Seconds between uploads of the LLM cache snapshot of an s3:// output (also sent at the end). */
  cacheSnapshotSeconds: z.number().positive().default(60),
});
export type StorageConfig = z.output<typeof storageConfigSchema>;

const faultRate = z.number().min(0).max(1).optional();

/** The in-process simulator of `llm.mode: sim`: a fast server by default, so demos and tests finish quickly. */
export const simulatorConfigSchema = z.strictObject({
  seed: z.number().int().default(0),
  maxConcurrentSequences: positiveInt.default(64),
  prefillTokensPerS: z.number().positive().default(50_000),
  /** 400 tokens/s per sequence is a fast server; 30-60 models a 70B model on one node. */
  decodeTokensPerSPerSequence: z.number().positive().default(400),
  /** KV cache for vLLM-style prefix caching, in tokens (about one 80 GB GPU serving an 8B model); 0: off. */
  kvCacheTokens: z.number().int().nonnegative().default(400_000),
  meanReplyTokens: z.number().positive().default(200),
  /** Reply length distribution: lognormal (shape replyLengthSigma), pareto (tail replyLengthAlpha) or fixed. */
  replyLength: z.enum(['lognormal', 'pareto', 'fixed']).default('lognormal'),
  replyLengthSigma: z.number().positive().default(1),
  replyLengthAlpha: z.number().gt(1).default(2.5),
  contextTokens: positiveInt.default(32_768),
  /** Fault injection, each a fraction of chat requests (see `air sim --help`). */
  faults: z
    .strictObject({
      rate429: faultRate,
      rate500: faultRate,
      rate503: faultRate,
      rateReset: faultRate,
      rateStall: faultRate,
      stallMs: z.number().nonnegative().optional(),
      rateMalformed: faultRate,
      rateTruncated: faultRate,
    })
    .default({}),
});

export const llmConfigSchema = z.strictObject({
  /**
   * `endpoints`: the roles below (vLLM, SGLang, llama.cpp, OpenAI, any OpenAI-compatible server, or local:<gguf>);
   * `sim`: an in-process simulator serves every role (seeded fake replies, for demos and tests).
   */
  mode: z.enum(['endpoints', 'sim']).default('endpoints'),
  /** The large model: writes, judges, merges and answers. */
  guidance: endpointSchema.optional(),
  /** The small model being taught: only answers. */
  student: endpointSchema.optional(),
  /** USD per million tokens by model name; a model missing here is reported as unpriced, never as $0. */
  prices: PriceTableSchema.default({}),
  /** Keep answered calls in <output>/llm-cache.sqlite so reruns and resumes repeat none of them. */
  cache: z.boolean().default(true),
  /**
   * air processes that share these servers at once (a distributed run's ranks; `air run --plan` sets the plan's
   * world size): above its equal share of a queueing server, a process is cut to it (llm/saturation.ts).
   */
  processes: positiveInt.default(1),
  /** Where the default local model is downloaded to and found again (node-llama-cpp's default when unset). */
  modelsDir: z.string().min(1).optional(),
  simulator: simulatorConfigSchema.default(simulatorConfigSchema.parse({})),
});

export type LlmConfig = z.output<typeof llmConfigSchema>;

/** The AIR method's settings; every default is the method's (../shared/air-method.md) unless noted. */
export const airConfigSchema = z.strictObject({
  /** Mixed with each document id, step and iteration into every call's sampling seed. */
  seed: z.number().int().default(0),
  /**
   * Prompt template set under operators/air/prompts/: v2 lays prompts out for the servers' prefix cache (what a
   * document's calls share first, what changes per round last); v1 is the earlier layout.
   */
  promptSet: z.string().min(1).default('v2'),
  /** Documents in flight in each LLM stage (refine gets twice this: its calls are sequential per document). */
  documentsInFlight: positiveInt.default(64),
  generate: z
    .strictObject({
      minScore: z.number().int().min(0).max(5).default(4),
      minWords: z.number().int().nonnegative().default(3),
      maxWords: positiveInt.default(50),
    })
    .default({ minScore: 4, minWords: 3, maxWords: 50 }),
  // The operator's own schema: one place says what refine takes, what it does unless told, and which
  // settings cannot go together.
  refine: refineOptionsSchema.prefault({}),
  /** `deepest`: one row per document; `all`: one row per depth reached. */
  depths: z.enum(['deepest', 'all']).default('deepest'),
  filter: z
    .strictObject({
      minInstructionWords: z.number().int().nonnegative().default(3),
      maxInstructionWords: positiveInt.default(150),
      /** The output must have more words than this. */
      minOutputWordsExclusive: z.number().int().nonnegative().default(3),
    })
    .default({ minInstructionWords: 3, maxInstructionWords: 150, minOutputWordsExclusive: 3 }),
  /** LLM-judged complexity and quality (1-10) per row; model-free metrics are always computed. */
  llmScores: z.boolean().default(true),
  /** Completion token budgets per step, over the built-in ones. */
  /** Keys are step names (the prompt set's template files); an unknown one is refused when the run is built. */
  maxTokens: z.record(z.string().min(1), positiveInt).default({}),
});

export type AirConfig = z.output<typeof airConfigSchema>;

export const runConfigSchema = z.strictObject({
  /** Parquet files, folders (every *.parquet below) or globs. */
  input: z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
    .transform((v) => (Array.isArray(v) ? v : [v])),
  /** Output folder for part files and the run report, or an `s3://bucket/prefix/` (see storage.workDir). */
  output: z.string().min(1),
  /** `air`: the AIR method (needs LLMs, `--llm sim` for the simulator); `documents`: filtered documents only. */
  method: z.enum(['air', 'documents']).default('air'),
  source: sourceConfigSchema.default(sourceConfigSchema.parse({})),
  filter: filterConfigSchema.default(filterConfigSchema.parse({})),
  sample: sampleConfigSchema.default(sampleConfigSchema.parse({})),
  dedupe: dedupeConfigSchema.default(dedupeConfigSchema.parse({})),
  writer: writerConfigSchema.default(writerConfigSchema.parse({})),
  engine: engineConfigSchema.default(engineConfigSchema.parse({})),
  storage: storageConfigSchema.default(storageConfigSchema.parse({})),
  llm: llmConfigSchema.default(llmConfigSchema.parse({})),
  air: airConfigSchema.default(airConfigSchema.parse({})),
  /** Progress display: a live table on a terminal, log lines otherwise; `off` for none. */
  progress: z.enum(['auto', 'tty', 'log', 'off']).default('auto'),
  /** Seconds between progress log lines when not on a terminal. */
  progressIntervalSeconds: z.number().positive().default(5),
});

export type RunConfigInput = z.input<typeof runConfigSchema>;
export type RunConfig = z.output<typeof runConfigSchema>;

/** Validates a config object; the error names every bad key, prefixed with where the config came from. */
export function parseRunConfig(raw: unknown, origin = 'config'): RunConfig {
  const result = runConfigSchema.safeParse(raw);
  if (result.success) {
    if (result.data.filter.minWords > result.data.filter.maxWords) {
      throw new ConfigError(`${origin}: filter.minWords is greater than filter.maxWords`);
    }
    return result.data;
  }
  const lines = result.error.issues.map((issue) => {
    const at = issue.path.map(String).join('.');
    const rule = ruleMessage(issue, (key) => [...issue.path.slice(0, -1), key].join('.'));
    if (rule !== undefined) return rule;
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => (at ? `${at}.${k}` : k));
      return `unknown key ${keys.map((k) => `"${k}"`).join(', ')}`;
    }
    if (issue.code === 'invalid_type' && issue.message.endsWith('received undefined'))
      return `"${at}" is required`;
    return `"${at}": ${issue.message}`;
  });
  throw new ConfigError(`${origin}: ${lines.join('; ')}`);
}
