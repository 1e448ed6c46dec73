import { defineTable, t, type ColumnType, type TableSchema } from './types.js';

/** A scalar value carried through from an input column (url, language, dump, ...). */
export type MetaValue = string | number | bigint | boolean | Date | null;

/** One input document as the Parquet source yields it. */
export interface Document {
  /** From the configured id column, or `<shard path>#<row>` when there is none. */
  readonly id: string;
  readonly text: string;
  /** Shard path as given on the command line (relative to the input root) and row index in that shard. */
  readonly sourceFile: string;
  readonly sourceRow: number;
  /** The pass-through columns the run selected, by column name. */
  readonly meta: Readonly<Record<string, MetaValue>>;
}

export const documentBaseFields = {
  id: t.string(),
  text: t.string(),
  source_file: t.string(),
  source_row: t.int64(),
} as const;

/** Column types a pass-through column may have; nested input columns are not passed through. */
export type MetaColumnType = Extract<
  ColumnType,
  { kind: 'string' | 'int64' | 'float64' | 'bool' | 'timestamp' }
>;

/** The schema of documents written as they are (the default read → filter → write graph). */
export function documentsTable(meta: Readonly<Record<string, MetaColumnType>>): TableSchema {
  for (const name of Object.keys(meta)) {
    if (name in documentBaseFields) {
      throw new Error(`pass-through column "${name}" collides with a column air writes itself`);
    }
  }
  return defineTable(
    'documents',
    1,
    { ...documentBaseFields, ...meta },
    {
      id: 'document id: the input id column, or "<shard>#<row>" when the input has none',
      text: 'document text',
      source_file: 'input shard the document was read from',
      source_row: 'row index of the document in its shard (0-based)',
    },
  );
}

export function documentRow(doc: Document): Record<string, MetaValue> {
  return { id: doc.id, text: doc.text, source_file: doc.sourceFile, source_row: doc.sourceRow, ...doc.meta };
}
