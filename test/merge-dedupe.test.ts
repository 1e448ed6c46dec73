import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dedupeInstructionsAcrossRanks, type MergeDrop } from '../job/plan/instruction-dedupe.js';
import { MERGE_DEDUPE_STAGE, totalsAfterMergeDedupe } from '../job/plan/merge.js';
import type { PartEntry } from '../job/run-ledger.js';
import { nearCopy } from './helpers/dup-shards.js';
import { query, tempDir } from './helpers/duckdb.js';

/** Cross-rank instruction dedupe as `air merge` runs it, over real part files of three ranks. */
let dir: string;
let cleanup: () => Promise<void>;

interface Row {
  document_id: string;
  depth: number;
  instruction: string;
  output: string;
}

const words = (seed: string, n: number): string =>
  Array.from({ length: n }, (_, i) => `${seed}${(i * 7919) % 1009}`).join(' ');
const A = `Write a formal letter ${words('a', 200)}`;
const B = `Summarise the passage ${words('b', 200)}`;
const C = `List the steps ${words('c', 200)}`;
const D = `Explain the method ${words('d', 200)}`;

async function writePart(file: string, rows: readonly Row[]): Promise<PartEntry> {
  await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
  const jsonl = path.join(dir, `${path.basename(file)}.jsonl`);
  await writeFile(jsonl, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  // A nested column too: rewritten parts must keep every column and its type.
  await query(
    `COPY (SELECT document_id, depth::INTEGER AS depth, instruction, output,
             [{'type': 'length', 'iteration': depth::INTEGER}] AS constraints
           FROM read_json('${jsonl}', format = 'newline_delimited'))
     TO '${path.join(dir, file)}' (FORMAT parquet)`,
  );
  return { file, rows: rows.length };
}

let parts: PartEntry[];

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-merge-dedupe-'));
  parts = [
    await writePart('ranks/00000/part-00000.parquet', [
      { document_id: 'd1', depth: 1, instruction: A, output: 'a' },
      { document_id: 'd2', depth: 1, instruction: B, output: 'b' },
    ]),
    await writePart('ranks/00001/part-00000.parquet', [
      { document_id: 'd3', depth: 1, instruction: C, output: 'c' },
      // A near-copy of rank 0's d1 (Jaccard ~0.9): dropped, d3 stays.
      { document_id: 'd4', depth: 1, instruction: nearCopy(A, 'x'), output: 'a2' },
      // Both depths of d5 repeat earlier rows: the whole document goes.
      { document_id: 'd5', depth: 1, instruction: B, output: 'b2' },
      { document_id: 'd5', depth: 2, instruction: nearCopy(C, 'y'), output: 'c2' },
      { document_id: 'd6', depth: 1, instruction: D, output: 'd' },
    ]),
    await writePart('ranks/00002/part-00000.parquet', [
      { document_id: 'd7', depth: 1, instruction: `Describe the scene ${words('e', 200)}`, output: 'e' },
    ]),
  ];
}, 60_000);

afterAll(async () => {
  await cleanup?.();
});

describe('instruction dedupe across ranks (air merge)', () => {
  it('drops later near-copies in rank order, lists them, and rewrites only the parts that had drops', async () => {
    const result = await dedupeInstructionsAcrossRanks(dir, parts, { threshold: 0.8 });
    expect(result.rows).toBe(8);
    expect(result.drops).toBe(3);
    expect(result.documentsDropped).toBe(2); // d4 (its only row) and d5 (both rows)
    expect(result.rewritten).toBe(1);
    expect(result.parts[0]).toBe(parts[0]);
    expect(result.parts[2]).toBe(parts[2]);
    expect(result.parts[1]).toEqual({ file: 'instruction-dedupe/parts/00001-part-00000.parquet', rows: 2 });

    const drops = (await readFile(path.join(dir, result.dropFile), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as MergeDrop);
    expect(drops).toEqual([
      { file: parts[1]!.file, row: 1, id: 'd4@1', duplicateOf: 'd1@1' },
      { file: parts[1]!.file, row: 2, id: 'd5@1', duplicateOf: 'd2@1' },
      { file: parts[1]!.file, row: 3, id: 'd5@2', duplicateOf: 'd3@1' },
    ]);

    const rewritten = path.join(dir, result.parts[1]!.file);
    const kept = await query(
      `SELECT document_id, depth, output, constraints[1].type FROM read_parquet('${rewritten}')`,
    );
    expect(kept).toEqual([
      ['d3', 1, 'c', 'length'],
      ['d6', 1, 'd', 'length'],
    ]);
    const types = await query(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '${rewritten}')`);
    const original = await query(
      `SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '${path.join(dir, parts[1]!.file)}')`,
    );
    expect(types).toEqual(original);
  });

  it('is repeatable: a second merge writes the same list and the same parts', async () => {
    const a = await dedupeInstructionsAcrossRanks(dir, parts, { threshold: 0.8 });
    const listA = await readFile(path.join(dir, a.dropFile), 'utf8');
    const b = await dedupeInstructionsAcrossRanks(dir, parts, { threshold: 0.8 });
    expect(await readFile(path.join(dir, b.dropFile), 'utf8')).toBe(listA);
    expect(b.parts).toEqual(a.parts);
  });

  it("moves documents every row of which was dropped from written to the merge stage's drops (still balanced)", async () => {
    const result = await dedupeInstructionsAcrossRanks(dir, parts, { threshold: 0.8 });
    const ranks = {
      read: 10,
      written: 7,
      rowsWritten: 8,
      dropped: { 'length_filter:too_short': 3 },
      failed: {},
      abandoned: 0,
    };
    const after = totalsAfterMergeDedupe(ranks, result);
    expect(after).toEqual({
      read: 10,
      written: 5,
      rowsWritten: 5,
      dropped: { 'length_filter:too_short': 3, [`${MERGE_DEDUPE_STAGE}:near_duplicate`]: 2 },
      failed: {},
      abandoned: 0,
    });
    expect(after.written + Object.values(after.dropped).reduce((a, b) => a + b, 0)).toBe(after.read);
  });
});
