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
  // Size exactly (Buffer.byteLength is native and cheap) so nothing is over-allocated or copied twice.
  let size = 0;
  for (const text of texts) size += Buffer.byteLength(text, 'utf8');
  const bytes = new Uint8Array(size);
  const offsets = new Uint32Array(texts.length);
  let end = 0;
  for (let i = 0; i < texts.length; i++) {
    end += encoder.encodeInto(texts[i]!, bytes.subarray(end)).written;
    offsets[i] = end;
  }
  return { bytes, offsets };
}

/** The UTF-8 bytes of text `index`, as a view into the packed buffer (no copy). */
export function bytesAt(packed: PackedTexts, index: number): Uint8Array {
  const start = index === 0 ? 0 : packed.offsets[index - 1]!;
  return packed.bytes.subarray(start, packed.offsets[index]!);
}

export function textAt(packed: PackedTexts, index: number): string {
  return decoder.decode(bytesAt(packed, index));
}

export function unpackTexts(packed: PackedTexts): string[] {
  return Array.from(packed.offsets, (_, i) => textAt(packed, i));
}

/** The buffers to pass as a transferList. */
export function transferablesOf(packed: PackedTexts): ArrayBuffer[] {
  return [packed.bytes.buffer as ArrayBuffer, packed.offsets.buffer as ArrayBuffer];
}
