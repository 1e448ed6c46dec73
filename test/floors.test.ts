import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cli.js';

// The architecture as floors: a module imports only from its own floor or the floors below it, so the engine
// never learns of AIR, operators never of Parquet or HTTP, and nothing below the job knows how it is composed.
const FLOORS: readonly (readonly string[])[] = [
  ['schemas'],
  ['pipeline', 'llm'],
  ['operators'],
  ['report'],
  ['job'],
  ['cli'],
];

const floorOf = (file: string): number => {
  const top = file.split('/')[0]!;
  return FLOORS.findIndex((floor) => floor.includes(top));
};

function sources(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir)).flatMap((name) => {
    const rel = `${dir}/${name}`;
    if (statSync(path.join(ROOT, rel)).isDirectory()) return sources(rel);
    return rel.endsWith('.ts') && !rel.endsWith('.d.ts') ? [rel] : [];
  });
}

/** Relative imports of a module (static, dynamic and type-only), as paths from the project root. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specs.map((spec) =>
    path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)).replace(/\.js$/, '.ts'),
  );
}

const files = FLOORS.flat().flatMap(sources);
const graph = new Map(files.map((f) => [f, importsOf(f).filter((i) => files.includes(i))]));

describe('import floors', () => {
  it('no module imports from a floor above its own', () => {
    const upward: string[] = [];
    for (const [file, imports] of graph) {
      for (const target of imports) {
        if (floorOf(target) > floorOf(file)) upward.push(`${file} -> ${target}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('no import cycle between modules', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (file: string): void => {
      state.set(file, 'open');
      stack.push(file);
      for (const next of graph.get(file) ?? []) {
        if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next].join(' -> '));
        else if (!state.has(next)) visit(next);
      }
      stack.pop();
      state.set(file, 'done');
    };
    for (const file of graph.keys()) if (!state.has(file)) visit(file);
    expect(cycles).toEqual([]);
  });

  it('sees every module of every floor', () => {
    expect(files.length).toBeGreaterThan(100);
    for (const file of files) expect(floorOf(file), file).toBeGreaterThanOrEqual(0);
  });
});
