/**
 * `fn` over `items` with at most `limit` calls in flight, results in the items' order. After a call fails no
 * new one starts, and the returned promise rejects with that failure once the calls in flight have settled (so
 * nothing is still running when the caller sees the error).
 */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        out[index] = await fn(items[index]!, index);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const width = Number.isFinite(limit)
    ? Math.max(1, Math.min(Math.floor(limit), items.length))
    : items.length;
  const workers = Array.from({ length: width }, worker);
  const settled = await Promise.allSettled(workers);
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (rejected !== undefined) throw rejected.reason;
  return out;
}
