/**
 * The Parquet writer thread (a one-thread WorkerPool). Encoding and compressing a row group is CPU work of
 * hundreds of milliseconds; here it never blocks the event loop that drives LLM calls. The open file is
 * module state: the sink sends its requests one after another to this single thread.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { brotliCompressSync, constants as zlib, gzipSync } from 'node:zlib';
import { ByteWriter, ParquetWriter, type SchemaElement } from 'hyparquet-writer';
import { compress as zstdCompress } from 'zstd-napi';
import { collectGarbage } from '../memory.js';
import { bytesAt } from '../pool/packed-texts.js';
import type { EncodedColumn, WriterRequest } from './parquet-writer-protocol.js';

const FLUSH_BYTES = 1 << 20;
const PAGE_BYTES = 1 << 20; // 1 MiB pages, as pyarrow writes: readers decode page by page in little memory

const compressors = {
  ZSTD: (input: Uint8Array) => zstdCompress(input),
  GZIP: (input: Uint8Array) => new Uint8Array(gzipSync(input)),
  BROTLI: (input: Uint8Array) =>
    new Uint8Array(brotliCompressSync(input, { params: { [zlib.BROTLI_PARAM_QUALITY]: 5 } })),
};

interface OpenFile {
  fd: number;
  file: string;
  bytes: ByteWriter;
  writer: ParquetWriter;
  written: number;
}

let open: OpenFile | undefined;

/** A hyparquet ByteWriter that appends to an open file descriptor every megabyte. */
function fdWriter(fd: number, onWrite: (n: number) => void): ByteWriter {
  // ParquetWriter calls the optional `flush` after each row group: that is when bytes reach the file.
  const writer: ByteWriter & { flush?: () => void } = new ByteWriter();
  const flush = (): void => {
    let offset = 0;
    while (offset < writer.index)
      offset += writeSync(fd, new Uint8Array(writer.buffer, offset, writer.index - offset));
    onWrite(writer.index);
    writer.index = 0;
  };
  const grow = writer.ensure.bind(writer);
  writer.ensure = (size: number) => {
    if (writer.index > FLUSH_BYTES) flush();
    grow(size);
  };
  writer.flush = flush;
  writer.finish = flush;
  return writer;
}

/**
 * Column values as hyparquet wants them. Strings stay UTF-8 bytes, which the writer takes as they are (it
 * would otherwise encode every string again). Each value is copied out of the transferred buffer: the
 * writer keeps min/max values for the footer, and a view would keep the whole row group's buffer alive
 * until the part is finished (measured: +300 MB).
 */
function decode(column: EncodedColumn): unknown[] {
  if (column.kind === 'values') return column.values;
  const { texts, nulls } = column;
  return Array.from(texts.offsets, (_, i) => (nulls?.[i] ? null : bytesAt(texts, i).slice()));
}

/** Handles one request; returns the bytes written to the open file so far. */
export default function handle(request: WriterRequest): number {
  switch (request.op) {
    case 'open': {
      if (open !== undefined) throw new Error(`a part file is already open: ${open.file}`);
      const fd = openSync(request.file, 'w');
      const state = { written: 0 } as OpenFile;
      const bytes = fdWriter(fd, (n) => (state.written += n));
      const writer = new ParquetWriter({
        writer: bytes,
        schema: request.schema as SchemaElement[],
        codec: request.codec,
        compressors,
        createdBy: 'air (hyparquet-writer)',
      });
      open = Object.assign(state, { fd, file: request.file, bytes, writer });
      return 0;
    }
    case 'rowGroup': {
      const file = requireOpen();
      file.writer.write({
        columnData: request.columns.map((c) => ({ name: c.name, data: decode(c) as never })),
        rowGroupSize: request.rows,
        pageSize: PAGE_BYTES,
      });
      // The row group's buffers are garbage now; collect before the next one doubles them.
      collectGarbage();
      return file.written;
    }
    case 'finish': {
      const file = requireOpen();
      file.writer.finish();
      fsyncSync(file.fd);
      closeSync(file.fd);
      open = undefined;
      renameSync(file.file, request.final);
      const dir = openSync(path.dirname(request.final), 'r');
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
      return file.written;
    }
    case 'abort': {
      if (open === undefined) return 0;
      const file = open;
      open = undefined;
      closeSync(file.fd);
      rmSync(file.file, { force: true });
      return 0;
    }
  }
}

function requireOpen(): OpenFile {
  if (open === undefined) throw new Error('no part file is open');
  return open;
}
