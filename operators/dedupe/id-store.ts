/** Bytes per text page; an id never straddles two pages. */
const PAGE_BITS = 20;
const PAGE_BYTES = 1 << PAGE_BITS;
/** Pages addressable by a 32-bit location (page * 2^20 + offset): 4 GiB of ids. */
const MAX_PAGES = 4096;
/** Ids per page of the location and length arrays. */
const SLOT_BITS = 16;
const SLOTS = 1 << SLOT_BITS;
/** Longest id in UTF-8 bytes (its length is stored in 16 bits). */
export const MAX_ID_BYTES = 0xffff;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The ids of kept documents, by ordinal (0, 1, 2, ... in order of `add`), packed as UTF-8 in 1 MiB pages:
 * an id costs its UTF-8 length plus 6 bytes (a 32-bit location and a 16-bit length). A Map or an array of
 * strings would cost ~50-100 bytes more per id in object headers. Pages are never copied on growth, so
 * memory grows by at most one page (or one slot page of 384 KiB) at a time.
 */
export class IdStore {
  private readonly pages: Uint8Array[] = [];
  private readonly locations: Uint32Array[] = [];
  private readonly lengths: Uint16Array[] = [];
  private used = PAGE_BYTES; // forces a first page
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Stores `id` and returns its ordinal. */
  add(id: string): number {
    const length = Buffer.byteLength(id, 'utf8');
    if (length > MAX_ID_BYTES) throw new RangeError(`id of ${length} bytes is longer than ${MAX_ID_BYTES}`);
    if (this.used + length > PAGE_BYTES) {
      if (this.pages.length === MAX_PAGES) throw new RangeError('ids exceed 4 GiB');
      this.pages.push(new Uint8Array(PAGE_BYTES));
      this.used = 0;
    }
    const page = this.pages.length - 1;
    encoder.encodeInto(id, this.pages[page]!.subarray(this.used, this.used + length));
    const ordinal = this.count++;
    const slotPage = ordinal >>> SLOT_BITS;
    if (slotPage === this.locations.length) {
      this.locations.push(new Uint32Array(SLOTS));
      this.lengths.push(new Uint16Array(SLOTS));
    }
    const slot = ordinal & (SLOTS - 1);
    this.locations[slotPage]![slot] = page * PAGE_BYTES + this.used;
    this.lengths[slotPage]![slot] = length;
    this.used += length;
    return ordinal;
  }

  get(ordinal: number): string {
    if (!(ordinal >= 0 && ordinal < this.count)) throw new RangeError(`no id with ordinal ${ordinal}`);
    const slot = ordinal & (SLOTS - 1);
    const location = this.locations[ordinal >>> SLOT_BITS]![slot]!;
    const start = location % PAGE_BYTES;
    const page = this.pages[(location - start) / PAGE_BYTES]!;
    return decoder.decode(page.subarray(start, start + this.lengths[ordinal >>> SLOT_BITS]![slot]!));
  }

  /** Bytes allocated (typed arrays only). */
  get bytes(): number {
    return this.pages.length * PAGE_BYTES + this.locations.length * SLOTS * 6;
  }
}
