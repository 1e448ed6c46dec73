import { cp, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseRunConfig } from '../job/config.js';
import { parseStructured } from '../llm/structured.js';
import type { ChatMessage, ChatOptions, ChatResult, LlmClient } from '../llm/types.js';
import { generate } from '../operators/air/generate.js';
import { merge } from '../operators/air/merge.js';
import { loadPromptSet } from '../operators/air/prompts.js';
import { DEFAULT_REFINE, REFERENCE_CALLS, composeInstruction, refine } from '../operators/air/refine.js';
import { refineOptionsSchema } from '../operators/air/refine-options.js';
import {
  judgeSchema,
  matchConstraintType,
  readComplexityQuality,
  readDuplicate,
  readInstruction,
  readJudge,
  readScore,
} from '../operators/air/replies.js';
import { StepRunner } from '../operators/air/steps.js';
import type { Refined, Seeded } from '../operators/air/types.js';
import { DEFAULT_VALIDITY, firstBrokenRule } from '../operators/air/validity-filter.js';
import { CONSTRAINT_TYPES, type ConstraintType } from '../operators/constraint-tagger.js';
import { contentWords, overlapCoefficient, restatedConstraint } from '../operators/air/constraint-overlap.js';
import type { OperatorContext, Outcome } from '../pipeline/operator.js';
import { tempDir } from './helpers/duckdb.js';

const ALL_TYPES = CONSTRAINT_TYPES.map((t) => t.id);

describe('AIR reply readers', () => {
  it('reads a judge proposal and maps type names to the canonical list, not by exact string', () => {
    const reading = readJudge(
      {
        analysis: 'a',
        type: 'Tone & Style',
        constraint: 'Write in a warm, encouraging tone suitable for beginners.',
      },
      ALL_TYPES,
    );
    expect(reading).toMatchObject({ kind: 'constraint', type: 'tone_style' });
    expect(matchConstraintType('target audience constraint')).toBe('target_audience');
    expect(matchConstraintType('DATA_FORMAT')).toBe('data_format');
    expect(matchConstraintType('Inclusion of examples')).toBe('inclusion');
    expect(matchConstraintType('style')).toBe('tone_style');
    expect(matchConstraintType('astrology')).toBeNull();
    expect(matchConstraintType('')).toBeNull();
  });

  it('treats "none" and an empty proposal as no constraint', () => {
    expect(readJudge({ analysis: 'same', type: 'none', constraint: '' }, ALL_TYPES).kind).toBe('none');
    expect(readJudge({ analysis: 'same', type: 'None.', constraint: 'x' }, ALL_TYPES).kind).toBe('none');
    expect(readJudge({ analysis: 'same', type: '', constraint: '' }, ALL_TYPES).kind).toBe('none');
  });

  it('rejects constraints outside 3-26 words, leaking references, used types and unknown types', () => {
    const why = (value: unknown, allowed: readonly ConstraintType[] = ALL_TYPES): string => {
      const reading = readJudge(value, allowed);
      return reading.kind === 'invalid' ? reading.why : reading.kind;
    };
    expect(why({ analysis: '', type: 'Inclusion', constraint: 'Add examples' })).toMatch(/2 words/);
    expect(why({ analysis: '', type: 'Inclusion', constraint: 'word '.repeat(27) })).toMatch(/27 words/);
    expect(
      why({ analysis: '', type: 'Inclusion', constraint: 'Include the three dates given in Output 1.' }),
    ).toMatch(/refers to the outputs/);
    expect(
      why({
        analysis: '',
        type: 'Exclusion',
        constraint: 'Do not repeat the original instruction in the answer.',
      }),
    ).toMatch(/refers to/);
    expect(
      why({ analysis: '', type: 'Citation', constraint: 'Cite at least two named sources inline.' }, [
        'inclusion',
      ]),
    ).toMatch(/already used/);
    expect(
      why({ analysis: '', type: 'Astrology', constraint: 'Mention the star sign of every person.' }),
    ).toMatch(/not a constraint type/);
    expect(why({ analysis: '', type: 'Citation', constraint: '' })).toMatch(/empty/);
  });

  it('survives replies of the wrong shape without throwing past its own error', () => {
    expect(readJudge(null, ALL_TYPES).kind).toBe('none');
    expect(readJudge('text', ALL_TYPES).kind).toBe('none');
    expect(readJudge({ type: 7, constraint: ['a'] }, ALL_TYPES).kind).toBe('none');
    expect(() => readInstruction({})).toThrow(/no instruction/);
    expect(() => readInstruction({ instruction: '   ' })).toThrow(/no instruction/);
    expect(readInstruction({ instruction: ' "Explain tides to a child." ' })).toBe(
      'Explain tides to a child.',
    );
    expect(() => readScore({ score: 6 }, 0, 5)).toThrow(/0-5/);
    expect(() => readScore({ score: 2.5 }, 0, 5)).toThrow(/integer/);
    expect(() => readScore({ score: '4' }, 0, 5)).toThrow();
    expect(readScore({ score: 0 }, 0, 3)).toBe(0);
    expect(() => readDuplicate({ duplicate: 'no' })).toThrow(/boolean/);
    expect(() => readComplexityQuality({ complexity: 0, quality: 5 })).toThrow(/1-10/);
  });

  it('the structured layer refuses truncated and malformed judge replies, and finds JSON in fences', () => {
    const schema = judgeSchema(['inclusion', 'citation']).schema;
    const full = JSON.stringify({ analysis: 'a', type: 'Citation', constraint: 'Cite two sources by name.' });
    expect(parseStructured(full, schema).ok).toBe(true);
    expect(parseStructured(full.slice(0, full.length - 5), schema).ok).toBe(false);
    expect(parseStructured('{"analysis": "a", "type": "Emotion", "constraint": "x"}', schema).ok).toBe(false);
    expect(parseStructured(`Sure!\n\`\`\`json\n${full}\n\`\`\``, schema).ok).toBe(true);
    expect(parseStructured('', schema).ok).toBe(false);
  });
});

describe('the lexical duplicate check of constraints', () => {
  it('compares content words, not the words every constraint is made of', () => {
    expect([...contentWords('The answer must include three examples.')]).toEqual(['example']);
    const a = contentWords('Include two worked examples of tidal ranges.');
    expect(
      overlapCoefficient(a, contentWords('The response should give worked examples of tidal range.')),
    ).toBe(1);
    expect(overlapCoefficient(a, contentWords('Write for an audience of marine biology students.'))).toBe(0);
    expect(overlapCoefficient(a, new Set())).toBe(0);
  });

  it('names the first accepted constraint a proposal restates, at the threshold', () => {
    const accepted = [
      { text: 'Address the explanation to pupils studying geography at school.' },
      { text: 'Mention the role of the sun alongside the moon in spring tides.' },
    ];
    expect(restatedConstraint('Explain the role of the sun and moon in spring tides.', accepted, 0.6)).toBe(
      1,
    );
    // 2 of the proposal's 5 content words are shared: a duplicate at threshold 0.4, not at 0.6.
    const partly = 'Mention the sun, storms and coastal erosion.';
    expect(overlapCoefficient(contentWords(partly), contentWords(accepted[1]!.text))).toBeCloseTo(2 / 5);
    expect(restatedConstraint(partly, accepted, 0.6)).toBe(-1);
    expect(restatedConstraint(partly, accepted, 0.4)).toBe(1);
    expect(restatedConstraint('Compare spring tides with neap tides in a table.', accepted, 0.6)).toBe(-1);
  });

  it('never takes a prohibition for a restatement of the requirement it reverses', () => {
    const accepted = [{ text: 'Mention the tidal ranges of the coastal towns by name.' }];
    expect(
      restatedConstraint('Do not mention tidal ranges or any coastal towns by name.', accepted, 0.6),
    ).toBe(-1);
    expect(restatedConstraint("Don't name the coastal towns or their tidal ranges.", accepted, 0.6)).toBe(-1);
    expect(restatedConstraint('Name the coastal towns and give their tidal ranges.', accepted, 0.6)).toBe(0);
    const forbidden = [{ text: 'Avoid naming any coastal town.' }];
    expect(restatedConstraint('Do not name coastal towns.', forbidden, 0.6)).toBe(0);
    expect(() => restatedConstraint('x', accepted, 0)).toThrow(RangeError);
  });

  it('is refused where the judge does not see the accepted constraints', () => {
    expect(() =>
      refine(runner(new ScriptedLlm({ judge: [] })), { ...DEFAULT_REFINE, judgeSeesRefined: false }),
    ).toThrow(/needs judgeSeesRefined/);
    expect(() =>
      parseRunConfig({ input: 'x', output: 'y', air: { refine: { judgeSeesRefined: false } } }),
    ).toThrow(/judgeSeesRefined: false needs air\.refine\.duplicateCheck: llm/);
    expect(
      parseRunConfig({
        input: 'x',
        output: 'y',
        air: { refine: { judgeSeesRefined: false, duplicateCheck: 'llm' } },
      }).air.refine.duplicateCheck,
    ).toBe('llm');
    expect(() =>
      parseRunConfig({ input: 'x', output: 'y', air: { refine: { duplicateOverlap: 0 } } }),
    ).toThrow();
  });

  it('takes its options, defaults and cross-field rules from one schema, spelled per reader', () => {
    const { concurrency: _concurrency, ...options } = DEFAULT_REFINE;
    expect(parseRunConfig({ input: 'x', output: 'y' }).air.refine).toEqual(options);
    expect(refineOptionsSchema.parse({})).toEqual(options);
    const noCheck = { ...DEFAULT_REFINE, studentCheck: false };
    expect(() => refine(runner(new ScriptedLlm({ judge: [] })), noCheck)).toThrow(
      new RangeError('refine: gateOnStudentCheck needs studentCheck'),
    );
    expect(() =>
      parseRunConfig({ input: 'x', output: 'y', air: { refine: { studentCheck: false } } }, 'run.yaml'),
    ).toThrow('run.yaml: air.refine.gateOnStudentCheck needs air.refine.studentCheck');
    expect(() => refine(runner(new ScriptedLlm({ judge: [] })), { ...DEFAULT_REFINE, gateScore: 4 })).toThrow(
      /refine: gateScore: /,
    );
  });
});

describe('AIR prompt templates', () => {
  it('render every step with its placeholders filled and carry a content-hashed version', () => {
    const prompts = loadPromptSet('v1');
    expect(prompts.version).toMatch(/^v1\+[0-9a-f]{12}$/);
    const values = {
      document: 'DOC',
      instruction: 'INSTR',
      reference: 'REF',
      answer: 'ANS',
      types: '- Inclusion',
      constraints: '1. C',
      constraint: 'C',
      examples: 'EX',
      response: 'RESP',
    };
    for (const step of Object.keys(prompts.stepVersions)) {
      const messages = prompts.render(step, values);
      const text = messages.map((m) => m.content).join('\n');
      expect(text, step).not.toMatch(/\{\{/);
      expect(messages.at(-1)!.role).toBe('user');
    }
    expect(() => prompts.render('judge', { instruction: 'x' })).toThrow(/needs a value for \{\{/);
    expect(prompts.mergeExample(1)).toContain('Merged:');
    expect(prompts.mergeExample(3).match(/^\d\./gm)).toHaveLength(3);
    expect(prompts.mergeExample(9).match(/^\d\./gm)).toHaveLength(5);
  });

  it('version each step by its own files: a new template or an edited one changes no other step', async () => {
    const bundled = fileURLToPath(new URL('../operators/air/prompts/v1/', import.meta.url));
    const { dir, cleanup } = await tempDir('air-prompts-');
    try {
      await cp(bundled, dir, { recursive: true });
      const before = loadPromptSet('v1', dir);
      expect(before.stepVersions).toEqual(loadPromptSet('v1').stepVersions);
      expect(before.stepVersions['judge-check']).toMatch(/^v1\/judge-check@[0-9a-f]{12}$/);
      // A template for a step no run uses yet.
      await writeFile(path.join(dir, 'rewrite.md'), '## user\nRewrite {{instruction}}.\n');
      const added = loadPromptSet('v1', dir);
      expect(added.stepVersions).toEqual({
        ...before.stepVersions,
        rewrite: expect.stringMatching(/^v1\/rewrite@/),
      });
      expect(added.versionOf(Object.keys(before.stepVersions))).toBe(before.version);
      // An edited template changes its own step's version, and a run's only if the run uses that step.
      await writeFile(path.join(dir, 'duplicate.md'), '## user\n{{constraints}} / {{constraint}}\n');
      const edited = loadPromptSet('v1', dir);
      const changed = Object.keys(before.stepVersions).filter(
        (step) => edited.stepVersions[step] !== before.stepVersions[step],
      );
      expect(changed).toEqual(['duplicate']);
      const lexicalRun = ['polish', 'student', 'judge', 'judge-check', 'check'] as const;
      expect(edited.versionOf(lexicalRun)).toBe(before.versionOf(lexicalRun));
      expect(edited.versionOf([...lexicalRun, 'duplicate'])).not.toBe(
        before.versionOf([...lexicalRun, 'duplicate']),
      );
      expect(before.versionOf(lexicalRun)).toMatch(/^v1\+[0-9a-f]{12}$/);
    } finally {
      await cleanup();
    }
  });

  it("a run's prompt version names the steps its operators declare, and only those can be called", async () => {
    const prompts = loadPromptSet('v1');
    const folded = runner(new ScriptedLlm({ judge: [] }));
    refine(folded);
    expect(folded.promptVersion).toBe(
      prompts.versionOf(['polish', 'student', 'judge', 'judge-check', 'check']),
    );
    const reference = runner(new ScriptedLlm({ judge: [] }));
    refine(reference, { ...DEFAULT_REFINE, ...REFERENCE_CALLS });
    expect(reference.promptVersion).toBe(
      prompts.versionOf(['polish', 'student', 'judge', 'duplicate', 'check']),
    );
    const at = { docId: 'd', iteration: 0, calls: [], signal: new AbortController().signal };
    await expect(reference.text('answer', { instruction: 'x' }, at)).rejects.toThrow(/never declared/);
  });
});

// ---- the refinement loop, driven by a scripted client ---------------------------------------------------
// A scripted LlmClient answers each step from a plan, so every stop rule can be reached on purpose; the
// end-to-end test against the simulator (air-run.test.ts) covers the real HTTP path.

interface Plan {
  judge: Array<{ type: string; constraint: string } | 'none' | 'garbage'>;
  duplicate?: boolean[];
  /** 0-3 checks in the order they are asked, by a check call or inside a judge call. */
  check?: number[];
  /** Judge-and-check replies leave the check out (a server that ignores the schema). */
  checkMissing?: boolean;
  score?: number;
  instruction?: string;
}

class ScriptedLlm implements LlmClient {
  readonly calls: Array<{ role: string; schema: string | undefined; messages: readonly ChatMessage[] }> = [];
  private judged = 0;
  private duplicates = 0;
  private checks = 0;

  constructor(private readonly plan: Plan) {}

  async chat(role: string, messages: readonly ChatMessage[], options: ChatOptions = {}): Promise<ChatResult> {
    const schema = options.schema?.name;
    this.calls.push({ role, schema, messages });
    let json: unknown;
    let text = '';
    switch (schema) {
      case 'air_instruction':
        json = { instruction: this.plan.instruction ?? 'Explain how tides form and why they vary.' };
        break;
      case 'air_instruction_score':
        json = { reason: 'r', score: this.plan.score ?? 5 };
        break;
      case 'air_judge':
      case 'air_judge_check': {
        const step = this.plan.judge[this.judged++] ?? 'none';
        if (step === 'garbage') {
          const error = Object.assign(new Error('the reply is not JSON (after 2 repairs)'), {
            code: 'AIR_LLM_INVALID_OUTPUT',
          });
          throw error;
        }
        const reply: Record<string, unknown> =
          step === 'none' ? { analysis: 'same', type: 'none', constraint: '' } : { analysis: 'gap', ...step };
        json =
          schema === 'air_judge_check' && !this.plan.checkMissing
            ? { check_reason: 'r', check: this.plan.check?.[this.checks++] ?? 1, ...reply }
            : reply;
        break;
      }
      case 'air_duplicate':
        json = { duplicate: this.plan.duplicate?.[this.duplicates++] ?? false, reason: 'r' };
        break;
      case 'air_check':
        json = { reason: 'r', score: this.plan.check?.[this.checks++] ?? 1 };
        break;
      case 'air_merge':
        json = { instruction: 'Explain how tides form, for children, in three short paragraphs.' };
        break;
      case 'air_score':
        json = { reason: 'r', complexity: 6, quality: 7 };
        break;
      default:
        text = `${role} answer ${this.calls.length}: tides rise and fall twice a day because of the moon.`;
    }
    if (json !== undefined) text = JSON.stringify(json);
    return {
      role,
      text,
      json,
      finishReason: 'stop',
      usage: { promptTokens: 10, completionTokens: 5 },
      model: `${role}-model`,
      latencyMs: 1,
      cached: false,
      attempts: 1,
    };
  }
}

function runner(llm: LlmClient): StepRunner {
  return new StepRunner(llm, loadPromptSet('v1'), { seed: 1 });
}

function context(): OperatorContext & { counts: Record<string, number> } {
  const counts: Record<string, number> = {};
  return {
    counts,
    signal: new AbortController().signal,
    count(name: string, value = 1) {
      counts[name] = (counts[name] ?? 0) + value;
    },
  };
}

const SEED: Seeded = {
  doc: { id: 'doc-1', sourceFile: 's.parquet', sourceRow: 3, meta: {}, words: 16 },
  text: 'Tides are caused by the gravitational pull of the moon and the sun on the oceans.',
  initialInstruction: 'Explain how tides form.',
  initialScore: 5,
  calls: [],
};

/** A distinct constraint per type, so none restates another. */
const TEXT_OF_TYPE: Readonly<Record<string, string>> = {
  'Data format': 'Present the key figures as a table with one row for each tidal phase.',
  'Document structure': 'Organise the reply into three titled sections, ending with a brief summary.',
  'Domain-specific format': 'Follow the conventions of a nautical almanac entry for dates and heights.',
  Inclusion: 'Mention the role of the sun alongside the moon in forming spring tides.',
  Exclusion: 'Avoid any discussion of ocean currents driven by wind or temperature.',
  Citation: 'Cite a named oceanographic source for every measured figure you state.',
  'Prior condition': 'Assume the reader already knows basic Newtonian gravity before starting.',
  'Target audience': 'Address the explanation to twelve-year-old pupils studying geography at school.',
  'Tone and style': 'Adopt a calm, encyclopedic register throughout, free of jokes or slang.',
  Emotion: 'Convey wonder about the rhythm of the sea in the closing sentence.',
  'Linguistic characteristics': 'Write every sentence in the passive voice and keep sentences short.',
  Multilingual: 'Give the French term for each kind of tide in parentheses after it.',
};

const c = (
  type: string,
  words = TEXT_OF_TYPE[type] ?? `A ${type} requirement stated in ten plain words here.`,
) => ({
  type,
  constraint: words,
});

async function refineWith(
  plan: Plan,
  options = DEFAULT_REFINE,
): Promise<{ out: Outcome<Refined>; llm: ScriptedLlm; counts: Record<string, number> }> {
  const llm = new ScriptedLlm(plan);
  const ctx = context();
  const out = await refine(runner(llm), options).process(SEED, ctx);
  return { out, llm, counts: ctx.counts };
}

function refined(out: Outcome<Refined>): Refined {
  if (out.kind !== 'emit') throw new Error(`expected emit, got ${out.kind}`);
  return out.values[0]!;
}

describe('refine', () => {
  it('stops at maxIterations with one constraint per iteration, each type once, and depth = constraints', async () => {
    const { out, llm } = await refineWith({
      judge: [c('Inclusion'), c('Target audience'), c('Citation'), c('Emotion'), c('Tone and style')],
    });
    const r = refined(out);
    expect(r.stopReason).toBe('max_iterations');
    expect(r.constraints.map((x) => x.type)).toEqual([
      'inclusion',
      'target_audience',
      'citation',
      'emotion',
      'tone_style',
    ]);
    expect(r.constraints.map((x) => x.iteration)).toEqual([1, 2, 3, 4, 5]);
    expect(new Set(r.constraints.map((x) => x.type)).size).toBe(5);
    expect(r.history.every((h) => h.verdict === 'accepted')).toBe(true);
    // polish + first answer, then judge + student per round (each round's check rides on the next judge
    // call), and one check call of its own for the fifth constraint, which no judge call follows.
    expect(llm.calls).toHaveLength(2 + 5 * 2 + 1);
    expect(llm.calls.map((x) => x.schema ?? x.role)).toEqual([
      'guidance',
      'student',
      'air_judge',
      'student',
      ...Array.from({ length: 4 }, () => ['air_judge_check', 'student']).flat(),
      'air_check',
    ]);
    expect(r.calls).toHaveLength(llm.calls.length);
    expect(llm.calls.filter((x) => x.role === 'student')).toHaveLength(6);
  });

  it('with the reference call layout, checks and duplicate checks are calls of their own, with the same result', async () => {
    const plan = {
      judge: [c('Inclusion'), c('Target audience'), c('Citation'), c('Emotion'), c('Tone and style')],
      check: [1, 2, 3, 0, 1],
    };
    const folded = await refineWith(plan);
    const reference = await refineWith(plan, { ...DEFAULT_REFINE, ...REFERENCE_CALLS });
    // polish + first answer, then judge + student + check, plus a duplicate check from iteration 2 on.
    expect(reference.llm.calls).toHaveLength(2 + 5 * 3 + 4);
    expect(folded.llm.calls).toHaveLength(2 + 5 * 2 + 1);
    const strip = (r: Refined) => ({ ...r, calls: [], history: r.history.map((h) => h.verdict) });
    const a = refined(folded.out);
    const b = refined(reference.out);
    expect(a.history.map((h) => [h.verdict, h.studentCheck])).toEqual([
      ['accepted', 1],
      ['accepted', 2],
      ['gated', 3],
      ['accepted', 0],
      ['accepted', 1],
    ]);
    expect(strip(a)).toEqual(strip(b));
    // The one documented difference: after the gated round 3, the folded judge had already read round 3's
    // answer (it graded it); the reference judge of round 4 reads the last accepted answer, round 2's.
    expect(a.history[3]!.studentAnswer).toBe(a.history[2]!.revisedAnswer);
    expect(b.history[3]!.studentAnswer).toBe(b.history[1]!.revisedAnswer);
  });

  it('asks the pending check with the next judge call, on the answer to the instruction that has it', async () => {
    const { out, llm } = await refineWith({ judge: [c('Inclusion'), c('Citation'), 'none'], check: [2, 1] });
    const r = refined(out);
    expect(r.history.map((h) => h.verdict)).toEqual(['accepted', 'accepted', 'no_constraint']);
    const judgeCalls = llm.calls.filter((x) => x.schema?.startsWith('air_judge'));
    const second = judgeCalls[1]!.messages.map((m) => m.content).join('\n');
    expect(second).toContain(TEXT_OF_TYPE['Inclusion']);
    expect(second).toContain(
      composeInstruction(SEED.initialInstruction, [{ text: TEXT_OF_TYPE['Inclusion']! }]),
    );
    expect(second).toContain(r.history[0]!.revisedAnswer!);
    expect(r.history[1]!.studentAnswer).toBe(r.history[0]!.revisedAnswer);
    // No check call at all: both checks came with judge replies.
    expect(llm.calls.some((x) => x.schema === 'air_check')).toBe(false);
  });

  it('makes good a judge reply without a usable check with a check call of its own', async () => {
    const missing = await refineWith({
      judge: [c('Inclusion'), c('Citation')],
      check: [3, 1],
      checkMissing: true,
    });
    const r = refined(missing.out);
    expect(r.history.map((h) => [h.verdict, h.studentCheck])).toEqual([
      ['gated', 3],
      ['accepted', 1],
      ['no_constraint', null],
    ]);
    expect(missing.llm.calls.filter((x) => x.schema === 'air_check')).toHaveLength(2);
    // An unparseable judge reply stops the loop, and the pending constraint is still checked first.
    const garbage = await refineWith({ judge: [c('Inclusion'), 'garbage'], check: [2] });
    const g = refined(garbage.out);
    expect(g.history.map((h) => h.verdict)).toEqual(['accepted', 'invalid_constraint']);
    expect(g.constraints[0]!.studentCheck).toBe(2);
  });

  it('stops when the judge finds nothing; a document with no constraint is dropped with a reason', async () => {
    const { out, counts } = await refineWith({ judge: ['none'] });
    expect(out).toEqual({ kind: 'drop', reason: 'no_constraint_accepted' });
    expect(counts['stop:no_constraint']).toBe(1);
    const two = refined((await refineWith({ judge: [c('Inclusion'), 'none'] })).out);
    expect(two.stopReason).toBe('no_constraint');
    expect(two.constraints).toHaveLength(1);
  });

  it('stops on a duplicate, on an unparseable judge reply and on an invalid constraint', async () => {
    // The default check compares content words: a proposal restating an accepted constraint stops the loop.
    const restated = 'Mention how the sun, alongside the moon, forms the spring tides.';
    const lexical = await refineWith({ judge: [c('Inclusion'), c('Exclusion', restated)] });
    const dup = refined(lexical.out);
    expect(dup.stopReason).toBe('duplicate');
    expect(dup.history.map((h) => h.verdict)).toEqual(['accepted', 'duplicate']);
    expect(dup.history[1]!.note).toMatch(/restates constraint 1/);
    expect(lexical.llm.calls.some((x) => x.schema === 'air_duplicate')).toBe(false);
    // The reference's duplicate-check call, when asked for.
    const byLlm = await refineWith(
      { judge: [c('Inclusion'), c('Exclusion')], duplicate: [true] },
      { ...DEFAULT_REFINE, duplicateCheck: 'llm' },
    );
    expect(refined(byLlm.out).stopReason).toBe('duplicate');
    expect(byLlm.llm.calls.filter((x) => x.schema === 'air_duplicate')).toHaveLength(1);
    const garbage = refined((await refineWith({ judge: [c('Inclusion'), 'garbage'] })).out);
    expect(garbage.stopReason).toBe('invalid_constraint');
    const short = refined((await refineWith({ judge: [c('Inclusion'), c('Citation', 'Cite sources')] })).out);
    expect(short.stopReason).toBe('invalid_constraint');
    expect(short.history[1]!.note).toMatch(/2 words/);
  });

  it('gates out constraints the student already follows once asked, and keeps going', async () => {
    const { out, counts } = await refineWith({
      judge: [c('Inclusion'), c('Citation'), c('Emotion')],
      check: [3, 1, 2],
    });
    const r = refined(out);
    expect(r.history.map((h) => h.verdict)).toEqual(['gated', 'accepted', 'accepted', 'no_constraint']);
    expect(r.constraints.map((x) => x.type)).toEqual(['citation', 'emotion']);
    expect(counts['type_gated:inclusion']).toBe(1);
    // The gated proposal's type is spent: the judge may not offer it again.
    const off = refined(
      (
        await refineWith(
          { judge: [c('Inclusion'), c('Citation')], check: [3, 1] },
          { ...DEFAULT_REFINE, gateOnStudentCheck: false },
        )
      ).out,
    );
    expect(off.constraints).toHaveLength(2);
  });

  it('offers the judge only unused types, shows it the refined instruction, and stops when types run out', async () => {
    const twelve = CONSTRAINT_TYPES.map((t) => c(t.label));
    const { out, llm } = await refineWith({ judge: twelve }, { ...DEFAULT_REFINE, maxIterations: 20 });
    const r = refined(out);
    expect(r.stopReason).toBe('types_exhausted');
    expect(r.constraints).toHaveLength(12);
    const judgeCalls = llm.calls.filter((x) => x.schema?.startsWith('air_judge'));
    const last = judgeCalls
      .at(-1)!
      .messages.map((m) => m.content)
      .join('\n');
    expect(last).toContain(composeInstruction(SEED.initialInstruction, r.constraints.slice(0, 11)));
    expect(last).not.toContain('- Data format\n');
  });
});

describe('generate, merge and the validity filter', () => {
  it('generate drops low scores and instructions outside 3-50 words', async () => {
    const doc = { id: 'd', text: SEED.text, sourceFile: 's', sourceRow: 0, meta: {} };
    const low = await generate(runner(new ScriptedLlm({ judge: [], score: 3 }))).process(doc, context());
    expect(low).toEqual({ kind: 'drop', reason: 'low_score' });
    const long = await generate(
      runner(new ScriptedLlm({ judge: [], instruction: 'word '.repeat(51) })),
    ).process(doc, context());
    expect(long).toEqual({ kind: 'drop', reason: 'instruction_length' });
    const ok = await generate(runner(new ScriptedLlm({ judge: [] }))).process(doc, context());
    expect(ok.kind).toBe('emit');
  });

  it('merge answers only the depths reached: one row by default, one per depth on request', async () => {
    const base = refined((await refineWith({ judge: [c('Inclusion'), c('Citation'), c('Emotion')] })).out);
    const llm = new ScriptedLlm({ judge: [] });
    const deepest = await merge(runner(llm)).process(base, context());
    expect(deepest.kind === 'emit' && deepest.values.map((e) => e.depth)).toEqual([3]);
    expect(llm.calls).toHaveLength(2);
    const all = await merge(runner(llm), { depths: 'all', concurrency: 1 }).process(base, context());
    expect(all.kind === 'emit' && all.values.map((e) => [e.depth, e.constraints.length])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    if (all.kind === 'emit') for (const e of all.values) expect(firstBrokenRule(e)).toBeUndefined();
  });

  it('the validity filter names the rule each bad example breaks', async () => {
    const base = refined((await refineWith({ judge: [c('Inclusion')] })).out);
    const example = {
      ...base,
      depth: 1,
      instruction: 'Explain how tides form for children.',
      output: 'Tides rise and fall daily.',
    };
    expect(firstBrokenRule(example)).toBeUndefined();
    expect(firstBrokenRule({ ...example, instruction: 'Tides?' })).toBe('instruction_words');
    expect(firstBrokenRule({ ...example, instruction: 'w '.repeat(151) })).toBe('instruction_words');
    expect(firstBrokenRule({ ...example, output: 'Yes it does.' })).toBe('output_words');
    expect(firstBrokenRule({ ...example, depth: 2 })).toBe('depth_mismatch');
    expect(
      firstBrokenRule({
        ...example,
        constraints: [...example.constraints, example.constraints[0]!],
        depth: 2,
      }),
    ).toBe('type_repeated');
    expect(DEFAULT_VALIDITY.maxInstructionWords).toBe(150);
  });
});
