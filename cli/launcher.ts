/**
 * Under npm (`npx air`, `npm exec`, `npm run`), air runs as the child of a shell that npm started. npm passes
 * SIGTERM on to that shell, which dies without passing it on, and air would run on as an orphan (a scheduler's
 * or `timeout`'s stop would then wait for the kill). So under npm, air watches its parent and stops as on
 * SIGTERM once the parent is gone. Started any other way (`node dist/cli/air.js`, nohup) it does not watch.
 */
export function watchLauncher(
  onGone: () => void,
  env: NodeJS.ProcessEnv = process.env,
  intervalMs = 250,
): () => void {
  if (env.npm_command === undefined) return () => undefined;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
