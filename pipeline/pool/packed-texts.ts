/**
 * Texts shipped to worker threads as two transferable typed arrays (UTF-8 bytes and end offsets) instead of
 * an array of strings, which structured clone would copy string by string.
 */
export interface PackedTexts {
  readonly bytes: Uint8Array;
  /** offsets[i] is the end of text i in `bytes`; text i starts at offsets[i-1] (or 0). */
  readonly offsets: Uint32Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function packTexts(texts: readonly string[]): PackedTexts {
  let capacity = 0;
  for (const text of texts) capacity += text.length * 3; // UTF-8 needs at most 3 bytes per UTF-16 unit
  const bytes = new Uint8Array(capacity);
  const offsets = new Uint32Array(texts.length);
  let end = 0;
  for (let i = 0; i < texts.length; i++) {
    end += encoder.encodeInto(texts[i]!, bytes.subarray(end)).written;
    offsets[i] = end;
  }
  // Copy down to the used length so the transfer does not ship the slack.
  return { bytes: bytes.slice(0, end), offsets };
}

export function textAt(packed: PackedTexts, index: number): string {
  const start = index === 0 ? 0 : packed.offsets[index - 1]!;
  return decoder.decode(packed.bytes.subarray(start, packed.offsets[index]!));
}

export function unpackTexts(packed: PackedTexts): string[] {
  return Array.from(packed.offsets, (_, i) => textAt(packed, i));
}

/** The buffers to pass as a transferList. */
export function transferablesOf(packed: PackedTexts): ArrayBuffer[] {
  return [packed.bytes.buffer as ArrayBuffer, packed.offsets.buffer as ArrayBuffer];
}
