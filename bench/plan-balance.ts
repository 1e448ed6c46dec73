/**
 * How unbalanced ranks are after `air plan` spreads shards of skewed sizes by bytes (results:
 * bench/RESULTS-plan.md). Pure computation on synthetic shard sizes, no files: for each size distribution,
 * world size and seed, the largest rank's bytes over the mean, for the plan's longest-first greedy
 * (job/plan/assign.ts) against datatrove-style `files[rank::world]` in label order, and the floor no assignment
 * can beat (the largest shard, or the mean, whichever is larger).
 *
 *   npx tsx bench/plan-balance.ts [--shards 1000] [--seeds 20]
 */
import { parseArgs } from 'node:util';
import { assignByBytes, imbalance } from '../job/plan/assign.js';
import { Rng } from '../pipeline/random.js';

const { values } = parseArgs({
  options: { shards: { type: 'string', default: '1000' }, seeds: { type: 'string', default: '20' } },
});
const shards = Number(values.shards);
const seeds = Number(values.seeds);
const MB = 1e6;

const distributions: ReadonlyArray<{ name: string; draw: (rng: Rng) => number }> = [
  { name: 'lognormal, median 200 MB, σ 0.5', draw: (r) => 200 * MB * Math.exp(0.5 * r.normal()) },
  { name: 'lognormal, median 200 MB, σ 1.0', draw: (r) => 200 * MB * Math.exp(1.0 * r.normal()) },
  { name: 'lognormal, median 200 MB, σ 2.0', draw: (r) => 200 * MB * Math.exp(2.0 * r.normal()) },
  { name: 'Pareto α 1.5, from 50 MB', draw: (r) => 50 * MB * (1 - r.next()) ** (-1 / 1.5) },
  { name: 'Pareto α 1.1, from 50 MB', draw: (r) => 50 * MB * (1 - r.next()) ** (-1 / 1.1) },
];

const stats = (xs: readonly number[]) => ({
  median: [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!,
  worst: Math.max(...xs),
});
const f = (x: number) => x.toFixed(3);

console.log(
  `${shards} shards, ${seeds} seeds each; max/mean bytes per rank (median over seeds, worst seed)\n`,
);
console.log(
  '| sizes | ranks | greedy by bytes | round-robin `files[rank::world]` | floor (largest shard or mean) | plan time |',
);
console.log('|---|---|---|---|---|---|');
for (const dist of distributions) {
  for (const world of [16, 64]) {
    const greedy: number[] = [];
    const robin: number[] = [];
    const floor: number[] = [];
    let ms = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const rng = new Rng(seed * 1000 + world);
      const listing = Array.from({ length: shards }, (_, i) => ({
        label: `shard-${String(i).padStart(5, '0')}.parquet`,
        size: Math.round(dist.draw(rng)),
      }));
      const start = performance.now();
      const { bytes } = assignByBytes(listing, world);
      ms += performance.now() - start;
      greedy.push(imbalance(bytes));
      const rr = new Array<number>(world).fill(0);
      listing.forEach((s, i) => (rr[i % world]! += s.size));
      robin.push(imbalance(rr));
      const total = listing.reduce((n, s) => n + s.size, 0);
      floor.push(Math.max(1, Math.max(...listing.map((s) => s.size)) / (total / world)));
    }
    const [g, r, lb] = [stats(greedy), stats(robin), stats(floor)];
    console.log(
      `| ${dist.name} | ${world} | ${f(g.median)} (worst ${f(g.worst)}) | ${f(r.median)} (worst ${f(r.worst)}) | ` +
        `${f(lb.median)} (worst ${f(lb.worst)}) | ${(ms / seeds).toFixed(2)} ms |`,
    );
  }
}
