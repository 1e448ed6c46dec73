/**
 * A bounded FIFO between two stages. `push` waits while the queue holds `capacity` items, so a slow
 * consumer slows its producer and memory stays bounded whatever the input size. One producer side, one
 * consumer side; `close` ends the stream after the buffered items, `fail` ends it with an error.
 */
export class BoundedQueue<T> {
  readonly capacity: number;
  /** Highest number of items ever buffered at once (for tests and progress). */
  highWater = 0;

  private readonly items: T[] = [];
  private head = 0;
  private closed = false;
  private failure: { error: unknown } | undefined;
  private readonly waitingProducers: Array<() => void> = [];
  private waitingConsumer: (() => void) | undefined;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`queue capacity must be a positive integer, got ${capacity}`);
    }
    this.capacity = capacity;
  }

  get size(): number {
    return this.items.length - this.head;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Adds one item, waiting for room. Rejects if the queue was failed; throws if it was closed. */
  async push(item: T): Promise<void> {
    while (this.size >= this.capacity && this.failure === undefined && !this.closed) {
      await new Promise<void>((resolve) => this.waitingProducers.push(resolve));
    }
    if (this.failure !== undefined) throw this.failure.error;
    if (this.closed) throw new Error('push after close');
    this.items.push(item);
    if (this.size > this.highWater) this.highWater = this.size;
    this.wakeConsumer();
  }

  /** No more items will be pushed; the consumer drains what is buffered, then ends. */
  close(): void {
    this.closed = true;
    this.wakeConsumer();
    this.wakeProducers();
  }

  /** Ends the stream with an error: the consumer throws it, blocked producers throw it. */
  fail(error: unknown): void {
    if (this.failure === undefined) this.failure = { error };
    this.closed = true;
    this.wakeConsumer();
    this.wakeProducers();
  }

  /**
   * Takes between 1 and `max` items: waits for the first, then takes whatever else is already buffered,
   * so batches fill up exactly when the consumer is the bottleneck. Returns null at end of stream.
   */
  async take(max: number): Promise<T[] | null> {
    while (this.size === 0) {
      if (this.failure !== undefined) throw this.failure.error;
      if (this.closed) return null;
      await new Promise<void>((resolve) => {
        this.waitingConsumer = resolve;
      });
    }
    if (this.failure !== undefined) throw this.failure.error;
    const n = Math.min(max, this.size);
    const batch = this.items.slice(this.head, this.head + n);
    this.head += n;
    // Compact now and then instead of shift()ing, which is O(n) per call.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    this.wakeProducers();
    return batch;
  }

  /** One item at a time, so nothing sits outside the bound in an iterator's private batch. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const batch = await this.take(1);
      if (batch === null) return;
      yield batch[0]!;
    }
  }

  private wakeConsumer(): void {
    const wake = this.waitingConsumer;
    this.waitingConsumer = undefined;
    wake?.();
  }

  private wakeProducers(): void {
    // Wake only as many producers as there is room for; the rest keep waiting.
    let room = this.closed ? this.waitingProducers.length : this.capacity - this.size;
    while (room-- > 0 && this.waitingProducers.length > 0) this.waitingProducers.shift()?.();
  }
}
