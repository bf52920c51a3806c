// Typed DomainXml <-> libvirt domain XML. Built with xml2js (never by concatenation), elements in
// the order libvirt itself writes them, so output is deterministic and diffs against
// `virsh dumpxml` stay readable.
import type { DomainChardev, DomainDisk, DomainInterface, DomainXml } from '../../types/domain-xml.js';
import type { ResolvedVm } from '../../types/resolved.js';
import { domainModel, type DomainRenderOptions } from './domain-model.js';
import { buildXml, parseXmlSync } from './xml2js-sync.js';
import { SpecError } from '../errors/spec-error.js';

export const VIRTWIRE_XMLNS = 'urn:x-virtwire:domain:1';

type Node = Record<string, unknown>;
/** Drops undefined members: absent optional parts are absent in the XML and in parsed models. */
function defined<T extends object>(node: T): T {
  return Object.fromEntries(Object.entries(node).filter(([, v]) => v !== undefined)) as T;
}
const text = (value: string | number, attrs?: Node): Node =>
  attrs ? { _: String(value), $: defined(attrs) } : { _: String(value) };

export function domainToXml(d: DomainXml): string {
  const dev = d.devices;
  const domain: Node = defined({
    $: { type: d.type },
    name: text(d.name),
    uuid: d.uuid === undefined ? undefined : text(d.uuid),
    metadata:
      d.metadata === undefined
        ? undefined
        : {
            'virtwire:meta': {
              $: { 'xmlns:virtwire': VIRTWIRE_XMLNS },
              'virtwire:entry': Object.keys(d.metadata)
                .sort()
                .map((k) => text(d.metadata![k]!, { key: k })),
            },
          },
    memory: text(d.memoryKiB, { unit: 'KiB' }),
    currentMemory: d.currentMemoryKiB === undefined ? undefined : text(d.currentMemoryKiB, { unit: 'KiB' }),
    vcpu: text(d.vcpu, { placement: 'static' }),
    os: defined({
      type: text(d.os.type.value, { arch: d.os.type.arch, machine: d.os.type.machine }),
      kernel: d.os.kernel === undefined ? undefined : text(d.os.kernel),
      initrd: d.os.initrd === undefined ? undefined : text(d.os.initrd),
      cmdline: d.os.cmdline === undefined ? undefined : text(d.os.cmdline),
      boot: d.os.boot?.map((dev) => ({ $: { dev } })),
    }),
    features:
      d.features === undefined
        ? undefined
        : defined({ acpi: d.features.acpi ? '' : undefined, apic: d.features.apic ? '' : undefined }),
    cpu:
      d.cpu === undefined
        ? undefined
        : defined({
            $: defined({ mode: d.cpu.mode, match: d.cpu.match, check: d.cpu.check, migratable: d.cpu.migratable }),
            model: d.cpu.model === undefined ? undefined : text(d.cpu.model.value, { fallback: d.cpu.model.fallback }),
          }),
    clock: d.clock === undefined ? undefined : { $: { offset: d.clock.offset } },
    on_poweroff: d.onPoweroff === undefined ? undefined : text(d.onPoweroff),
    on_reboot: d.onReboot === undefined ? undefined : text(d.onReboot),
    on_crash: d.onCrash === undefined ? undefined : text(d.onCrash),
    devices: defined({
      emulator: dev.emulator === undefined ? undefined : text(dev.emulator),
      disk: nonEmpty(dev.disks.map(diskNode)),
      controller: nonEmpty(
        (dev.controllers ?? []).map((c) => ({ $: defined({ type: c.type, index: c.index, model: c.model }) })),
      ),
      interface: nonEmpty(dev.interfaces.map(interfaceNode)),
      serial: nonEmpty(dev.serials.map(chardevNode)),
      console: nonEmpty(dev.consoles.map(chardevNode)),
      memballoon: dev.memballoon === undefined ? undefined : { $: { model: dev.memballoon.model } },
      rng: nonEmpty(
        dev.rngs.map((r) => ({ $: { model: r.model }, backend: text(r.backend.value, { model: r.backend.model }) })),
      ),
    }),
  });
  return buildXml({ domain });
}

function nonEmpty<T>(list: T[]): T[] | undefined {
  return list.length === 0 ? undefined : list;
}

function diskNode(disk: DomainDisk): Node {
  return defined({
    $: { type: disk.type, device: disk.device },
    driver:
      disk.driver === undefined
        ? undefined
        : { $: defined({ name: disk.driver.name, type: disk.driver.type, cache: disk.driver.cache }) },
    source: disk.source === undefined ? undefined : { $: defined({ file: disk.source.file, dev: disk.source.dev }) },
    target: { $: { dev: disk.target.dev, bus: disk.target.bus } },
    readonly: disk.readonly ? '' : undefined,
  });
}

function interfaceNode(nic: DomainInterface): Node {
  return defined({
    $: { type: nic.type },
    mac: nic.mac === undefined ? undefined : { $: { address: nic.mac } },
    source:
      nic.source === undefined ? undefined : { $: defined({ bridge: nic.source.bridge, network: nic.source.network }) },
    target: nic.target === undefined ? undefined : { $: defined({ dev: nic.target.dev, managed: nic.target.managed }) },
    model: nic.model === undefined ? undefined : { $: { type: nic.model } },
  });
}

function chardevNode(c: DomainChardev): Node {
  return defined({
    $: { type: c.type },
    source: c.sourcePath === undefined ? undefined : { $: { path: c.sourcePath } },
    log: c.log === undefined ? undefined : { $: defined({ file: c.log.file, append: c.log.append }) },
    target:
      c.target === undefined ? undefined : { $: defined({ type: c.target.type, port: c.target.port?.toString() }) },
  });
}

/** One interface as a device document (virDomainAttachDeviceFlags / DetachDeviceFlags). */
export function interfaceToXml(nic: DomainInterface): string {
  return buildXml({ interface: interfaceNode(nic) });
}

/** A domain snapshot's document: its name and description (libvirt fills the rest). */
export function snapshotToXml(snapshot: { name: string; description?: string }): string {
  return buildXml({
    domainsnapshot: defined({
      name: text(snapshot.name),
      description: snapshot.description === undefined ? undefined : text(snapshot.description),
    }),
  });
}

/** Renders a resolved VM as libvirt domain XML; deterministic for the same VM and options. */
export function renderResolvedDomainXml(vm: ResolvedVm, options: DomainRenderOptions): string {
  return domainToXml(domainModel(vm, options));
}

// ---- parsing ---------------------------------------------------------------------------------

type XNode = { $?: Record<string, string>; _?: string } & Record<string, unknown>;

const kids = (node: XNode | undefined, name: string): XNode[] => (node?.[name] as XNode[] | undefined) ?? [];
const kid = (node: XNode | undefined, name: string): XNode | undefined => kids(node, name)[0];
const attr = (node: XNode | undefined, name: string): string | undefined => node?.$?.[name];
const body = (node: XNode | undefined): string | undefined => node?._;
// <acpi/> parses as '' (falsy): presence is the number of children, not their truthiness.
const has = (node: XNode | undefined, name: string): true | undefined =>
  kids(node, name).length > 0 ? true : undefined;

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new SpecError([{ path: what, message: 'missing in domain XML' }], 'domain XML');
  return value;
}

function int(value: string | undefined, what: string): number {
  const n = Number(required(value, what));
  if (!Number.isInteger(n))
    throw new SpecError([{ path: what, message: `"${value}" is not an integer` }], 'domain XML');
  return n;
}

const KIB: Record<string, number> = {
  b: 1 / 1024,
  bytes: 1 / 1024,
  k: 1,
  kib: 1,
  kb: 1000 / 1024,
  m: 1024,
  mib: 1024,
  g: 1048576,
  gib: 1048576,
};
function kib(node: XNode | undefined, what: string): number {
  const unit = (attr(node, 'unit') ?? 'KiB').toLowerCase();
  const factor = KIB[unit];
  if (factor === undefined) throw new SpecError([{ path: what, message: `unknown unit ${unit}` }], 'domain XML');
  return Math.round(int(body(node), what) * factor);
}

/**
 * Reads libvirt domain XML (ours, or what `virsh dumpxml` prints with its ids, aliases and
 * addresses) into the typed model. Elements the model does not cover are dropped.
 */
export function parseDomainXml(xml: string): DomainXml {
  let root: Record<string, unknown>;
  try {
    root = parseXmlSync(xml);
  } catch (cause) {
    throw new SpecError(
      [{ path: '(document)', message: `not well-formed XML: ${(cause as Error).message.split('\n')[0]}` }],
      'domain XML',
    );
  }
  const d = root.domain as XNode | undefined;
  if (!d) throw new SpecError([{ path: '(document)', message: 'root element is not <domain>' }], 'domain XML');
  const type = attr(d, 'type');
  if (type !== 'kvm' && type !== 'qemu')
    throw new SpecError([{ path: 'domain/@type', message: `"${type}" is not kvm or qemu` }], 'domain XML');
  const os = kid(d, 'os');
  const osType = kid(os, 'type');
  const devices = kid(d, 'devices');
  const features = kid(d, 'features');
  const cpu = kid(d, 'cpu');
  const meta = kids(kid(d, 'metadata'), 'virtwire:meta').find((m) => attr(m, 'xmlns:virtwire') === VIRTWIRE_XMLNS);
  const model: DomainXml = {
    type,
    name: required(body(kid(d, 'name')), 'domain/name'),
    uuid: body(kid(d, 'uuid')),
    metadata:
      meta === undefined
        ? undefined
        : Object.fromEntries(kids(meta, 'virtwire:entry').map((e) => [attr(e, 'key') ?? '', body(e) ?? ''])),
    memoryKiB: kib(kid(d, 'memory'), 'domain/memory'),
    currentMemoryKiB:
      kid(d, 'currentMemory') === undefined ? undefined : kib(kid(d, 'currentMemory'), 'domain/currentMemory'),
    vcpu: int(body(kid(d, 'vcpu')), 'domain/vcpu'),
    os: defined({
      type: defined({
        arch: attr(osType, 'arch'),
        machine: attr(osType, 'machine'),
        value: required(body(osType), 'domain/os/type'),
      }),
      kernel: body(kid(os, 'kernel')),
      initrd: body(kid(os, 'initrd')),
      cmdline: body(kid(os, 'cmdline')),
      boot: kids(os, 'boot').length
        ? kids(os, 'boot').map((b) => required(attr(b, 'dev'), 'domain/os/boot/@dev'))
        : undefined,
    }),
    features:
      features === undefined ? undefined : defined({ acpi: has(features, 'acpi'), apic: has(features, 'apic') }),
    cpu:
      cpu === undefined
        ? undefined
        : defined({
            mode: attr(cpu, 'mode') as NonNullable<DomainXml['cpu']>['mode'],
            match: attr(cpu, 'match'),
            check: attr(cpu, 'check'),
            migratable: attr(cpu, 'migratable') as 'on' | 'off' | undefined,
            model:
              kid(cpu, 'model') === undefined
                ? undefined
                : defined({ value: body(kid(cpu, 'model')) ?? '', fallback: attr(kid(cpu, 'model'), 'fallback') }),
          }),
    clock: kid(d, 'clock') === undefined ? undefined : { offset: attr(kid(d, 'clock'), 'offset') ?? 'utc' },
    onPoweroff: body(kid(d, 'on_poweroff')),
    onReboot: body(kid(d, 'on_reboot')),
    onCrash: body(kid(d, 'on_crash')),
    devices: defined({
      emulator: body(kid(devices, 'emulator')),
      disks: kids(devices, 'disk').map(parseDisk),
      controllers: nonEmpty(
        kids(devices, 'controller').map((c) =>
          defined({
            type: attr(c, 'type') ?? '',
            index: attr(c, 'index') === undefined ? undefined : Number(attr(c, 'index')),
            model: attr(c, 'model'),
          }),
        ),
      ),
      interfaces: kids(devices, 'interface').map(parseInterface),
      serials: kids(devices, 'serial').map(parseChardev),
      consoles: kids(devices, 'console').map(parseChardev),
      memballoon:
        kid(devices, 'memballoon') === undefined
          ? undefined
          : { model: attr(kid(devices, 'memballoon'), 'model') ?? 'none' },
      rngs: kids(devices, 'rng').map((r) => ({
        model: 'virtio' as const,
        backend: { model: 'random' as const, value: body(kid(r, 'backend')) ?? '/dev/urandom' },
      })),
    }),
  };
  return defined(model);
}

function parseDisk(n: XNode): DomainDisk {
  const driver = kid(n, 'driver');
  const source = kid(n, 'source');
  const target = kid(n, 'target');
  return defined({
    type: (attr(n, 'type') ?? 'file') as DomainDisk['type'],
    device: (attr(n, 'device') ?? 'disk') as DomainDisk['device'],
    driver:
      driver === undefined
        ? undefined
        : defined({
            name: attr(driver, 'name') ?? 'qemu',
            type: attr(driver, 'type') ?? 'raw',
            cache: attr(driver, 'cache'),
          }),
    source: source === undefined ? undefined : defined({ file: attr(source, 'file'), dev: attr(source, 'dev') }),
    target: { dev: required(attr(target, 'dev'), 'disk/target/@dev'), bus: attr(target, 'bus') ?? 'virtio' },
    readonly: has(n, 'readonly'),
  });
}

function parseInterface(n: XNode): DomainInterface {
  const source = kid(n, 'source');
  const target = kid(n, 'target');
  return defined({
    type: (attr(n, 'type') ?? 'ethernet') as DomainInterface['type'],
    mac: attr(kid(n, 'mac'), 'address'),
    source:
      source === undefined ? undefined : defined({ bridge: attr(source, 'bridge'), network: attr(source, 'network') }),
    target:
      target === undefined
        ? undefined
        : defined({ dev: attr(target, 'dev') ?? '', managed: attr(target, 'managed') as 'yes' | 'no' | undefined }),
    model: attr(kid(n, 'model'), 'type'),
  });
}

function parseChardev(n: XNode): DomainChardev {
  const target = kid(n, 'target');
  const port = attr(target, 'port');
  return defined({
    type: (attr(n, 'type') ?? 'pty') as DomainChardev['type'],
    sourcePath: attr(kid(n, 'source'), 'path'),
    log:
      kid(n, 'log') === undefined
        ? undefined
        : defined({
            file: attr(kid(n, 'log'), 'file') ?? '',
            append: attr(kid(n, 'log'), 'append') as 'on' | 'off' | undefined,
          }),
    target:
      target === undefined
        ? undefined
        : defined({ type: attr(target, 'type'), port: port === undefined ? undefined : Number(port) }),
  });
}

// What virtwire's own definition gives every VM (or libvirt adds by itself): these are replaced,
// not lost, when a domain is adopted.
const REPLACED = new Set(['emulator', 'interface', 'serial', 'console', 'memballoon', 'rng', 'controller']);

/**
 * The parts of a domain that virtwire's model does not carry, each described for a person:
 * adopting the domain (import) redefines it without them. The first disk (device='disk') is
 * adopted as the boot disk; any other disk, graphics, sound, host devices and so on are not.
 */
export function unmodelledDevices(xml: string): string[] {
  const d = (parseXmlSync(xml).domain ?? {}) as XNode;
  const devices = kid(d, 'devices');
  const out: string[] = [];
  const os = kid(d, 'os');
  if (attr(os, 'firmware') || kid(os, 'loader'))
    out.push(`firmware ${attr(os, 'firmware') ?? body(kid(os, 'loader')) ?? 'loader'} (virtwire boots with SeaBIOS)`);
  let bootDisk = true;
  for (const [kind, nodes] of Object.entries(devices ?? {})) {
    if (kind === '$' || kind === '_' || REPLACED.has(kind)) continue;
    for (const n of nodes as XNode[]) {
      if (kind === 'disk' && (attr(n, 'device') ?? 'disk') === 'disk' && bootDisk) {
        bootDisk = false;
        continue;
      }
      // libvirt adds the PS/2 mouse and keyboard of every x86 machine itself, and a silent audio backend
      if (kind === 'input' && attr(n, 'bus') === 'ps2') continue;
      if (kind === 'audio' && attr(n, 'type') === 'none') continue;
      const what = [
        attr(n, 'type'),
        attr(n, 'device'),
        attr(n, 'model'),
        attr(kid(n, 'model'), 'type'),
        attr(kid(n, 'target'), 'dev'),
      ];
      const source = attr(kid(n, 'source'), 'file') ?? attr(kid(n, 'source'), 'dev');
      out.push(
        `${kind}${what
          .filter(Boolean)
          .map((w) => ` ${w}`)
          .join('')}${source ? ` (${source})` : ''}`,
      );
    }
  }
  return out;
}
