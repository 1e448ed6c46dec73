import { describe, expect, it } from 'vitest';
import { countWords, lengthFilter } from '../operators/length-filter.js';

const ctx = { signal: new AbortController().signal, count: () => {} };

describe('countWords', () => {
  it('counts runs of non-space characters, whatever separates them', () => {
    expect(countWords('')).toBe(0);
    expect(countWords('   ')).toBe(0);
    expect(countWords('one')).toBe(1);
    expect(countWords('  two words  ')).toBe(2);
    expect(countWords('tabs\tand\nnew\r\nlines')).toBe(4);
    expect(countWords('non\u00a0breaking\u2003em\u3000ideographic\u2028line')).toBe(5);
    expect(countWords('naïve café — 日本語 🧪')).toBe(5);
  });

  it('agrees with a split on whitespace for real-looking text', () => {
    const text = 'The quick, brown fox\tjumps over\nthe lazy dog. '.repeat(50);
    expect(countWords(text)).toBe(text.split(/\s+/).filter(Boolean).length);
  });
});

describe('lengthFilter', () => {
  const filter = lengthFilter<{ text: string }>({ minWords: 2, maxWords: 3 });

  it('drops too short and too long documents with their reasons, keeps the rest', () => {
    expect(filter.process({ text: 'one' }, ctx)).toEqual({ kind: 'drop', reason: 'too_short' });
    expect(filter.process({ text: 'one two' }, ctx)).toMatchObject({ kind: 'emit' });
    expect(filter.process({ text: 'one two three' }, ctx)).toMatchObject({ kind: 'emit' });
    expect(filter.process({ text: 'one two three four' }, ctx)).toEqual({ kind: 'drop', reason: 'too_long' });
  });

  it('rejects a window whose minimum is above its maximum', () => {
    expect(() => lengthFilter({ minWords: 10, maxWords: 5 })).toThrow(RangeError);
  });
});
