// Helpers shared by the comparison scripts.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

function cpuTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4]; // idle + iowait
  return { idle, total: f.reduce((a, b) => a + b, 0) };
}

/** Busy fraction of all CPUs over `ms` (0..1). */
export async function busyFraction(ms = 1000) {
  const a = cpuTicks();
  await sleep(ms);
  const b = cpuTicks();
  return 1 - (b.idle - a.idle) / Math.max(1, b.total - a.total);
}

/**
 * This machine has 2 cores and other sessions may run builds on it: wait (up to maxWaitS) until
 * the whole machine is below `threshold` busy for one second, and return the last measurement.
 */
export async function waitIdle({ threshold = 0.1, maxWaitS = 180 } = {}) {
  const t0 = Date.now();
  let busy = await busyFraction();
  while (busy > threshold && Date.now() - t0 < maxWaitS * 1000) busy = await busyFraction();
  return { busy, waitedS: (Date.now() - t0) / 1000 };
}

export const vmHwmMB = () => Number(readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+)/)[1]) / 1024;
export const vmRssMB = () => Number(readFileSync('/proc/self/status', 'utf8').match(/VmRSS:\s+(\d+)/)[1]) / 1024;
/** user + system CPU seconds of this process */
export const cpuSecs = () => {
  const u = process.resourceUsage();
  return (u.userCPUTime + u.systemCPUTime) / 1e6;
};
