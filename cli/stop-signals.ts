import { EXIT, type CliIO } from './io.js';
import { watchLauncher } from './launcher.js';

export interface Stops {
  /** Aborted by the first SIGINT or SIGTERM (or, under npm, when npm is gone). */
  readonly signal: AbortSignal;
  /** The exit code for a run the first signal stopped: 130 or 143; undefined while none came. */
  exitCode(): number | undefined;
  dispose(): void;
}

/**
 * The first SIGINT/SIGTERM stops the run cleanly (in-flight records get `graceSeconds`); a second one quits at
 * once. Under npm, air's launcher exiting counts as a first SIGTERM, never as the second.
 */
export function watchStops(io: CliIO, graceSeconds: number): Stops {
  const stop = new AbortController();
  let stopSignal: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopSignal !== undefined) {
      io.stderr(
        `\nair: second ${signal}: quitting now; rows not yet committed are lost (committed part files are kept)\n`,
      );
      process.exit(signal === 'SIGINT' ? EXIT.sigint : EXIT.sigterm);
    }
    stopSignal = signal;
    io.stderr(
      `\nair: ${signal} received: reading no new input, finishing in-flight records ` +
        `(up to ${graceSeconds}s), then writing what is done. Send it again to quit at once.\n`,
    );
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A launcher gone is a stop, never the second signal that quits at once (`timeout` signals both).
  const stopWatching = watchLauncher(() => {
    if (stopSignal !== undefined) return;
    io.stderr('\nair: the npm process that started air has exited');
    onSignal('SIGTERM');
  });
  return {
    signal: stop.signal,
    exitCode: () =>
      stopSignal === undefined ? undefined : stopSignal === 'SIGTERM' ? EXIT.sigterm : EXIT.sigint,
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      stopWatching();
    },
  };
}
