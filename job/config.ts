import { z } from 'zod';
import { PriceTableSchema } from '../llm/accounting.js';
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
});

export const filterConfigSchema = z.strictObject({
  minWords: z.number().int().nonnegative().default(50),
  maxWords: positiveInt.default(2048),
});

export const writerConfigSchema = z.strictObject({
  /** A part file is closed at this many rows... */
  partRows: positiveInt.default(100_000),
  /** ...or this many MB of text, whichever comes first. */
  partMB: z.number().positive().default(256),
  /** A row group is written at this many rows or MB of text (the writer holds about two in memory). */
  rowGroupRows: positiveInt.default(50_000),
  rowGroupMB: z.number().positive().default(16),
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
  /** Where the default local model is downloaded to and found again (node-llama-cpp's default when unset). */
  modelsDir: z.string().min(1).optional(),
});

export type LlmConfig = z.output<typeof llmConfigSchema>;

export const runConfigSchema = z.strictObject({
  /** Parquet files, folders (every *.parquet below) or globs. */
  input: z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
    .transform((v) => (Array.isArray(v) ? v : [v])),
  /** Output folder for part files and the run report. */
  output: z.string().min(1),
  source: sourceConfigSchema.default(sourceConfigSchema.parse({})),
  filter: filterConfigSchema.default(filterConfigSchema.parse({})),
  writer: writerConfigSchema.default(writerConfigSchema.parse({})),
  engine: engineConfigSchema.default(engineConfigSchema.parse({})),
  llm: llmConfigSchema.default(llmConfigSchema.parse({})),
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
