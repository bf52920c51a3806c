// Waiting on a guest's serial console (the log file libvirt's QEMU writes): resolves with the
// first match as soon as it is written (lib/host's one waiter: a watch, not a poll-sleep).
import { readText, waitForFile } from '../host/wait.js';

export function waitForConsole(
  vm: { serialLog: string; name?: string },
  pattern: RegExp,
  timeoutMs = 60_000,
): Promise<RegExpMatchArray> {
  return waitForFile(vm.serialLog, (text) => text.match(pattern) ?? undefined, {
    timeoutMs,
    what: `${pattern} on the console of ${vm.name ?? vm.serialLog}`,
  });
}

/** Everything the guest printed so far. */
export const consoleText = (vm: { serialLog: string }): string => readText(vm.serialLog);
