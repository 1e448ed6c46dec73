import { stat, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Whether anything is at `target` (a missing parent or no permission count as nothing). */
export async function pathExists(target: string): Promise<boolean> {
  return stat(target).then(
    () => true,
    () => false,
  );
}

/** Whether `target` is a folder; false when it is a file or nothing. */
export async function isDirectory(target: string): Promise<boolean> {
  return stat(target).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/** Writes `text` to a hidden temporary beside `file`, then renames it: readers see the old file or the new one. */
export async function writeAtomically(file: string, text: string): Promise<void> {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
  await writeFile(temporary, text);
  await rename(temporary, file);
}
