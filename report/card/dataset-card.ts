import { stringify } from 'yaml';
import { formatCount, formatDuration } from '../format.js';
import type { DistributionSummary, RunStats } from '../../schemas/stats.js';
import { describeType } from '../../schemas/types.js';
import { resultSettings } from '../../schemas/settings.js';
import { constraintTypeRows, llmAccounting, lossReasons, yieldOf } from '../stats/derived.js';
import { featureOf, type CardColumn } from './columns.js';

/** Marks a README.md as air's own card, which air may overwrite; a README.md without it is someone's text. */
export const CARD_MARKER = '<!-- dataset card written by air (air stats <folder> rewrites it) -->';

export interface CardInput {
  readonly stats: RunStats;
  readonly columns: readonly CardColumn[];
  /** The resolved run config (ledger.json's `config`); the card lists the settings that shape the data. */
  readonly config?: unknown;
  /** Glob of the data files, or the files themselves, relative to the card (default part-*.parquet). */
  readonly dataFiles?: string | readonly string[];
  readonly title?: string;
}

/** The data files as the card's text names them: a glob, or a count of the files its front matter lists. */
function filesText(files: CardInput['dataFiles']): string {
  if (files === undefined || typeof files === 'string') return `\`${files ?? 'part-*.parquet'}\``;
  return `${files.length} part files, listed under \`configs\` above`;
}

/** Hugging Face's size buckets (the `size_categories` tag). */
const SIZE_CATEGORIES: ReadonlyArray<readonly [number, string]> = [
  [1e3, 'n<1K'],
  [1e4, '1K<n<10K'],
  [1e5, '10K<n<100K'],
  [1e6, '100K<n<1M'],
  [1e7, '1M<n<10M'],
  [1e8, '10M<n<100M'],
  [1e9, '100M<n<1B'],
  [1e10, '1B<n<10B'],
  [1e11, '10B<n<100B'],
  [1e12, '100B<n<1T'],
];

/**
 * README.md in the layout of a Hugging Face dataset card: YAML front matter (licence, task, language, size,
 * the configs pointing at the part files, the features), then what the data is, how it was made, every
 * column, the headline statistics and the licence note, so the folder can be pushed as a dataset as it is.
 */
export function datasetCard(input: CardInput): string {
  const { stats } = input;
  const title =
    input.title ??
    (stats.kind === 'air'
      ? 'AIR complex instructions'
      : stats.kind === 'documents'
        ? 'Filtered web documents'
        : 'Instruction dataset');
  const languages = Object.keys(stats.provenance.languages).filter((l) =>
    /^[a-z]{2,3}([-_][A-Za-z0-9]+)?$/.test(l),
  );
  const front: Record<string, unknown> = {
    pretty_name: title,
    license: 'other',
    license_name: 'source-documents',
    task_categories: ['text-generation'],
    language: languages.length > 0 ? languages : stats.kind === 'air' ? ['en'] : undefined,
    size_categories: [sizeCategory(stats.rows)],
    tags:
      stats.kind === 'air'
        ? ['instruction-following', 'complex-instructions', 'synthetic', 'air']
        : ['web', 'air'],
    configs: [
      { config_name: 'default', data_files: [{ split: 'train', path: input.dataFiles ?? 'part-*.parquet' }] },
    ],
    dataset_info: {
      features: input.columns.map((c) => featureOf(c.name, c.type)),
      splits: [{ name: 'train', num_examples: stats.rows }],
    },
  };
  const yaml = stringify(front, { lineWidth: 0 }).trimEnd();
  return [
    '---',
    '# license: set it to the licence of the source documents (and the models\' terms) before publishing: see "Licence" below.',
    yaml,
    '---',
    '',
    CARD_MARKER,
    '',
    `# ${title}`,
    '',
    ...description(stats),
    '',
    '## Dataset structure',
    '',
    `One split, \`train\`, of ${formatCount(stats.rows)} rows in Parquet files (${filesText(input.dataFiles)}). Columns:`,
    '',
    '| column | type | description |',
    '| --- | --- | --- |',
    ...input.columns.map(
      (c) => `| \`${c.name}\` | \`${escapeCell(describeType(c.type))}\` | ${escapeCell(c.description)} |`,
    ),
    '',
    '## How it was made',
    '',
    ...method(stats),
    ...configBlock(input.config),
    '',
    '## Statistics',
    '',
    ...headline(stats),
    '',
    'Full statistics: `stats.json` (mergeable across shards) and `report.html` (plots) beside this card; `air stats <folder>` recomputes all three from the Parquet files.',
    '',
    '## Licence',
    '',
    ...licence(stats),
    '',
  ].join('\n');
}

function description(stats: RunStats): string[] {
  if (stats.kind === 'air') {
    return [
      "Complex instruction-following examples in Alpaca form (`instruction`, `input`, `output`), made from web documents with the AIR method (Automatic Iterative Refinement; Liu et al., EMNLP 2025, arXiv:2502.17787). Each instruction starts from a back-translated, document-grounded instruction; a large guidance model then compares a small student model's answer with the document and adds, round by round, the constraint the student missed. Each row keeps the source document's id, every refinement round, the merged constraints, LLM-judged complexity and quality, and every LLM call behind it.",
      ...simulatorWarning(stats),
    ];
  }
  if (stats.kind === 'documents') {
    return [
      "Web documents read from Parquet shards and kept by air's filters (length and, when enabled, deduplication): one row per kept document, with its id, text and where it came from.",
    ];
  }
  return ['An instruction dataset as read by `air stats` (no ledger: how it was made is not recorded here).'];
}

function simulatorWarning(stats: RunStats): string[] {
  const models = [...stats.provenance.guidanceModels, ...stats.provenance.studentModels];
  if (!models.some((m) => m.startsWith('air-sim-'))) return [];
  return [
    '',
    '> **Made with the built-in LLM simulator (`--llm sim`).** Its replies are seeded nonsense: these rows exercise the pipeline and are not training data.',
  ];
}

function method(stats: RunStats): string[] {
  const p = stats.provenance;
  const list = (values: readonly string[]): string =>
    values.length === 0 ? 'not recorded' : values.map((v) => `\`${v}\``).join(', ');
  const lines: string[] = [];
  if (stats.kind === 'air') {
    lines.push(
      '- Method: AIR, as implemented by `air` (stage 0 document filters; back-translated initial instruction scored 0-5; judge rounds with a student-check gate; merge and final answer at the depth reached; validity filter; complexity and quality scores; a rule-based constraint tagger).',
      `- Guidance model: ${list(p.guidanceModels)}`,
      `- Student model: ${list(p.studentModels)}`,
      `- Prompt version: ${list(p.promptVersions)}`,
    );
  } else if (stats.kind === 'documents') {
    lines.push(
      '- Method: `air run --method documents` (read, length filter, optional deduplication, write).',
    );
  }
  lines.push(`- Config fingerprint: ${list(p.configFingerprints)}`);
  if (stats.funnel !== null) {
    lines.push(
      `- Input documents read: ${formatCount(stats.funnel.read)}; written: ${formatCount(stats.funnel.written)}${pct(yieldOf(stats))}`,
    );
  }
  if (stats.time.wallMs !== null) lines.push(`- Wall time: ${formatDuration(stats.time.wallMs)}`);
  return lines;
}

function configBlock(config: unknown): string[] {
  if (config === undefined || config === null || typeof config !== 'object') return [];
  const kept = Object.entries(resultSettings(config));
  if (kept.length === 0) return [];
  return [
    '',
    'Settings that shape the data (machine-specific ones such as endpoints, paths and concurrency left out):',
    '',
    '```yaml',
    ...kept.map(([key, value]) => `${key}: ${JSON.stringify(value)}`),
    '```',
  ];
}

function headline(stats: RunStats): string[] {
  const d = stats.distributions;
  const summary = (label: string, s: DistributionSummary): string | undefined =>
    s.count === 0
      ? undefined
      : `| ${label} | ${fixed(s.mean)} | ${fixed(s.p50)} | ${fixed(s.p90)} | ${fixed(s.p99)} | ${fixed(s.max)} |`;
  const rows = [
    summary('document words', d.documentWords.summary),
    summary('initial instruction words', d.initialInstructionWords.summary),
    summary('instruction words', d.instructionWords.summary),
    summary('output words', d.outputWords.summary),
    summary('constraints per instruction', d.constraintsPerInstruction.summary),
    summary('depth reached', d.depthReached.summary),
    summary('complexity (1-10, LLM-judged)', d.complexity.summary),
    summary('quality (1-10, LLM-judged)', d.quality.summary),
    summary('constraint types stated (tagger)', d.taggedTypes.summary),
  ].filter((r): r is string => r !== undefined);
  const lines = [`- Rows: ${formatCount(stats.rows)}`];
  if (stats.funnel !== null) {
    const top = lossReasons(stats.funnel)
      .slice(0, 5)
      .map((r) => `${r.reason} ${formatCount(r.rows)}`);
    if (top.length > 0) lines.push(`- Largest losses: ${top.join('; ')}`);
  }
  if (stats.kind === 'air') {
    const merged = constraintTypeRows(stats)
      .filter((r) => r.counts.merged > 0)
      .sort((a, b) => b.counts.merged - a.counts.merged)
      .map((r) => `${r.label} ${formatCount(r.counts.merged)}`);
    if (merged.length > 0) lines.push(`- Constraint types in the instructions: ${merged.join(', ')}`);
  }
  const { accounting, from } = llmAccounting(stats);
  const t = accounting.totals;
  if (t.calls > 0) {
    const cost = Object.entries(t.cost).map(([currency, v]) => `${v.toFixed(2)} ${currency}`);
    const unpriced = t.unpricedModels.length > 0 ? [`unpriced: ${t.unpricedModels.join(', ')}`] : [];
    lines.push(
      `- LLM calls${from === 'rows' ? ' (listed on the rows)' : ''}: ${formatCount(t.calls)} (${formatCount(t.cacheHits)} from the cache), ${formatCount(t.promptTokens)} prompt and ${formatCount(t.completionTokens)} completion tokens; cost: ${[...cost, ...unpriced].join('; ') || 'unpriced'}`,
    );
  }
  if (rows.length === 0) return lines;
  return [
    ...lines,
    '',
    '| measure | mean | p50 | p90 | p99 | max |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ];
}

function licence(stats: RunStats): string[] {
  const lines = [
    "The source documents belong to their publishers and keep the licence under which the source dataset was released (for example ODC-BY for C4, FineWeb and Dolma, with the terms of use of Common Crawl): `source_file` and `document_id` name each row's source, so check those terms before redistributing. The front matter says `license: other` until you set it.",
  ];
  if (stats.kind === 'air') {
    lines.push(
      '',
      'Instructions and outputs were written by the models named above; their licences or terms of use may restrict how generated text is used (for example, to train other models).',
    );
  }
  return lines;
}

function sizeCategory(rows: number): string {
  for (const [limit, name] of SIZE_CATEGORIES) if (rows < limit) return name;
  return 'n>1T';
}

function fixed(v: number | null): string {
  if (v === null) return '-';
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function pct(share: number | null): string {
  return share === null ? '' : ` (${(100 * share).toFixed(1)}%)`;
}

function escapeCell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}
