// Benchmark for lib/libvirt (issue: libvirt binding). In one run, on libvirt's test:///default
// driver (no daemon, so the figures are the binding's own cost, not libvirtd's):
//   1. a trivial call (virConnectIsAlive) through koffi, against the same question asked by
//      spawning `virsh` (what wrapper scripts do);
//   2. define + lookup + undefine cycles through the binding (worker-thread calls), against the
//      same three operations each done by spawning `virsh`.
// test:///default keeps its state per connection, so a virsh process cannot look up what the
// previous one defined: each spawned virsh does one operation of the same kind on state it has
// (define a new domain; look up and undefine the driver's built-in 'test' domain). Where a real
// libvirtd answers on qemu:///system (root, after scripts/setup-host.sh) the cycle is also
// measured there, where both sides do exactly the same cycle.
import { execa } from 'execa';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Libvirt } from '../../lib/index.js';
import { buildXml } from '../../lib/xml/index.js';
import { printTable, rate, type Row } from './table.js';

const testXml = (name: string) =>
  buildXml({ domain: { $: { type: 'test' }, name, memory: 8192, os: { type: 'hvm' } } });
const qemuXml = (name: string) =>
  buildXml({
    domain: {
      $: { type: 'qemu' },
      name,
      memory: 65536,
      os: { type: { $: { arch: 'x86_64', machine: 'pc' }, _: 'hvm' } },
      devices: { emulator: '/usr/bin/qemu-system-x86_64' },
    },
  });

async function bindingCycles(lv: Libvirt, xml: (n: string) => string, n: number): Promise<number> {
  return rate(n, async (i) => {
    const name = `vwbench-${i}`;
    const d = await lv.defineDomain(xml(name));
    d.free();
    const found = await lv.lookupDomain(name);
    if (!found) throw new Error(`${name} not found after define`);
    await found.undefine();
    found.free();
  });
}

/** The baseline cycle: define, look up and undefine, each by spawning virsh. */
async function virshCycle(uri: string, file: string, xml: string, lookupName: string, n: number): Promise<number> {
  writeFileSync(file, xml);
  return rate(n, async () => {
    await execa('virsh', ['-c', uri, 'define', file]);
    await execa('virsh', ['-c', uri, 'domstate', lookupName]);
    await execa('virsh', ['-c', uri, 'undefine', lookupName]);
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vwbench-'));
  const rows: Row[] = [];
  try {
    const lv = await Libvirt.open('test:///default');
    for (let i = 0; i < 10_000; i++) lv.isAlive(); // warm-up
    const calls = 300_000;
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) lv.isAlive();
    const trivial = calls / ((performance.now() - t0) / 1000);
    const virshUri = await rate(20, () => execa('virsh', ['-c', 'test:///default', 'uri']));
    rows.push({
      what: 'trivial call, test:///default',
      unit: 'calls/s',
      ours: trivial,
      baseline: virshUri,
      baselineName: 'virsh uri, one spawn per call',
    });

    await bindingCycles(lv, testXml, 200); // warm-up: start the worker threads
    const cycles = await bindingCycles(lv, testXml, 3_000);
    const virshCycles = await virshCycle('test:///default', join(dir, 'd.xml'), testXml('vwbench-virsh'), 'test', 15);
    rows.push({
      what: 'define+lookup+undefine, test:///default',
      unit: 'cycles/s',
      ours: cycles,
      baseline: virshCycles,
      baselineName: 'virsh, one spawn per operation',
    });
    await lv.close();

    const system = await Libvirt.open('qemu:///system').catch(() => null);
    if (system) {
      const sysCycles = await bindingCycles(system, qemuXml, 100);
      const virshSys = await virshCycle(
        'qemu:///system',
        join(dir, 'q.xml'),
        qemuXml('vwbench-virsh'),
        'vwbench-virsh',
        10,
      );
      rows.push({
        what: 'define+lookup+undefine, qemu:///system',
        unit: 'cycles/s',
        ours: sysCycles,
        baseline: virshSys,
        baselineName: 'virsh, one spawn per operation',
      });
      await system.close();
    } else {
      console.log(
        'qemu:///system not reachable (needs root and libvirtd: scripts/setup-host.sh); measured test:///default only',
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await Libvirt.shutdown();
  }
  printTable(`libvirt binding (libvirt ${Libvirt.libraryVersion()}, node ${process.version})`, rows);
}

await main();
