/**
 * How well model-free measures rank instructions by their labelled number of constraints (issue 11): Spearman
 * of the label against word count (the baseline), the tagger's distinct types and tags, and the constraints
 * counted by clause (countConstraints: what air score reports), overall, per category, within each example (one task at increasing levels), and on two halves split by example id (odd/even), so
 * a gain tuned to some examples shows as a gap between halves. Results: bench/RESULTS-tagger.md.
 *
 *   npx tsx bench/tagger.ts [--file ../shared/data/instructions/followbench-dev.jsonl]
 *     [--counter-url <url> --counter-model <name> [--api-key-env VAR] [--concurrency n] [--seed n] | --llm sim]
 *
 * With an LLM counter (the optional one `air score` uses) its counts are a further column. `--llm sim` only shows
 * the plumbing: the simulator's lists have seeded random lengths, so its figure means nothing.
 */
import { parseArgs } from 'node:util';
import { openLlmCounter } from '../cli/counter-llm.js';
import { countConstraints } from '../operators/constraint-count.js';
import { summarizeConstraints, tagConstraints } from '../operators/constraint-tagger.js';
import { countWords } from '../operators/length-filter.js';
import {
  FOLLOWBENCH_DEV,
  rankCorrelation,
  readLabelled,
  withinExampleCorrelation,
  type LabelledInstruction,
} from '../test/helpers/labelled-instructions.js';

const { values } = parseArgs({
  options: {
    file: { type: 'string' },
    'counter-url': { type: 'string' },
    'counter-model': { type: 'string' },
    'api-key-env': { type: 'string' },
    concurrency: { type: 'string' },
    llm: { type: 'string' },
    cache: { type: 'string' },
    seed: { type: 'string' },
  },
});
const rows = readLabelled(values.file ?? FOLLOWBENCH_DEV);

const opened = await openLlmCounter({
  counterUrl: values['counter-url'],
  counterModel: values['counter-model'],
  apiKeyEnv: values['api-key-env'],
  concurrency: values.concurrency === undefined ? undefined : Number(values.concurrency),
  llm: values.llm,
  cache: values.cache,
  seed: values.seed === undefined ? undefined : Number(values.seed),
});
const llmCounts = new Map<LabelledInstruction, number>();
if (opened !== undefined) {
  try {
    const counts = await opened.counter.count(rows.map((r) => r.instruction));
    rows.forEach((row, i) => llmCounts.set(row, counts[i]!));
  } finally {
    await opened.close();
  }
}

const MEASURES: Array<readonly [string, (row: LabelledInstruction) => number]> = [
  ['word count', (row) => countWords(row.instruction)],
  ['tagger distinct types', (row) => summarizeConstraints(tagConstraints(row.instruction)).distinctTypes],
  ['tagger total tags', (row) => tagConstraints(row.instruction).length],
  ['constraint count', (row) => countConstraints(row.instruction)],
  // Not shipped: how much a length term would add (FollowBench makes each level longer than the last).
  [
    'count + log2(1 + words)',
    (row) => countConstraints(row.instruction) + Math.log2(1 + countWords(row.instruction)),
  ],
];
if (opened !== undefined) MEASURES.push([opened.counter.label, (row) => llmCounts.get(row)!]);

const categories = [...new Set(rows.map((r) => r.category))].sort();
const subsets: ReadonlyArray<readonly [string, LabelledInstruction[]]> = [
  ['all', rows],
  ...categories.map((c): [string, LabelledInstruction[]] => [c, rows.filter((r) => r.category === c)]),
  ['odd example ids', rows.filter((r) => r.exampleId % 2 === 1)],
  ['even example ids', rows.filter((r) => r.exampleId % 2 === 0)],
];

const fixed = (x: number): string => (Number.isNaN(x) ? 'n/a' : x.toFixed(2));
const table = (title: string, correlate: typeof rankCorrelation): void => {
  console.log(`\n${title}\n`);
  console.log(`| subset (rows) | ${MEASURES.map(([name]) => name).join(' | ')} |`);
  console.log(`| --- | ${MEASURES.map(() => '---:').join(' | ')} |`);
  for (const [name, subset] of subsets) {
    const cells = MEASURES.map(([, measure]) => fixed(correlate(subset, measure)));
    console.log(`| ${name} (${subset.length}) | ${cells.join(' | ')} |`);
  }
};

console.log(`${rows.length} labelled instructions`);
table('Spearman of level vs measure, across rows', rankCorrelation);
table(
  'Mean Spearman within an example (rows of one task; constant measure counts as 0)',
  withinExampleCorrelation,
);
