import { describe, expect, it } from 'vitest';
import { constraintClauses, countConstraints } from '../operators/constraint-count.js';

const cues = (instruction: string): string[] =>
  constraintClauses(instruction).map((c) => c.requirement ?? c.types.join('+'));

describe('countConstraints', () => {
  it('counts 0 for a plain task or question', () => {
    for (const plain of [
      'Explain photosynthesis.',
      'What are the most effective ways to deal with stress?',
      'What should I do if my laptop overheats?',
      'Write a story about a lost dog finding its way home.',
    ]) {
      expect(countConstraints(plain), plain).toBe(0);
    }
  });

  it('counts each typed constraint of a clause, and one constraint per tagged clause and type', () => {
    expect(
      countConstraints(
        'Write a formal email to a client, under 150 words, in Spanish, without mentioning prices.',
      ),
    ).toBe(5);
  });

  it('grows with every constraint added, also when all are of one type', () => {
    const levels = [
      'What are the most effective ways to deal with stress?',
      'What are the most effective ways to deal with stress, presented in the soothing style of Mr. Rogers?',
      'What are the most effective ways to deal with stress, presented in the soothing style of Mr. Rogers? Additionally, craft the response with a touch of humor.',
      'What are the most effective ways to deal with stress, presented in the soothing style of Mr. Rogers? Additionally, craft the response with a touch of humor. Moreover, act as a Victorian detective.',
    ];
    expect(levels.map((l) => countConstraints(l))).toEqual([0, 1, 2, 3]);
  });

  it('counts requirements phrased without a cue word', () => {
    expect(
      cues(
        'Explain how tides work. Additionally, describe the role of the moon. Make sure the answer stays short. Limit your discussion to the Atlantic.',
      ),
    ).toEqual(['additive', 'requirement', 'command']);
  });

  it('counts a fact or demand marked as added ("also", "another")', () => {
    expect(
      cues(
        "My project has a folder named 'src'. Imagine you also have a folder named 'utils'. Do you understand?",
      ),
    ).toEqual(['premise', 'prior_condition']);
    expect(cues('Summarize the report. Its appendix is also relevant.')).toEqual(['additive']);
    expect(cues('In the kitchen, I put another cup on the tray. Where is the diamond?')).toEqual([
      'additive',
    ]);
  });

  it('counts premises about the asker and items of a list of conditions', () => {
    expect(cues('I have a small child at home. How can I work from home productively?')).toEqual(['premise']);
    expect(
      countConstraints(
        'List three fruits that satisfy the following conditions: 1. not red; 2. grown in Asia; 3. sold dried.',
      ),
    ).toBe(3);
    expect(
      countConstraints(
        'Could you list three more dairy foods that are:\n\nnot cheese;\nnot from Europe;\nsuitable for children',
      ),
    ).toBe(3);
    // A numbered passage is material, not conditions.
    expect(
      countConstraints('[Text] 1. The Mill is a pub. 2. The Eagle serves Chinese food. Extract the names.'),
    ).toBe(0);
  });

  it('does not count modals inside questions or statements about third parties', () => {
    expect(countConstraints('Should cities ban cars, and why?')).toBe(0);
    expect(
      countConstraints('Consumers should buy local food, the minister said. Summarize the article.'),
    ).toBe(0);
  });

  it('finishes on a long rule of dashes', () => {
    expect(countConstraints(`Notes\n${'-'.repeat(200)}\nExplain photosynthesis.`)).toBe(0);
  });
});
