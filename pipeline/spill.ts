import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { deserialize, serialize } from 'node:v8';

/**
 * An append-only file of records, read back once in order. A blocking stage parks its records here, so it holds
 * only what it needs to decide (a vector per record) in memory, whatever the input size. Records are v8
 * structured-clone bytes with a 4-byte length prefix: bigints, Dates and typed arrays survive the round trip.
 */
export class SpillFile<T> {
  readonly file: string;
  private stream: WriteStream | undefined;
  private written = 0;
  bytes = 0;

  constructor(dir: string = os.tmpdir()) {
    this.file = path.join(dir, `air-spill-${process.pid}-${randomUUID()}.bin`);
  }

  get count(): number {
    return this.written;
  }

  async append(record: T): Promise<void> {
    if (this.stream === undefined) {
      await mkdir(path.dirname(this.file), { recursive: true });
      this.stream = createWriteStream(this.file);
    }
    const body = serialize(record);
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32LE(body.length, 0);
    this.written++;
    this.bytes += 4 + body.length;
    this.stream.write(header);
    const ok = this.stream.write(body);
    // Respect the stream's own backpressure so a fast producer never buffers the spill in memory.
    if (!ok) await new Promise<void>((resolve) => this.stream!.once('drain', resolve));
  }

  /** Reads every record back in the order written (call once, after the last append). */
  async *read(): AsyncIterable<T> {
    if (this.stream === undefined) return;
    await new Promise<void>((resolve, reject) =>
      this.stream!.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
    const handle = await open(this.file, 'r');
    try {
      let buffer = Buffer.alloc(0);
      const chunk = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) break;
        buffer =
          buffer.length === 0
            ? Buffer.from(chunk.subarray(0, bytesRead))
            : Buffer.concat([buffer, chunk.subarray(0, bytesRead)]);
        let offset = 0;
        while (buffer.length - offset >= 4) {
          const size = buffer.readUInt32LE(offset);
          if (buffer.length - offset - 4 < size) break;
          yield deserialize(buffer.subarray(offset + 4, offset + 4 + size)) as T;
          offset += 4 + size;
        }
        buffer = buffer.subarray(offset);
      }
      if (buffer.length > 0) throw new Error(`${this.file}: spill file ends inside a record`);
    } finally {
      await handle.close();
    }
  }

  async remove(): Promise<void> {
    this.stream?.destroy();
    await rm(this.file, { force: true });
  }
}
