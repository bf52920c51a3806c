// What a test with real guests on NAT networks sets up in the machine's own namespace: a state
// dir of its own (traversable: QEMU, as libvirt-qemu, writes its serial log below it), a Lab for
// its namespaces, a GuestLab that destroys every guest it made, and an "outside" beyond a veth
// named after the prefix. `start` and `stop` for beforeAll and afterAll.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestLab } from '../../lib/testing/index.js';
import { Lab } from './lab.js';
import { Outside } from './outside.js';

export class GuestWorld {
  readonly stateDir: string;
  readonly lab: Lab;
  readonly guests: GuestLab;
  readonly outside: Outside;

  /** `prefix`: short (the outside's veth is `<prefix>up0`, at most 15 characters) */
  constructor(prefix: string) {
    this.stateDir = mkdtempSync(join(tmpdir(), `${prefix}-`));
    chmodSync(this.stateDir, 0o755);
    this.lab = new Lab(prefix);
    this.guests = new GuestLab({ stateDir: this.stateDir, timeoutMs: 150_000 });
    this.outside = new Outside(this.lab, `${prefix}up0`);
  }

  async start(): Promise<void> {
    await this.lab.sweep();
    await this.outside.start();
  }

  async stop(): Promise<void> {
    await this.guests.destroyAll().catch(() => {});
    await this.outside.stop();
    await this.lab.cleanup();
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}
