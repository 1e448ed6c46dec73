import { Option } from 'commander';
import { runConfigSchema } from '../job/config.js';
import { settingKeys, unwrap } from '../job/config-keys.js';
import { commaList, countArg, integerArg, nonNegativeArg, positiveIntArg } from './args.js';

/**
 * `air run` flags that set one config key each. Help text says what a flag does; its default and its choices
 * are read from the config schema, the one place they live, so the help can never disagree with a run.
 */
interface SettingFlag {
  readonly flags: string;
  /** The config key the value goes to, as a dotted path. */
  readonly key: string;
  readonly help: string;
  readonly parse?: (value: string) => unknown;
  /** What the help says when the schema has no default (an optional key). */
  readonly unset?: string;
}

export const SETTING_FLAGS: readonly SettingFlag[] = [
  { flags: '--method <name>', key: 'method', help: 'air: the AIR method (needs LLMs; --llm sim for the simulator); documents: filtered documents only' },
  { flags: '--text-column <name>', key: 'source.textColumn', help: 'input column with the document text' },
  { flags: '--id-column <name>', key: 'source.idColumn', help: 'input column with the document id', unset: 'id if present, else <shard>#<row>' },
  { flags: '--limit <n>', key: 'source.limit', help: 'read at most this many documents in all, shards in order (trial runs)', parse: positiveIntArg, unset: 'all' },
  { flags: '--meta <columns>', key: 'source.metaColumns', help: 'comma-separated columns to pass through, a.b for struct fields', parse: commaList },
  { flags: '--min-words <n>', key: 'filter.minWords', help: 'drop documents with fewer words', parse: countArg },
  { flags: '--max-words <n>', key: 'filter.maxWords', help: 'drop documents with more words', parse: countArg },
  { flags: '--part-rows <n>', key: 'writer.partRows', help: 'rows per output part file', parse: countArg },
  { flags: '--part-mb <n>', key: 'writer.partMB', help: 'MB of text per output part file', parse: nonNegativeArg },
  { flags: '--compression <codec>', key: 'writer.compression', help: 'Parquet compression of the output' },
  { flags: '--row-group-rows <n>', key: 'writer.rowGroupRows', help: 'rows per row group in the output', parse: countArg },
  { flags: '--row-group-mb <n>', key: 'writer.rowGroupMB', help: 'MB of text per row group in the output', parse: nonNegativeArg },
  { flags: '--queue-capacity <n>', key: 'engine.queueCapacity', help: 'records buffered between two stages', parse: countArg },
  { flags: '--grace-seconds <n>', key: 'engine.graceSeconds', help: 'time in-flight records get after Ctrl-C/SIGTERM', parse: nonNegativeArg },
  { flags: '--duckdb-threads <n>', key: 'engine.duckdbThreads', help: 'threads for decoding input Parquet', parse: countArg },
  { flags: '--duckdb-memory-mb <n>', key: 'engine.duckdbMemoryMB', help: 'memory limit of the Parquet engine', parse: countArg },
  { flags: '--s3-endpoint <url>', key: 'storage.endpoint', help: 'S3-compatible server for s3:// inputs and outputs', unset: 'AWS S3' },
  { flags: '--work-dir <dir>', key: 'storage.workDir', help: 'local working folder of an s3:// output', unset: '<tmp>/air-work/<hash of the output>' },
  { flags: '--progress <mode>', key: 'progress', help: 'progress display' },
  { flags: '--progress-interval <seconds>', key: 'progressIntervalSeconds', help: 'seconds between progress log lines', parse: nonNegativeArg },
  { flags: '--llm <mode>', key: 'llm.mode', help: 'endpoints: the servers below; sim: a built-in simulator' },
  { flags: '--max-iterations <n>', key: 'air.refine.maxIterations', help: 'most judge rounds (constraints) per document', parse: positiveIntArg },
  { flags: '--depths <which>', key: 'air.depths', help: 'rows per document: deepest depth reached, or all depths' },
  { flags: '--seed <n>', key: 'air.seed', help: 'seed of every sampling decision', parse: integerArg },
  { flags: '--documents-in-flight <n>', key: 'air.documentsInFlight', help: 'documents in flight per LLM stage', parse: positiveIntArg },
]; // prettier-ignore

/** `--s3-endpoint`: also taken by the commands that read a job's root (plan, status, merge, run --plan). */
export const STORAGE_ENDPOINT = SETTING_FLAGS.find((f) => f.key === 'storage.endpoint')!;

/** The config with every default: what the help quotes. */
const DEFAULTS = runConfigSchema.parse({ input: 'x', output: 'x' }) as unknown as Record<string, unknown>;
const SCHEMAS = new Map(settingKeys(runConfigSchema).map((k) => [k.path, k.schema]));

function valueAt(object: unknown, key: string): unknown {
  return key
    .split('.')
    .reduce<unknown>((v, part) => (v as Record<string, unknown> | undefined)?.[part], object);
}

function describeDefault(value: unknown): string {
  return Array.isArray(value) ? value.join(',') : String(value);
}

/** The commander option of a setting flag: help with the schema's default, choices from its enum. */
export function settingOption(flag: SettingFlag): Option {
  const schema = SCHEMAS.get(flag.key);
  if (schema === undefined)
    throw new Error(`flag ${flag.flags} names ${flag.key}, which the config does not have`);
  const fallback = valueAt(DEFAULTS, flag.key);
  const shown = fallback === undefined ? flag.unset : describeDefault(fallback);
  const option = new Option(flag.flags, shown === undefined ? flag.help : `${flag.help} (default: ${shown})`);
  const def = unwrap(schema)._zod.def as { type: string; entries?: Record<string, string> };
  if (def.type === 'enum' && def.entries !== undefined) option.choices(Object.values(def.entries));
  if (flag.parse !== undefined) option.argParser(flag.parse);
  return option;
}

/** The config keys the setting flags given on the command line set, as a nested object for mergeConfig. */
export function settingsFromFlags(values: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const flag of SETTING_FLAGS) {
    const value = values[new Option(flag.flags).attributeName()];
    if (value === undefined) continue;
    const path = flag.key.split('.');
    let at = config;
    for (const part of path.slice(0, -1)) at = (at[part] ??= {}) as Record<string, unknown>;
    at[path.at(-1)!] = value;
  }
  return config;
}
