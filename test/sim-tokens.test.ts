import { describe, expect, it } from 'vitest';
import { chatTokens, countChatTokens, countTokens, tokenize } from '../llm/simulator/tokens.js';

const TEXT =
  "Sourdough rises because wild yeasts and lactobacilli ferment the flour's sugars, releasing CO2 (about 0.5 L " +
  'per 100 g) that the gluten network traps.\n\nFeed the starter daily: otherwise its acidity climbs.';

describe('simulator tokenizer', () => {
  it('counts what it tokenizes, and the tokens spell the text back', () => {
    expect(countTokens(TEXT)).toBe(tokenize(TEXT).length);
    expect(tokenize(TEXT).join('')).toBe(TEXT);
    expect(countTokens('')).toBe(0);
  });

  it('gives frequent English words one token each, with their leading space', () => {
    expect(tokenize('the man and the school')).toEqual(['the', ' man', ' and', ' the', ' school']);
    expect(countTokens(' information about people')).toBe(3);
  });

  it('is deterministic and splits long rare words into several tokens', () => {
    expect(countTokens(' antidisestablishmentarianism')).toBeGreaterThan(3);
    expect(tokenize(TEXT)).toEqual(tokenize(TEXT));
  });

  it('tokenizes a text that extends another as the other, up to the piece where they differ', () => {
    const shorter = tokenize(TEXT);
    const longer = tokenize(`${TEXT} And then it bakes.`);
    expect(longer.slice(0, shorter.length)).toEqual(shorter);
  });

  it('lays a chat out with template tokens, counted in the prompt', () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: TEXT },
    ];
    expect(chatTokens(messages)).toHaveLength(countChatTokens(messages));
    expect(countChatTokens(messages)).toBe(5 + 2 * 5 + countTokens('Be brief.') + countTokens(TEXT));
  });
});
