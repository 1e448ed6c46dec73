import type { SchemaElement } from 'hyparquet-writer';
import type { PackedTexts } from '../pool/packed-texts.js';

/** Messages between the Parquet sink (main thread) and its writer thread. */
export type WriterCodec = 'ZSTD' | 'SNAPPY' | 'GZIP' | 'BROTLI' | 'UNCOMPRESSED';

/** A top-level string column travels as transferable bytes; everything else as cloned values. */
export type EncodedColumn =
  | {
      readonly name: string;
      readonly kind: 'texts';
      readonly texts: PackedTexts;
      readonly nulls?: Uint8Array;
    }
  | { readonly name: string; readonly kind: 'values'; readonly values: unknown[] };

export type WriterRequest =
  | {
      readonly op: 'open';
      readonly file: string;
      readonly schema: SchemaElement[];
      readonly codec: WriterCodec;
    }
  | { readonly op: 'rowGroup'; readonly rows: number; readonly columns: EncodedColumn[] }
  /** Writes the footer, fsyncs, renames to `final`, fsyncs the folder. */
  | { readonly op: 'finish'; readonly final: string }
  /** Closes and deletes the temporary file. */
  | { readonly op: 'abort' };
