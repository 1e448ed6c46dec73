import { asyncBufferFromFile, parquetMetadataAsync, type FileMetaData } from 'hyparquet';
import { errorMessage, ParquetInputError } from '../errors.js';
import { objectStore } from './object-store/store.js';
import { isObjectUrl, parseObjectUrl } from './object-store/url.js';
import type { Shard } from './shards.js';

/** Footers read at once: enough to hide a shared file system's or a bucket's latency, few enough for EMFILE. */
export const FOOTERS_IN_FLIGHT = 16;

/** One row group of a shard: its rows and the compressed bytes of its column chunks. */
export interface RowGroupSize {
  readonly rows: number;
  readonly bytes: number;
}

/**
 * A shard's Parquet footer alone, on disk or in object storage (two small reads with hyparquet: planning and
 * enqueueing need counts, not an engine). Fails with one line naming the shard.
 */
export async function readFooter(shard: Pick<Shard, 'path' | 'label'>): Promise<FileMetaData> {
  try {
    const file = isObjectUrl(shard.path)
      ? await objectStore().asyncBuffer(parseObjectUrl(shard.path))
      : await asyncBufferFromFile(shard.path);
    return await parquetMetadataAsync(file);
  } catch (error) {
    throw new ParquetInputError(
      'AIR_PARQUET_NOT_PARQUET',
      shard.label,
      `cannot read its Parquet footer: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}

/** The row groups of a footer, in file order. */
export function rowGroupSizes(footer: FileMetaData): RowGroupSize[] {
  return footer.row_groups.map((group) => ({
    rows: Number(group.num_rows),
    bytes: group.columns.reduce((sum, chunk) => sum + Number(chunk.meta_data?.total_compressed_size ?? 0), 0),
  }));
}
