/** Slots start at 2^16 and double when more than MAX_LOAD of them are used. */
const INITIAL_CAPACITY = 1 << 16;
const MAX_LOAD = 0.75;
/** Uint32 words per slot: key high half, key low half, ordinal + 1 (0 marks an empty slot). */
const WORDS = 3;

/**
 * A set of 64-bit keys (two 32-bit halves), each mapped to the ordinal of the document that brought it:
 * open addressing with linear probing in one Uint32Array, 12 bytes a slot. With load between 0.375 and 0.75,
 * a key costs 16-32 bytes, against ~100 for a Map of hex strings. The high half picks the slot, so it must be
 * well mixed (hash64Into's halves are).
 */
export class KeyTable {
  private slots: Uint32Array;
  private mask: number;
  private count = 0;

  constructor(capacity = INITIAL_CAPACITY) {
    let size = INITIAL_CAPACITY;
    while (size * MAX_LOAD < capacity) size *= 2;
    this.slots = new Uint32Array(size * WORDS);
    this.mask = size - 1;
  }

  get size(): number {
    return this.count;
  }

  get bytes(): number {
    return this.slots.byteLength;
  }

  /** The ordinal stored with key (hi, lo), or -1. */
  find(hi: number, lo: number): number {
    const at = this.slotOf(hi, lo) * WORDS;
    return this.slots[at + 2]! - 1;
  }

  /** Stores key (hi, lo) with `ordinal`; the key must not be present yet. */
  add(hi: number, lo: number, ordinal: number): void {
    if (this.count + 1 > (this.mask + 1) * MAX_LOAD) this.grow();
    const at = this.slotOf(hi, lo) * WORDS;
    if (this.slots[at + 2] !== 0) throw new Error('key is already in the table');
    this.slots[at] = hi;
    this.slots[at + 1] = lo;
    this.slots[at + 2] = ordinal + 1;
    this.count++;
  }

  /** The slot holding key (hi, lo), or the empty slot where it would go. */
  private slotOf(hi: number, lo: number): number {
    let slot = hi & this.mask;
    for (;;) {
      const at = slot * WORDS;
      if (this.slots[at + 2] === 0) return slot;
      if (this.slots[at] === hi >>> 0 && this.slots[at + 1] === lo >>> 0) return slot;
      slot = (slot + 1) & this.mask;
    }
  }

  private grow(): void {
    const old = this.slots;
    const size = (this.mask + 1) * 2;
    this.slots = new Uint32Array(size * WORDS);
    this.mask = size - 1;
    for (let at = 0; at < old.length; at += WORDS) {
      if (old[at + 2] === 0) continue;
      let slot = old[at]! & this.mask;
      while (this.slots[slot * WORDS + 2] !== 0) slot = (slot + 1) & this.mask;
      this.slots.set(old.subarray(at, at + WORDS), slot * WORDS);
    }
  }
}
