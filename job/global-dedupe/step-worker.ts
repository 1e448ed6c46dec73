import { AirError } from '../../pipeline/errors.js';
import { findGlobalDuplicates } from './find-duplicates.js';
import type { StepOutcome, StepTask } from './step-thread.js';

/**
 * The global step as a worker-pool task (see step-thread.ts): log lines go out on the task's port as they come,
 * and the outcome is returned as data, so an error keeps its code across the thread boundary.
 */
export default async function globalStepTask(task: StepTask): Promise<StepOutcome> {
  const { root, shards, options, log } = task;
  try {
    const summary = await findGlobalDuplicates(root, shards, {
      ...options,
      log: (line) => log.postMessage(line),
    });
    return { kind: 'done', summary };
  } catch (error) {
    return {
      kind: 'error',
      message: error instanceof Error ? error.message : String(error),
      code: error instanceof AirError ? String(error.code) : undefined,
    };
  } finally {
    log.postMessage(null);
    log.close();
  }
}
