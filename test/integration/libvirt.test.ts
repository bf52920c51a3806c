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
import { buildTestGuest, waitForConsole, type TestGuestImage } from '../../lib/testing/index.js';
import { mkdtempSync, chmodSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BRIDGE = 'vwtestlvbr0';

// The test guest (Debian kernel + busybox, built by scripts/prepare.sh) boots for real; without
// a NIC its init stops at DHCP, which is all the lifecycle tests need.
let image: TestGuestImage | undefined;
const logDir = mkdtempSync(join(tmpdir(), 'vwlvtest-'));
chmodSync(logDir, 0o755); // QEMU runs as libvirt-qemu and writes the serial log here

function qemuDomain(name: string): string {
  const log = join(logDir, `${name}.log`);
  const model: DomainXml = {
    type: 'qemu',
    name,
    memoryKiB: 131072,
    vcpu: 1,
    os: {
      type: { arch: 'x86_64', machine: 'pc', value: 'hvm' },
      ...(image ? { kernel: image.kernel, initrd: image.initrd, cmdline: `${image.cmdline} vw.name=${name}` } : {}),
    },
    devices: {
      emulator: '/usr/bin/qemu-system-x86_64',
      disks: [],
      interfaces: [],
      rngs: [],
      memballoon: { model: 'none' },
      serials: [{ type: 'file', sourcePath: log, target: { port: 0 } }],
      consoles: [{ type: 'file', sourcePath: log, target: { type: 'serial', port: 0 } }],
    },
  };
  return domainToXml(model);
}

// forward mode='bridge' on a bridge the test made: libvirt adds no firewall rules and starts no
// dnsmasq for it, so the host's own firewall is never touched.
const bridgeNetwork = (name: string) =>
  buildXml({ network: { name, forward: { $: { mode: 'bridge' } }, bridge: { $: { name: BRIDGE } } } });

describeAsRoot('libvirt binding on a real libvirtd (qemu:///system)', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
    // a run killed half-way may have left it behind
    await execa('ip', ['link', 'del', BRIDGE], { reject: false });
    await execa('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
  });
  afterAll(async () => {
    await execa('ip', ['link', 'del', BRIDGE], { reject: false });
    await Libvirt.shutdown();
    rmSync(logDir, { recursive: true, force: true });
  });

  libvirtSuite({
    uri: 'qemu:///system',
    domainXml: qemuDomain,
    networkXml: bridgeNetwork,
    prefix: 'vwtest-',
    alreadyRunningCode: VIR_ERR.OPERATION_INVALID,
  });

  test("a connection idle past libvirtd's keepalive window (5 probes, 5 s apart) still answers", async () => {
    const lv = await Libvirt.open('qemu:///system');
    try {
      // idle time is the condition under test, not a synchronisation: libvirtd closes a
      // connection whose client left its probes unanswered for 30 s
      await new Promise((resolve) => setTimeout(resolve, 36_000));
      expect(Array.isArray(await lv.listDomains())).toBe(true);
    } finally {
      await lv.close();
    }
  }, 60_000);

  // The loop thread runs while a connection is open, in libvirt's poll, which Node cannot
  // interrupt when the program ends.
  test.each([
    ['ends on its own after closing its connection', 'await c.close();'],
    ['calls process.exit() after closing its connection', 'await c.close(); process.exit(0);'],
    ['ends on its own with its connection left open', ''],
    // no 'exit' handler runs (as under jest, whose `process` is its own object): the loop must
    // have stopped with the last connection
    [
      'ends without exit handlers (process.reallyExit) after closing its connection',
      'await c.close(); process.reallyExit(0);',
    ],
  ])(
    'a program that %s exits at once',
    async (_what, ending) => {
      const lib = new URL('../../dist/lib/libvirt/index.js', import.meta.url).href;
      // a file, not `-e`: worker threads inherit node's flags, and --input-type fails their load
      const script = join(logDir, 'ending.mjs');
      writeFileSync(
        script,
        `import { Libvirt } from ${JSON.stringify(lib)};
const c = await Libvirt.open('qemu:///system');
await c.listDomains();
console.log('done');
${ending}
`,
      );
      // a deadline: before the fix, a program ending with its connection open hung until killed
      const r = await execa('node', [script], { timeout: 15_000, reject: false });
      expect({ exitCode: r.exitCode, timedOut: r.timedOut, stdout: r.stdout }).toEqual({
        exitCode: 0,
        timedOut: false,
        stdout: 'done',
      });
    },
    30_000,
  );

  test('a started domain is a real QEMU process under TCG, booting the Debian kernel', async () => {
    const lv = await Libvirt.open('qemu:///system');
    const d = await lv.createDomain(qemuDomain('vwtest-tcg'));
    try {
      const { id } = await d.info();
      const pid = (await execa('pgrep', ['-f', '^/usr/bin/qemu-system-x86_64 .*guest=vwtest-tcg'])).stdout.trim();
      expect(Number(pid)).toBeGreaterThan(0);
      const cmdline = (await execa('cat', [`/proc/${pid}/cmdline`])).stdout.replace(/\0/g, ' ');
      expect(cmdline).toMatch(/-accel tcg|accel=tcg/);
      expect(id).toBeGreaterThan(0);
      await waitForConsole(
        { serialLog: join(logDir, 'vwtest-tcg.log'), name: 'vwtest-tcg' },
        /VIRTWIRE-BOOT name=vwtest-tcg/,
        60_000,
      );
    } finally {
      await d.destroy();
      d.free();
      await lv.close();
    }
  });
});
