import { jaccardEstimate } from './minhash.js';

export interface LshOptions {
  readonly bands: number;
  readonly rows: number;
}

/** 16 bands of 8 rows: candidate probability 1-(1-J^8)^16 is ~0.95 at J = 0.8, ~0.06 at J = 0.5. */
export const DEFAULT_LSH: LshOptions = { bands: 16, rows: 8 };

const TWO32 = 4294967296;

/**
 * Locality-sensitive hashing over MinHash signatures: documents agreeing on all rows of any one band become
 * candidates. Each band's rows are hashed to a 53-bit number key (a number key keeps the maps small; 53 bits
 * keep spurious band matches negligible even at billions of documents). Inserted signatures are kept (copied,
 * 4*numPerm bytes per document) so candidates are verified against the threshold, not trusted.
 */
export class LshIndex {
  readonly bands: number;
  readonly rows: number;
  readonly numPerm: number;
  /** Per band: key -> one id, or several ids once keys collide (most keys have one document). */
  private readonly tables: Array<Map<number, number | number[]>>;
  private readonly signatures = new Map<number, Uint32Array>();

  constructor(numPerm: number, options: Partial<LshOptions> = {}) {
    const { bands, rows } = { ...DEFAULT_LSH, ...options };
    if (bands * rows !== numPerm) {
      throw new RangeError(`bands * rows must equal numPerm: ${bands} * ${rows} != ${numPerm}`);
    }
    this.bands = bands;
    this.rows = rows;
    this.numPerm = numPerm;
    this.tables = Array.from({ length: bands }, () => new Map<number, number | number[]>());
  }

  get size(): number {
    return this.signatures.size;
  }

  insert(id: number, signature: Uint32Array): void {
    this.check(signature);
    if (this.signatures.has(id)) throw new Error(`id ${id} is already in the index`);
    this.signatures.set(id, signature.slice()); // a copy: the caller's batch buffer is not pinned
    for (let band = 0; band < this.bands; band++) {
      const table = this.tables[band]!;
      const key = this.bandKey(signature, band);
      const entry = table.get(key);
      if (entry === undefined) table.set(key, id);
      else if (typeof entry === 'number') table.set(key, [entry, id]);
      else entry.push(id);
    }
  }

  /** Ids sharing at least one band with `signature`, each once, in order of first band matched. */
  query(signature: Uint32Array): number[] {
    this.check(signature);
    const found = new Set<number>();
    for (let band = 0; band < this.bands; band++) {
      const entry = this.tables[band]!.get(this.bandKey(signature, band));
      if (entry === undefined) continue;
      if (typeof entry === 'number') found.add(entry);
      else for (const id of entry) found.add(id);
    }
    return [...found];
  }

  /** The first candidate whose estimated Jaccard with `signature` is >= threshold, else undefined. */
  findDuplicate(signature: Uint32Array, threshold = 0.8): number | undefined {
    for (const id of this.query(signature)) {
      if (jaccardEstimate(signature, this.signatures.get(id)!) >= threshold) return id;
    }
    return undefined;
  }

  signatureOf(id: number): Uint32Array | undefined {
    return this.signatures.get(id);
  }

  private bandKey(signature: Uint32Array, band: number): number {
    let h1 = 0x811c9dc5 ^ band;
    let h2 = 0x2545f491 ^ band;
    const end = (band + 1) * this.rows;
    for (let i = band * this.rows; i < end; i++) {
      const v = signature[i]!;
      h1 = Math.imul(h1 ^ v, 0x01000193);
      h2 = Math.imul(h2 ^ v, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    return ((h1 >>> 0) & 0x1fffff) * TWO32 + (h2 >>> 0);
  }

  private check(signature: Uint32Array): void {
    if (signature.length !== this.numPerm) {
      throw new RangeError(`signature has ${signature.length} values, the index expects ${this.numPerm}`);
    }
  }
}
