import { describe, expect, it } from 'vitest';
import { chatTokens } from '../llm/simulator/tokens.js';
import { loadPromptSet, type PromptSet } from '../operators/air/prompts.js';

/** The text of one document's calls: long per-document parts, and what changes from round to round. */
const DOCUMENT = 'The document explains how sourdough starters ferment flour over several days. '.repeat(60);
const REFERENCE =
  'Sourdough rises because wild yeasts ferment the sugars of the flour and release gas. '.repeat(50);
const INSTRUCTION = 'Explain how a sourdough starter makes bread rise.';
const TYPES = ['- Inclusion', '- Format', '- Length', '- Tone'];

/** Round k of the judge: round 1 has no constraint to grade (step judge), later rounds grade one (judge-check). */
function judgeRound(prompts: PromptSet, k: number) {
  const values = {
    reference: REFERENCE,
    instruction: `${INSTRUCTION} ${Array.from({ length: k - 1 }, (_, i) => `Constraint ${i + 1}.`).join(' ')}`,
    answer: `The student's answer of round ${k}: bread rises because of yeast. `.repeat(10),
    types: TYPES.slice(k - 1).join('\n'),
    constraint: `Constraint ${k - 1}.`,
  };
  return prompts.render(k === 1 ? 'judge' : 'judge-check', values);
}

function sharedPrefix(a: ReturnType<PromptSet['render']>, b: ReturnType<PromptSet['render']>): number {
  const x = chatTokens(a);
  const y = chatTokens(b);
  let n = 0;
  while (n < x.length && n < y.length && x[n] === y[n]) n += 1;
  return n;
}

const referenceTokens = chatTokens([{ role: 'user', content: REFERENCE }]).length;
const documentTokens = chatTokens([{ role: 'user', content: DOCUMENT }]).length;

describe('prompt set v2: laid out for the prefix cache', () => {
  const v2 = loadPromptSet('v2');
  const v1 = loadPromptSet('v1');

  it('consecutive judge rounds of one document share their system prompt and the whole reference', () => {
    for (let k = 1; k < 4; k += 1) {
      const shared = sharedPrefix(judgeRound(v2, k), judgeRound(v2, k + 1));
      expect(shared, `rounds ${k} and ${k + 1}`).toBeGreaterThan(referenceTokens + 300);
      // v1 puts the round's constraint and types before the reference: the rounds share a few tokens only.
      expect(sharedPrefix(judgeRound(v1, k), judgeRound(v1, k + 1))).toBeLessThan(referenceTokens / 10);
    }
  });

  it('the instruction and polish calls share one preamble and the whole document', () => {
    const instruction = v2.render('instruction', { document: DOCUMENT });
    const polish = v2.render('polish', { document: DOCUMENT, instruction: INSTRUCTION });
    expect(sharedPrefix(instruction, polish)).toBeGreaterThan(documentTokens);
    const v1Shared = sharedPrefix(
      v1.render('instruction', { document: DOCUMENT }),
      v1.render('polish', { document: DOCUMENT, instruction: INSTRUCTION }),
    );
    expect(v1Shared).toBeLessThan(20);
  });

  it('has every step of v1, with the same placeholders, and its own versions', () => {
    expect(Object.keys(v2.stepVersions)).toEqual(Object.keys(v1.stepVersions));
    const placeholders = (set: string, step: string): string[] => {
      const values = new Proxy({} as Record<string, string>, { get: (_, name) => `<${String(name)}>` });
      const text = loadPromptSet(set)
        .render(step, values)
        .map((m) => m.content)
        .join('\n');
      return [...new Set(text.match(/<[a-z_]+>/g))].sort();
    };
    for (const step of Object.keys(v1.stepVersions)) {
      expect(placeholders('v2', step), step).toEqual(placeholders('v1', step));
      expect(v2.stepVersions[step]).toMatch(new RegExp(`^v2/${step}@`));
    }
    expect(v2.version).toMatch(/^v2\+/);
    expect(v2.version).not.toBe(v1.version);
  });
});
