// Guests for integration tests that *always* go away: a GuestLab remembers every guest it
// created and destroyAll() removes them (call it from afterAll); withGuests() wraps a function
// and destroys in `finally`; Ctrl-C / SIGTERM while a lab has guests destroys them, then exits.
import type { VmSpec } from '../../types/spec.js';
import type { CreateVmOptions, CreatedVm, DestroyVmOptions } from '../../types/vm.js';
import { createVm, destroyVm } from '../engine/index.js';
import type { TestGuestImage } from './guest-image.js';

const labs = new Set<GuestLab>();
let signalsHooked = false;

function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      void Promise.allSettled([...labs].map((l) => l.destroyAll())).then(() =>
        process.exit(sig === 'SIGINT' ? 130 : 143),
      );
    });
  }
}

export class GuestLab {
  private readonly guests = new Map<string, CreatedVm | undefined>();

  constructor(private readonly options: CreateVmOptions & DestroyVmOptions = {}) {}

  async create(spec: VmSpec, options: CreateVmOptions = {}): Promise<CreatedVm> {
    labs.add(this);
    hookSignals();
    this.guests.set(spec.name, undefined); // destroyAll covers a create that is still running
    const vm = await createVm(spec, { ...this.options, ...options });
    this.guests.set(spec.name, vm);
    return vm;
  }

  /** Creates all at once; if any fails, the others are destroyed and the first error thrown. */
  async createAll(specs: VmSpec[], options: CreateVmOptions = {}): Promise<CreatedVm[]> {
    const results = await Promise.allSettled(specs.map((s) => this.create(s, options)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await this.destroyAll();
      throw failed.reason;
    }
    return results.map((r) => (r as PromiseFulfilledResult<CreatedVm>).value);
  }

  async destroyAll(): Promise<void> {
    const names = [...this.guests.keys()];
    this.guests.clear();
    const errors: unknown[] = [];
    for (const name of names) {
      await destroyVm(name, { uri: this.options.uri, stateDir: this.options.stateDir, missingOk: true }).catch(
        (e: unknown) => errors.push(e),
      );
    }
    labs.delete(this);
    if (errors.length > 0) throw new AggregateError(errors, `destroying test guests failed: ${errors.length} error(s)`);
  }
}

export async function withGuests<T>(
  specs: VmSpec[],
  fn: (vms: CreatedVm[]) => Promise<T>,
  options: CreateVmOptions & DestroyVmOptions = {},
): Promise<T> {
  const lab = new GuestLab(options);
  try {
    return await fn(await lab.createAll(specs));
  } finally {
    await lab.destroyAll();
  }
}

/** What the test guest does besides its lease and HTTP (see templates/guest-init.sh). */
export interface TestGuestBehaviour {
  /**
   * the hostile tenant's attacks, each round: dhcpd, arpgw, spoofip, spoofmac; and on a network
   * with IPv6, spoof6 (pings victim6 from <its /64>::99) and ra6 (a rogue router advertisement of
   * fd00:66::/64 to all nodes)
   */
  attacks?: ('dhcpd' | 'arpgw' | 'spoofip' | 'spoofmac' | 'spoof6' | 'ra6')[];
  /** the neighbour spoofip and spoofmac aim at */
  victim?: string;
  /** the neighbour's IPv6 address spoof6 aims at */
  victim6?: string;
  /** an address whose echo service (port 7) the guest keeps one connection to (VIRTWIRE-HOLD lines) */
  hold?: string;
}

/** A VmSpec that boots the test guest (see buildTestGuest) with probes run from inside it. */
export function testGuestSpec(
  image: TestGuestImage,
  name: string,
  nics: VmSpec['nics'],
  probes: string[] = [],
  behaviour: TestGuestBehaviour = {},
): VmSpec {
  const cmdline = [
    image.cmdline,
    `vw.name=${name}`,
    ...(probes.length ? [`vw.probes=${probes.join(',')}`] : []),
    ...(behaviour.attacks?.length ? [`vw.attacks=${behaviour.attacks.join(',')}`] : []),
    ...(behaviour.victim ? [`vw.victim=${behaviour.victim}`] : []),
    ...(behaviour.victim6 ? [`vw.victim6=${behaviour.victim6}`] : []),
    ...(behaviour.hold ? [`vw.hold=${behaviour.hold}`] : []),
  ].join(' ');
  return { name, memoryMiB: 192, boot: { kernel: image.kernel, initrd: image.initrd, cmdline }, nics };
}
