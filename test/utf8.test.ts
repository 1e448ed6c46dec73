import { describe, expect, it } from 'vitest';
import { decodeUtf8, firstInvalidUtf8, invalidUtf8Preview } from '../pipeline/io/raw-string-column.js';
import { seededRandom } from '../pipeline/random.js';

describe('the UTF-8 check of raw text bytes', () => {
  it('agrees with the platform decoder on random and near-valid byte strings', () => {
    const random = seededRandom(7);
    const valid = new TextEncoder().encode('plain ascii, é, ✓, 𝄞 and more');
    let invalid = 0;
    for (let n = 0; n < 20_000; n++) {
      const bytes =
        n % 2 === 0
          ? Uint8Array.from({ length: 1 + Math.floor(random() * 12) }, () => Math.floor(random() * 256))
          : valid.map((b, i) => (i === n % valid.length ? Math.floor(random() * 256) : b));
      const decoded = decodeUtf8(bytes);
      expect(firstInvalidUtf8(bytes) === -1, `${Array.from(bytes)}`).toBe(decoded !== undefined);
      if (decoded === undefined) invalid++;
    }
    expect(invalid).toBeGreaterThan(5_000);
  });

  it('shows the bytes around the first invalid sequence as DuckDB does', () => {
    const bytes = new Uint8Array([...new TextEncoder().encode('say hi'), 0xff, 0xfe, 0x20, 0x6f, 0x6b]);
    expect(firstInvalidUtf8(bytes)).toBe(6);
    expect(invalidUtf8Preview(bytes)).toBe('say hi\\xFF\\xFE ok');
    // Overlong, surrogate and truncated sequences are invalid; a four-byte character is not.
    expect(firstInvalidUtf8(new Uint8Array([0xc0, 0xaf]))).toBe(0);
    expect(firstInvalidUtf8(new Uint8Array([0x41, 0xed, 0xa0, 0x80]))).toBe(1);
    expect(firstInvalidUtf8(new Uint8Array([0x41, 0xe2, 0x9c]))).toBe(1);
    expect(firstInvalidUtf8(new Uint8Array([0xf0, 0x9d, 0x84, 0x9e]))).toBe(-1);
  });
});
