// One process of the state bench (scripts/bench/state.ts): `count` whole createVm calls, one
// after another, into one tenant, through the engine's composition root with libvirt's
// test:///default driver and a simulated host — a host plane that makes every state true at once
// and hands each NIC the address its record holds, and a runner that answers every command. So
// everything of a create runs (spec validation, the state lock, allocation, the record, the
// domain XML, define and start) except the work a real host does, which is the same whichever
// state is used. Prints each turn of the state lock (wait, hold; ms) as JSON.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createEngine } from '../../lib/engine/container.js';
import { Libvirt } from '../../lib/libvirt/index.js';
import { LocalFiles, type CommandRunner, type HostPlan, type Lease } from '../../lib/host/index.js';
import type { TenantPlane } from '../../lib/engine/deps.js';
import { openState } from '../../lib/engine/state/open.js';
import type { StateStore } from '../../lib/engine/state/store.js';
import type { HostState } from '../../types/host.js';

const [stateDir, url, count] = process.argv.slice(2) as [string, string, string];

const runner: CommandRunner = {
  netns: undefined,
  run: async () => ({ stdout: '', stderr: '', exitCode: 0 }),
};

/** A host on which every state applied is at once true; each NIC's lease is its record's address. */
class SimulatedPlane implements TenantPlane {
  readonly files = new LocalFiles();
  readonly runner = runner;
  private last: HostState = { networks: [] };
  constructor(readonly stateDir: string) {}
  async apply(state: HostState) {
    this.last = state;
    return { changes: [], noop: false };
  }
  async plan(): Promise<HostPlan> {
    return { changes: [], ip: [], bridge: [], sysctl: [], firewall: [], tc: [], conntrack: [], namespaces: [] };
  }
  async waitForLease(tenant: string, mac: string): Promise<Lease> {
    const port = this.last.networks.find((n) => n.network.tenant === tenant)?.ports.find((p) => p.mac === mac);
    return { expiry: 0, mac, ip: port!.ip! };
  }
  async leases() {
    return [];
  }
  async dnsmasqPid() {
    return undefined;
  }
}

/**
 * The real store, each turn of its state lock timed: the wait (asking until the create's code runs
 * under the lock, which includes reading the records fresh under it) and the whole turn (asking
 * until the lock is given back).
 */
const waits: number[] = [];
const holds: number[] = [];
function timedLocks(dir: string, state?: string): StateStore {
  const store = openState(dir, state);
  const withLock = store.withLock.bind(store);
  store.withLock = (fn, options) => {
    const asked = performance.now();
    return withLock(async () => {
      waits.push(performance.now() - asked);
      return fn();
    }, options).finally(() => holds.push(performance.now() - asked));
  };
  return store;
}

const engine = createEngine({
  connect: (uri) => Libvirt.open(uri === 'qemu:///system' ? 'test:///default' : uri),
  runner,
  planes: (_r, dir) => new SimulatedPlane(dir),
  kvm: async () => ({ usable: false, reason: 'bench: test:///default' }),
  state: timedLocks,
});

// the kernel (empty: test:///default starts nothing) where a VM may read it, in the state dir
const boot = join(stateDir, `boot-${process.pid}`);
mkdirSync(boot, { recursive: true });
writeFileSync(join(boot, 'vmlinuz'), '');
try {
  for (let i = 0; i < Number(count); i++) {
    await engine.ops.createVm(
      {
        name: `b${process.pid}-${i}`,
        memoryMiB: 64,
        boot: { kernel: join(boot, 'vmlinuz') },
        nics: [{ network: { tenant: 'bench', cidr: '10.200.0.0/16', segment: { type: 'vxlan', uplink: 'lo' } } }],
      },
      { stateDir, ...(url ? { state: url } : {}) },
    );
  }
} finally {
  rmSync(boot, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify({ waits, holds }));
