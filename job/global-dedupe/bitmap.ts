/** One bit per document ordinal: n/8 bytes (250 KB per 2M documents). */
export class Bitmap {
  private readonly bits: Uint8Array;

  constructor(readonly size: number) {
    this.bits = new Uint8Array(Math.ceil(size / 8));
  }

  has(i: number): boolean {
    return (this.bits[i >>> 3]! & (1 << (i & 7))) !== 0;
  }

  set(i: number): void {
    this.bits[i >>> 3]! |= 1 << (i & 7);
  }

  get bytes(): number {
    return this.bits.byteLength;
  }
}
