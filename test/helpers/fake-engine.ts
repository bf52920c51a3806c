// Stand-ins for the engine's collaborators (lib/engine/deps.ts), swapped in through the
// composition root: a hypervisor kept in memory that can fail any call, a host plane that records
// what it is asked to make true, host files in memory. With them the engine's own logic —
// ordering, rollback, which host gets which state — runs without a host.
import type { HostState } from '../../types/host.js';
import type { DomainHandle, DomainState, DomainSummary, Hypervisor } from '../../lib/libvirt/index.js';
import type { ApplyReport, CommandRunner, HostFiles, HostPlan, Lease } from '../../lib/host/index.js';
import type { TenantPlane } from '../../lib/engine/deps.js';
import { LibvirtError, VIR_ERR } from '../../lib/errors/index.js';
import { createEngine, type EngineOverrides } from '../../lib/engine/container.js';
import { RecordingRunner } from './recording-runner.js';

export type HvCall =
  | 'defineDomain'
  | 'start'
  | 'destroy'
  | 'undefine'
  | 'lookupDomain'
  | 'listDomains'
  | 'attachDevice'
  | 'detachDevice'
  | 'setMemory'
  | 'shutdown'
  | 'reboot';

const failure = (func: string) =>
  new LibvirtError({ libvirtCode: VIR_ERR.INTERNAL_ERROR, libvirtDomain: 10, func, message: 'injected failure' });

/** One hypervisor's domains in memory; `failOn` makes a call fail with a LibvirtError. */
export class FakeHypervisor implements Hypervisor {
  readonly domains = new Map<
    string,
    { xml: string; active: boolean; devices: string[]; gone?: string[]; memoryKiB?: number; boots: number }
  >();
  readonly listeners: ((e: import('../../lib/libvirt/index.js').DomainEvent) => void)[] = [];
  readonly failOn = new Set<HvCall>();
  /** a guest that does not act on ACPI shutdown/reboot (the busybox test guest does not) */
  ignoreAcpi = false;
  readonly calls: string[] = [];
  closed = 0;
  constructor(
    readonly uri = 'fake:///system',
    private readonly free = 8 * 1024 ** 3,
  ) {}

  private check(call: HvCall, func: string) {
    this.calls.push(call);
    if (this.failOn.has(call)) throw failure(func);
  }

  async defineDomain(xml: string): Promise<DomainHandle> {
    this.check('defineDomain', 'virDomainDefineXML');
    const name = /<name>([^<]+)<\/name>/.exec(xml)![1]!;
    const old = this.domains.get(name);
    this.domains.set(name, { xml, active: old?.active ?? false, devices: old?.devices ?? [], boots: old?.boots ?? 0 });
    return this.handle(name);
  }
  async lookupDomain(name: string): Promise<DomainHandle | null> {
    this.check('lookupDomain', 'virDomainLookupByName');
    return this.domains.has(name) ? this.handle(name) : null;
  }
  async listDomains(): Promise<DomainSummary[]> {
    this.check('listDomains', 'virConnectListAllDomains');
    return [...this.domains].map(([name, d]) => ({
      name,
      uuid: '',
      id: d.active ? 1 : -1,
      state: d.active ? 'running' : 'shutoff',
    }));
  }
  async freeMemory(): Promise<number> {
    return this.free;
  }
  async onDomainEvent(listener: (e: import('../../lib/libvirt/index.js').DomainEvent) => void) {
    this.listeners.push(listener);
    return { off: async () => void this.listeners.splice(this.listeners.indexOf(listener), 1) };
  }
  emit(name: string, type: import('../../lib/libvirt/index.js').DomainEventType) {
    for (const l of this.listeners) l({ name, type, uuid: '', event: 0, detail: 0 });
  }
  async close(): Promise<void> {
    this.closed++;
  }

  private handle(name: string): DomainHandle {
    let current = name;
    const dom = () => this.domains.get(current)!;
    const check = (call: HvCall, func: string) => this.check(call, func);
    const domains = this.domains;
    return {
      get name() {
        return current;
      },
      uuid: '00000000-0000-5000-8000-000000000000',
      start: async () => {
        check('start', 'virDomainCreate');
        dom().active = true;
        dom().boots++;
      },
      shutdown: async () => {
        check('shutdown', 'virDomainShutdown');
        // a guest that acts on ACPI unless told to ignore it
        if (!this.ignoreAcpi) dom().active = false;
      },
      reboot: async () => {
        check('reboot', 'virDomainReboot');
        if (!this.ignoreAcpi) dom().boots++;
      },
      reset: async () => {
        dom().boots++;
      },
      attachDevice: async (xml: string) => {
        check('attachDevice', 'virDomainAttachDeviceFlags');
        dom().devices.push(xml);
      },
      detachDevice: async (xml: string) => {
        check('detachDevice', 'virDomainDetachDeviceFlags');
        const mac = /address="([^"]+)"/.exec(xml)?.[1];
        dom().devices = dom().devices.filter((d) => !mac || !d.includes(mac));
        if (mac) dom().gone = [...(dom().gone ?? []), mac];
      },
      setMemory: async (kib: number) => {
        check('setMemory', 'virDomainSetMemoryFlags');
        dom().memoryKiB = kib;
      },
      createSnapshot: async (xml: string) => /<name>([^<]+)<\/name>/.exec(xml)?.[1] ?? 'snap',
      revertToSnapshot: async () => {},
      deleteSnapshot: async () => {},
      listSnapshots: async () => [],
      openConsole: async () => {
        throw new Error('no console in the fake');
      },
      destroy: async () => {
        check('destroy', 'virDomainDestroy');
        dom().active = false;
      },
      undefine: async () => {
        check('undefine', 'virDomainUndefineFlags');
        domains.delete(current);
      },
      rename: async (to: string) => {
        domains.set(to, dom());
        domains.delete(current);
        current = to;
      },
      state: async (): Promise<{ state: DomainState; reason: number }> => ({
        state: dom().active ? 'running' : 'shutoff',
        reason: 0,
      }),
      // the live definition: as defined, with attached interfaces added and detached ones gone
      xml: async () => {
        let xml = dom().xml + dom().devices.join('');
        for (const mac of dom().gone ?? []) xml = xml.split(`address="${mac}"`).join('address="gone"');
        return xml;
      },
      isActive: async () => dom()?.active ?? false,
      free: () => {},
    };
  }
}

/** A host's files in memory (boot files present unless listed as missing). */
export class MemoryFiles implements HostFiles {
  readonly files = new Map<string, string>();
  readonly dirs = new Set<string>();
  readonly removed: string[] = [];
  constructor(private readonly missing = new Set<string>()) {}
  async read(path: string) {
    return this.files.get(path);
  }
  async exists(path: string) {
    return !this.missing.has(path);
  }
  async resolve(path: string) {
    return this.missing.has(path) ? undefined : { real: path, kind: 'file' as const };
  }
  async write(path: string, text: string) {
    this.files.set(path, text);
  }
  async mkdir(path: string) {
    this.dirs.add(path);
  }
  async chmod() {}
  async rename() {}
  async remove(path: string) {
    this.removed.push(path);
    for (const f of [...this.files.keys()]) if (f.startsWith(path)) this.files.delete(f);
    this.dirs.delete(path);
  }
  async list(dir: string) {
    const prefix = `${dir}/`;
    return [...this.files.keys()]
      .filter((f) => f.startsWith(prefix) && !f.slice(prefix.length).includes('/'))
      .map((f) => f.slice(prefix.length));
  }
  async process() {
    return undefined;
  }
  async signal() {}
}

/** A host plane that records every state it is asked to make true and hands out the pinned leases. */
export class FakePlane implements TenantPlane {
  readonly applied: HostState[] = [];
  /** the next apply fails (once: the rollback's apply then works) */
  failNextApply = false;
  /** 'hang' never resolves (until the signal aborts); 'fail' rejects */
  lease: 'ok' | 'fail' | 'hang' = 'ok';
  constructor(
    readonly runner: CommandRunner,
    readonly stateDir: string,
    readonly files: HostFiles = new MemoryFiles(),
  ) {}

  async apply(state: HostState): Promise<ApplyReport> {
    if (this.failNextApply) {
      this.failNextApply = false;
      throw new Error('injected host-plane failure');
    }
    this.applied.push(structuredClone(state));
    return { changes: [], noop: false };
  }
  async plan(): Promise<HostPlan> {
    return { changes: [], ip: [], bridge: [], sysctl: [], firewall: [], tc: [], conntrack: [], namespaces: [] };
  }
  async waitForLease(tenant: string, mac: string, options?: { signal?: AbortSignal }): Promise<Lease> {
    if (this.lease === 'fail') throw new Error('injected lease failure');
    if (this.lease === 'hang') {
      return new Promise((_, reject) => options?.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
    }
    const port = this.last()
      ?.networks.find((n) => n.network.tenant === tenant)
      ?.ports.find((p) => p.mac === mac);
    return { expiry: 0, mac, ip: port!.ip! };
  }
  async leases(): Promise<Lease[]> {
    return [];
  }
  async dnsmasqPid() {
    return undefined;
  }
  last(): HostState | undefined {
    return this.applied[this.applied.length - 1];
  }
  /** every port name in the last state applied */
  ports(): string[] {
    return (this.last()?.networks ?? []).flatMap((n) => n.ports.map((p) => p.name));
  }
}

/** An engine on fakes: one hypervisor per URI, one plane per state dir, a recording runner. */
export function fakeEngine(overrides: EngineOverrides & { runner?: CommandRunner } = {}) {
  const runner =
    overrides.runner ??
    new RecordingRunner([{ match: (a) => a[0] === 'qemu-img' && a[1] === 'info', stdout: '{"format":"qcow2"}' }]);
  const hypervisors = new Map<string, FakeHypervisor>();
  const planes = new Map<string, FakePlane>();
  const hv = (uri = 'qemu:///system') => {
    let h = hypervisors.get(uri);
    if (!h) hypervisors.set(uri, (h = new FakeHypervisor(uri)));
    return h;
  };
  const plane = (stateDir: string) => {
    let p = planes.get(stateDir);
    if (!p) planes.set(stateDir, (p = new FakePlane(runner, stateDir)));
    return p;
  };
  const engine = createEngine({
    connect: async (uri) => hv(uri),
    runner,
    planes: (_r, stateDir) => plane(stateDir),
    kvm: async () => ({ usable: false, reason: 'the CPU has no vmx/svm flag' }),
    ...overrides,
  });
  return { engine, hv, plane, runner };
}
