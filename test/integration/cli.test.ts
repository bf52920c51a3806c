// The real CLI binary, run as a user would, against qemu:///system with the test guest.
import { execa } from 'execa';
import { rmSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildTestGuest, type TestGuestImage } from '../../lib/testing/index.js';
import { pidAlive, FileLock } from '../../lib/host/index.js';
import { buildXml } from '../../lib/xml/index.js';
import { stableUuid, deriveMac, bridgeName, namespaceNames } from '../../lib/spec/index.js';
import { describeAsRoot } from '../helpers/root.js';
import { hostSnapshot, type HostSnapshot } from '../helpers/host-snapshot.js';
import { waitFor } from '../helpers/wait.js';
import { guestYaml } from '../helpers/spec-yaml.js';
import { BIN, cliHarness } from '../helpers/cli.js';

const { dir, stateDir, file, cli } = cliHarness('vwcli');

let image: TestGuestImage;
let before: HostSnapshot;
let forwarding: string;

const guest = (name: string, tenant: string, extra = '') => guestYaml(image, name, tenant, extra);
function writeSpec(...vms: string[]): void {
  writeFileSync(
    file,
    [
      'networks:',
      '  - tenant: vwclia',
      '    cidr: 10.81.0.0/24',
      '  - tenant: vwclib',
      '    cidr: 10.82.0.0/24',
      'vms:',
      ...vms,
      '',
    ].join('\n'),
  );
}

describeAsRoot('the virtwire CLI (real binary, real guests)', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
    forwarding = (await execa('sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim();
    before = await hostSnapshot(stateDir);
  });
  afterAll(async () => {
    writeSpec();
    await cli('destroy', '-f', file, '--auto-approve');
    await execa('sysctl', ['-q', '-w', `net.ipv4.ip_forward=${forwarding}`]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('bad files: one clear message each, exit 1, nothing changed', async () => {
    const cases: [string, RegExp][] = [
      ['vms: [\n  - name: x\n', /spec\.yaml:\d+: \(syntax\)/],
      [
        'vms:\n  - name: x\n    colour: red\n    boot: {kernel: /k}\n    nics: [{network: {tenant: t, cidr: 10.9.0.0/24}}]\n',
        /spec\.yaml:3: vms\[0\]\.colour: unknown field/,
      ],
      [
        'networks:\n  - {tenant: t, cidr: 10.9.0.0/24}\nvms:\n  - {name: x, boot: {kernel: /k}, nics: [{network: t}]}\n  - {name: x, boot: {kernel: /k}, nics: [{network: t}]}\n',
        /spec\.yaml:5: vms\[1\]\.name: VM x is defined twice/,
      ],
    ];
    for (const [text, message] of cases) {
      writeFileSync(file, text);
      const r = await cli('apply', '-f', file, '--auto-approve');
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(message);
    }
    expect(await hostSnapshot(stateDir)).toEqual(before);
  });

  test('plan, apply, plan again: converged', async () => {
    writeSpec(guest('vwcli-a1', 'vwclia'), guest('vwcli-b1', 'vwclib', 'qos: { egressKbps: 5000 }'));
    const plan = await cli('plan', '-f', file, '--detailed-exitcode');
    expect(plan.exitCode).toBe(2);
    expect(plan.stdout).toContain('Plan: 4 to add, 0 to change, 0 to replace, 0 to destroy, 0 to repair.');
    const json = JSON.parse((await cli('plan', '-f', file, '--json')).stdout);
    expect(json.summary).toEqual({ create: 4, update: 0, replace: 0, delete: 0, repair: 0 });
    const apply = await cli('apply', '-f', file, '--auto-approve');
    expect([apply.exitCode, apply.stderr]).toEqual([0, '']);
    expect(apply.stdout).toMatch(/^vwcli-a1: vwclia 10\.81\.0\.2$/m);
    expect(apply.stdout).toMatch(/^vwcli-b1: vwclib 10\.82\.0\.2$/m);
    const again = await cli('plan', '-f', file, '--detailed-exitcode');
    expect([again.exitCode, again.stdout.trim()]).toEqual([0, 'No changes. The host matches the spec.']);
    // the picture: both VMs on their bridges with the addresses they got, running, nothing drifted
    const live = await cli('graph', '--live', '-f', file);
    expect([live.exitCode, live.stderr]).toEqual([0, '']);
    expect(live.stdout).toMatch(/"vm:vwcli-a1" -> "bridge:-:vwclia" \[label="vwt[\w-]+\\n10\.81\.0\.2\\n/);
    expect(live.stdout).toMatch(/vwcli-b1\\n1 vCPU, 192 MiB\\n(tcg|kvm), running/);
    expect(live.stdout).toContain('out 5000 kbit/s');
    expect(live.stdout).not.toContain('drift:');
    // the desired graph of the same spec draws the same world without asking a host
    const desired = await cli('graph', '-f', file, '--format', 'mermaid');
    expect(desired.stdout).toMatch(/^flowchart LR\n {2}%% virtwire: desired\n/);
    expect(desired.stdout).toContain('10.82.0.2');
  });

  test('edits: a QoS change in place, a VM added, a VM removed', async () => {
    writeSpec(guest('vwcli-a1', 'vwclia'), guest('vwcli-a2', 'vwclia', 'qos: { egressKbps: 7000 }'));
    const plan = await cli('plan', '-f', file);
    expect(plan.stdout).toContain('+ vm vwcli-a2 (vwclia 10.81.0.3) — create');
    expect(plan.stdout).toContain('- vm vwcli-b1 — delete');
    expect(plan.stdout).toContain('- network vwclib — delete');
    expect((await cli('apply', '-f', file, '--auto-approve')).exitCode).toBe(0);
    writeSpec(guest('vwcli-a1', 'vwclia'), guest('vwcli-a2', 'vwclia', 'qos: { egressKbps: 9000 }'));
    const qos = await cli('plan', '-f', file);
    expect(qos.stdout).toContain('~ vm vwcli-a2 — update in place');
    expect(qos.stdout).toContain('~ nics[0].qos.egressKbps: 7000 -> 9000');
    const dry = await cli('apply', '-f', file, '--dry-run');
    expect(dry.stdout).toMatch(/tc -batch -[\s\S]*class replace dev vwi\S+ parent 1: classid 1:1 htb rate 9000kbit/);
    expect((await cli('plan', '-f', file, '--detailed-exitcode')).exitCode).toBe(2); // dry-run changed nothing
    expect((await cli('apply', '-f', file, '--auto-approve')).exitCode).toBe(0);
    expect((await cli('plan', '-f', file, '--detailed-exitcode')).exitCode).toBe(0);
  });

  test("drift behind virtwire's back is planned as repairs and applied", async () => {
    const pid = Number(readFileSync(join(stateDir, 'dnsmasq/vwclia/dnsmasq.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    const show = JSON.parse((await cli('show', '--json')).stdout).vms as { name: string; nics: { tap: string }[] }[];
    await execa('ip', ['link', 'del', show.find((v) => v.name === 'vwcli-a1')!.nics[0]!.tap]); // also stops nothing: QEMU keeps its fd
    await execa('nft', ['flush', 'table', 'bridge', 'virtwire']);
    await execa('virsh', ['-c', 'qemu:///system', 'destroy', 'vwcli-a2']);
    const plan = await cli('plan', '-f', file, '--detailed-exitcode');
    expect(plan.exitCode).toBe(2);
    expect(plan.stdout).toContain('~ vm vwcli-a2 — repair: domain is shutoff, not running');
    expect(plan.stdout).toMatch(
      /~ network vwclia — repair: .*devices missing.*dnsmasq not running.*firewall rules differ/,
    );
    // graph --live marks the same drift on the VM and on the tenant's bridge, and renders as SVG
    const svg = join(dir, 'drift.svg');
    const drawn = await cli('graph', '--live', '-f', file, '--format', 'svg', '-o', svg);
    expect([drawn.exitCode, drawn.stderr]).toEqual([0, '']);
    expect(drawn.stdout).toBe(`Wrote the live network (svg) to ${svg}.`);
    const picture = readFileSync(svg, 'utf8').replaceAll('&#45;', '-'); // Graphviz writes - as &#45;
    expect(picture).toMatch(/<svg [\s\S]*<title>vm:vwcli-a2<\/title>[\s\S]*drift: domain shutoff/);
    expect(picture).toMatch(/drift: devices missing.*dnsmasq not running.*firewall rules differ/);
    expect((await cli('apply', '-f', file, '--auto-approve')).exitCode).toBe(0);
    expect((await cli('plan', '-f', file, '--detailed-exitcode')).exitCode).toBe(0);
    expect((await cli('graph', '--live', '-f', file)).stdout).not.toContain('drift:');
  });

  test('import adopts a shut-off libvirt domain on a tenant bridge', async () => {
    const name = 'vwcli-imp';
    const xml = buildXml({
      domain: {
        $: { type: 'qemu' },
        name: 'vwext',
        uuid: stableUuid(name),
        memory: { $: { unit: 'KiB' }, _: 192 * 1024 },
        os: {
          type: { $: { arch: 'x86_64', machine: 'pc' }, _: 'hvm' },
          kernel: image.kernel,
          initrd: image.initrd,
          cmdline: `${image.cmdline} vw.name=${name}`,
        },
        devices: {
          interface: {
            $: { type: 'bridge' },
            mac: { $: { address: deriveMac(`${name}\0${0}`) } },
            source: { $: { bridge: bridgeName('vwclia') } },
            model: { $: { type: 'virtio' } },
          },
        },
      },
    });
    writeFileSync(join(dir, 'vwext.xml'), xml);
    await execa('virsh', ['-c', 'qemu:///system', 'define', join(dir, 'vwext.xml')]);
    const r = await cli('import', 'vwext', '--as', name);
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/^imported vwext as vwcli-imp: vwclia 10\.81\.0\.\d+ \(vwt/m);
    const show = JSON.parse((await cli('show', '--json')).stdout).vms as { name: string; state: string }[];
    expect(show.find((v) => v.name === name)?.state).toBe('shutoff');
    // not in the file: the plan would destroy it; once in the file, apply starts it
    expect((await cli('plan', '-f', file)).stdout).toContain(`- vm ${name} — delete`);
    writeSpec(
      guest('vwcli-a1', 'vwclia'),
      guest('vwcli-a2', 'vwclia', 'qos: { egressKbps: 9000 }'),
      guest(name, 'vwclia'),
    );
    expect((await cli('plan', '-f', file)).stdout).toContain(`~ vm ${name} — repair: domain is shutoff, not running`);
    const apply = await cli('apply', '-f', file, '--auto-approve');
    expect([apply.exitCode, apply.stderr]).toEqual([0, '']);
    expect((await cli('plan', '-f', file, '--detailed-exitcode')).exitCode).toBe(0);
  });

  test('a second apply while one runs fails at once, naming the holder', async () => {
    // held for real (flock), as a running apply holds it
    const held = FileLock.tryAcquire(join(stateDir, 'command.lock'), 'virtwire apply -f other.yaml')!;
    try {
      const r = await cli('apply', '-f', file, '--auto-approve');
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`locked by process ${process.pid} running "virtwire apply -f other.yaml"`);
    } finally {
      held.release();
    }
  });

  test('an apply killed with SIGKILL mid-way is finished by the next apply', async () => {
    writeSpec(
      guest('vwcli-a1', 'vwclia'),
      guest('vwcli-a2', 'vwclia', 'qos: { egressKbps: 9000 }'),
      guest('vwcli-b2', 'vwclib'),
    );
    const child = execa('node', [BIN, '--state-dir', stateDir, 'apply', '-f', file, '--auto-approve'], {
      reject: false,
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the apply to start creating', 60_000, () => out.includes('vm vwcli-b2: create start'));
    child.kill('SIGKILL');
    await child;
    expect(pidAlive(child.pid!)).toBe(false);
    const r = await cli('apply', '-f', file, '--auto-approve');
    expect(r.exitCode).toBe(0);
    expect((await cli('plan', '-f', file, '--detailed-exitcode')).exitCode).toBe(0);
    const vms = JSON.parse((await cli('show', '--json')).stdout).vms as { name: string; state: string }[];
    expect(vms.map((v) => [v.name, v.state])).toEqual([
      ['vwcli-a1', 'running'],
      ['vwcli-a2', 'running'],
      ['vwcli-b2', 'running'],
    ]);
  });

  test("a tenant with another's subnet: plan says why it gets a namespace, --dry-run shows what runs inside", async () => {
    writeSpec(guest('vwcli-a1', 'vwclia'), guest('vwcli-c1', 'vwclic'));
    const text = readFileSync(file, 'utf8').replace('vms:\n', '  - tenant: vwclic\n    cidr: 10.81.0.0/24\nvms:\n');
    writeFileSync(file, text);
    const netns = namespaceNames('vwclic').netns;
    const plan = await cli('plan', '-f', file);
    expect(plan.stdout).toMatch(
      /\+ network vwclic — create: gets a network namespace of its own .*10\.81\.0\.0\/24 overlaps tenant vwclia's 10\.81\.0\.0\/24/,
    );
    const dry = await cli('apply', '-f', file, '--dry-run');
    expect(dry.stdout).toContain(`netns add ${netns}`);
    expect(dry.stdout).toMatch(
      new RegExp(`ip netns exec ${netns} ip -batch -  <<EOF[\\s\\S]*addr add 10\\.81\\.0\\.1/24 dev vw-gw`),
    );
    expect(dry.stdout).toMatch(new RegExp(`ip netns exec ${netns} nft -f -  <<EOF[\\s\\S]*masquerade`));
    expect((await cli('apply', '-f', file, '--auto-approve')).exitCode).toBe(0);
    expect((await hostSnapshot(stateDir)).netns).toContain(netns);
    expect((await cli('plan', '-f', file, '--detailed-exitcode')).exitCode).toBe(0);
  });

  test('destroy leaves the host clean', async () => {
    const r = await cli('destroy', '-f', file, '--auto-approve');
    expect(r.exitCode).toBe(0);
    expect(await hostSnapshot(stateDir)).toEqual(before);
  });
});
