/**
 * The simulator's tokenizer (llm/simulator/tokens.ts) against real BPE vocabularies on the bundled web samples:
 * the first 2,000 documents, every other one (the half the tables were not fitted on; `--all` for all).
 *
 *   npm --prefix bench/tokenizer ci && npx tsx bench/tokenizer/compare.mjs
 *
 * Prints, per reference tokenizer, the ratio of token totals (ours / theirs) and the 5th, 50th and 95th
 * percentiles of the per-document ratio, for English documents (>= 99% ASCII characters) and for all.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { encode as cl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { encode as o200k } from 'gpt-tokenizer/encoding/o200k_base';
import path from 'node:path';
import { countTokens } from '../../llm/simulator/tokens.js';

const input = path.resolve(import.meta.dirname, '../../../shared/data/web/*.parquet');
const db = await DuckDBInstance.create(':memory:');
const connection = await db.connect();
const reader = await connection.runAndReadAll(`select text from read_parquet('${input}') limit 2000`);
const all = reader.getRowObjects().map((row) => String(row.text));
const held = process.argv.includes('--all') ? all : all.filter((_, i) => i % 2 === 1);
// eslint-disable-next-line no-control-regex
const isEnglish = (text) => (text.match(/[\x00-\x7f]/g)?.length ?? 0) / text.length >= 0.99;

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(q * (sorted.length - 1))];
};
const counters = {
  'air sim (tokens.ts)': countTokens,
  'ceil(chars / 4)': (text) => Math.ceil(text.length / 4),
};
console.log(`documents: ${held.length} (${held.filter(isEnglish).length} English)\n`);
console.log('| counter | reference | documents | total ratio | p5 | p50 | p95 |');
console.log('| --- | --- | --- | ---: | ---: | ---: | ---: |');
for (const [refName, encode] of [
  ['cl100k_base', cl100k],
  ['o200k_base', o200k],
]) {
  const reference = held.map((text) => encode(text).length);
  for (const [name, count] of Object.entries(counters)) {
    for (const [label, keep] of [
      ['English', isEnglish],
      ['all', () => true],
    ]) {
      let ours = 0;
      let theirs = 0;
      const ratios = [];
      held.forEach((text, i) => {
        if (!keep(text) || reference[i] === 0) return;
        const n = count(text);
        ours += n;
        theirs += reference[i];
        ratios.push(n / reference[i]);
      });
      const f = (x) => x.toFixed(3);
      console.log(
        `| ${name} | ${refName} | ${label} | ${f(ours / theirs)} | ${f(quantile(ratios, 0.05))} | ${f(quantile(ratios, 0.5))} | ${f(quantile(ratios, 0.95))} |`,
      );
    }
  }
}
