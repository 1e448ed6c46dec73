import { closeSync, fsyncSync, openSync, truncateSync, writeSync } from 'node:fs';
import type { DropNote, DropNoteSink } from '../ledger.js';

/** Bytes of JSON lines buffered before one write; at ~120 bytes a note, ~8,000 notes per write. */
const BLOCK_BYTES = 1 << 20;

/**
 * Drop notes as JSON Lines in a file (the job points it at `<output>/duplicates.jsonl`), one object per line:
 * {"shard":…,"row":…,"stage":…,"reason":…,"duplicateOf":…}.
 *
 * Notes arrive synchronously from the ledger, so lines are buffered and written in 1 MiB blocks with a
 * blocking write: memory stays bounded whatever the number of drops, lines keep the order of the drops, and a
 * block costs well under a millisecond of the event loop. `close` writes the rest and fsyncs. The file is
 * created (truncated) when the sink is made, so a run that drops nothing still leaves an empty file.
 */
export class DropNotesFile implements DropNoteSink {
  readonly file: string;
  private fd: number | undefined;
  private buffer: string[] = [];
  private buffered = 0;
  /** Notes written so far (buffered ones included). */
  count = 0;
  /** Bytes written to the file so far. */
  private bytes = 0;

  /** `keepBytes`: continue a file an interrupted run wrote, keeping only its first bytes (its committed notes). */
  constructor(file: string, keepBytes?: number) {
    this.file = file;
    if (keepBytes === undefined) {
      this.fd = openSync(file, 'w');
    } else {
      truncateSync(file, keepBytes);
      this.fd = openSync(file, 'a');
      this.bytes = keepBytes;
    }
  }

  /** Writes what is buffered and fsyncs; returns the file's length, every byte of it durable. */
  checkpoint(): number {
    if (this.fd === undefined) return this.bytes;
    this.flush();
    fsyncSync(this.fd);
    return this.bytes;
  }

  write(note: DropNote): void {
    if (this.fd === undefined) throw new Error(`drop notes file ${this.file} is already closed`);
    // Fixed key order, whatever order the note's fields were set in.
    const line = JSON.stringify({
      shard: note.shard,
      row: note.row,
      stage: note.stage,
      reason: note.reason,
      duplicateOf: note.duplicateOf,
    });
    this.buffer.push(line, '\n');
    this.buffered += line.length + 1;
    this.count += 1;
    if (this.buffered >= BLOCK_BYTES) this.flush();
  }

  async close(): Promise<void> {
    const fd = this.fd;
    if (fd === undefined) return;
    try {
      this.flush();
      fsyncSync(fd);
    } finally {
      this.fd = undefined;
      closeSync(fd);
    }
  }

  private flush(): void {
    if (this.buffered === 0 || this.fd === undefined) return;
    const bytes = Buffer.from(this.buffer.join(''), 'utf8');
    this.buffer = [];
    this.buffered = 0;
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(this.fd, bytes, offset);
    this.bytes += bytes.length;
  }
}
