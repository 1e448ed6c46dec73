import { AirError } from '../../pipeline/errors.js';

/** Codes of the queue mode (air enqueue, air worker, and status and merge over units). */
export type QueueErrorCode =
  | 'AIR_QUEUE_INVALID' // a queue URL, queue.json or completion marker that cannot be read
  | 'AIR_QUEUE_UNREACHABLE' // Redis did not answer
  | 'AIR_QUEUE_OTHER_PLAN' // the root was enqueued from another plan
  | 'AIR_UNITS_INCOMPLETE'; // merge before every unit has a counted attempt

export class QueueError extends AirError<QueueErrorCode> {
  constructor(code: QueueErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'QueueError';
  }
}
