// The binding against a real libvirtd (qemu:///system, started by scripts/setup-host.sh), with
// real QEMU processes under TCG. The guests here have no boot media: QEMU runs SeaBIOS, which is
// enough to exercise define/start/stop/events; guests that boot Linux are in the createVm tests.
import { execa } from 'execa';
import { Libvirt } from '../../lib/libvirt/index.js';
import { VIR_ERR } from '../../lib/errors/index.js';
import { domainToXml, buildXml } from '../../lib/xml/index.js';
import type { DomainXml } from '../../types/domain-xml.js';
import { libvirtSuite } from '../helpers/libvirt-suite.js';
import { describeAsRoot } from '../helpers/root.js';

const BRIDGE = 'vwtestlvbr0';

function qemuDomain(name: string): string {
  const model: DomainXml = {
    type: 'qemu',
    name,
    memoryKiB: 65536,
    vcpu: 1,
    os: { type: { arch: 'x86_64', machine: 'pc', value: 'hvm' } },
    devices: { emulator: '/usr/bin/qemu-system-x86_64', disks: [], interfaces: [], serials: [], consoles: [], rngs: [], memballoon: { model: 'none' } },
  };
  return domainToXml(model);
}

// forward mode='bridge' on a bridge the test made: libvirt adds no firewall rules and starts no
// dnsmasq for it, so the host's own firewall is never touched.
const bridgeNetwork = (name: string) => buildXml({ network: { name, forward: { $: { mode: 'bridge' } }, bridge: { $: { name: BRIDGE } } } });

describeAsRoot('libvirt binding on a real libvirtd (qemu:///system)', () => {
  beforeAll(async () => {
    // a run killed half-way may have left it behind
    await execa('ip', ['link', 'del', BRIDGE], { reject: false });
    await execa('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
  });
  afterAll(async () => {
    await execa('ip', ['link', 'del', BRIDGE], { reject: false });
    await Libvirt.shutdown();
  });

  libvirtSuite({ uri: 'qemu:///system', domainXml: qemuDomain, networkXml: bridgeNetwork, prefix: 'vwtest-', alreadyRunningCode: VIR_ERR.OPERATION_INVALID });

  test('a started domain is a real QEMU process under TCG', async () => {
    const lv = await Libvirt.open('qemu:///system');
    const d = await lv.createDomain(qemuDomain('vwtest-tcg'));
    try {
      const { id } = await d.info();
      const pid = (await execa('pgrep', ['-f', '^/usr/bin/qemu-system-x86_64 .*guest=vwtest-tcg'])).stdout.trim();
      expect(Number(pid)).toBeGreaterThan(0);
      const cmdline = (await execa('cat', [`/proc/${pid}/cmdline`])).stdout.replace(/\0/g, ' ');
      expect(cmdline).toMatch(/-accel tcg|accel=tcg/);
      expect(id).toBeGreaterThan(0);
    } finally {
      await d.destroy();
      d.free();
      await lv.close();
    }
  });
});
