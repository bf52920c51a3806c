// Waiting on a guest's serial console (the log file libvirt's QEMU writes): resolves with the
// first match as soon as it is written — a watch on the file's directory, not a poll-sleep.
import { watch, existsSync, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { dirname, basename } from 'node:path';
import { VirtwireError } from '../errors/index.js';

function readAll(file: string): string {
  if (!existsSync(file)) return '';
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(fstatSync(fd).size);
    readSync(fd, buf, 0, buf.length, 0);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

export function waitForConsole(vm: { serialLog: string; name?: string }, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
  const file = vm.serialLog;
  return new Promise((resolve, reject) => {
    const watcher = watch(dirname(file), (_e, name) => {
      if (name === null || name === basename(file)) check();
    });
    const timer = setTimeout(() => finish(new VirtwireError('TIMEOUT', `${pattern} did not appear on the console of ${vm.name ?? file} within ${timeoutMs} ms`)), timeoutMs);
    function finish(err?: Error, m?: RegExpMatchArray) {
      watcher.close();
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(m!);
    }
    function check() {
      const m = readAll(file).match(pattern);
      if (m) finish(undefined, m);
    }
    check();
  });
}

/** Everything the guest printed so far. */
export const consoleText = (vm: { serialLog: string }): string => readAll(vm.serialLog);
