// The built CLI as a test runs it: a private directory (traversable: dnsmasq drops to its own
// user), a state dir and a spec file in it, and `cli(...)` running dist/scripts/virtwire.js
// against that state dir without rejecting (a test asserts the exit code).
import { execa } from 'execa';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BIN = new URL('../../dist/scripts/virtwire.js', import.meta.url).pathname;

export function cliHarness(prefix: string, timeoutMs = 170_000) {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  chmodSync(dir, 0o755);
  const stateDir = join(dir, 'state');
  const file = join(dir, 'spec.yaml');
  const cli = (...args: string[]) =>
    execa('node', [BIN, '--state-dir', stateDir, ...args], { reject: false, timeout: timeoutMs });
  return { dir, stateDir, file, cli };
}
