// A dual-stack network through the real CLI, with a real test guest: `validate` names a prefix
// that is not a /64 at its path; `apply` creates it and `output --json` gives the NIC's ip6; a
// plan right after is empty; the bridge's IPv6 address removed by hand is drift that `plan`
// shows and `apply` repairs.
import { execa } from 'execa';
import { rmSync, writeFileSync } from 'node:fs';
import { buildTestGuest, type TestGuestImage } from '../../lib/testing/index.js';
import { bridgeName, deriveMac, slaacOf } from '../../lib/spec/index.js';
import { describeAsRoot } from '../helpers/root.js';
import { guestYaml } from '../helpers/spec-yaml.js';
import { keepIpv6Forwarding } from '../helpers/ipv6.js';
import { cliHarness } from '../helpers/cli.js';

const { dir, file, cli } = cliHarness('vw6c');
const TENANT = 'vw6ct';
const bridge = bridgeName(TENANT);
let image: TestGuestImage;
let restoreForwarding: () => Promise<void> = async () => {};

function writeSpec(cidr6: string, withVm = true): void {
  writeFileSync(
    file,
    [
      'networks:',
      `  - { tenant: ${TENANT}, cidr: 10.94.0.0/24, cidr6: "${cidr6}" }`,
      'vms:',
      ...(withVm ? [guestYaml(image, 'vw6c-a', TENANT)] : []),
      '',
    ].join('\n'),
  );
}
const bridge6 = async () =>
  (
    JSON.parse((await execa('ip', ['-j', '-6', 'addr', 'show', 'dev', bridge, 'scope', 'global'])).stdout) as {
      addr_info: { local?: string; prefixlen?: number }[];
    }[]
  ).flatMap((l) => l.addr_info.filter((a) => a.local).map((a) => `${a.local}/${a.prefixlen}`));

describeAsRoot('a dual-stack network through the CLI (real guest)', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
    restoreForwarding = await keepIpv6Forwarding();
  });
  afterAll(async () => {
    writeSpec('fd00:94::/64', false);
    await cli('destroy', '-f', file, '--auto-approve');
    await restoreForwarding();
    rmSync(dir, { recursive: true, force: true });
  });

  test('validate: a prefix that is not a /64, named at its path; nothing changed', async () => {
    writeSpec('fd00:94::/48');
    const r = await cli('validate', '-f', file);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/networks\[0\]\.cidr6: prefix \/48 is not \/64/);
    expect((await execa('ip', ['link', 'show', bridge], { reject: false })).exitCode).not.toBe(0);
  });

  test("apply, the NIC's ip6 in output; plan empty; the bridge's IPv6 address removed by hand is drift, repaired", async () => {
    writeSpec('fd00:94::/64');
    expect((await cli('apply', '-f', file, '-auto-approve')).exitCode).toBe(0);
    const out = JSON.parse((await cli('output', '--json')).stdout) as {
      vms: Record<string, { nics: { ip6?: string }[] }>;
    };
    const mac = deriveMac('vw6c-a\u00000');
    expect(out.vms['vw6c-a']!.nics[0]!.ip6).toBe(slaacOf(mac, 'fd00:94::'));
    expect(await bridge6()).toEqual(['fd00:94::1/64']);
    expect((await cli('plan', '-f', file)).stdout).toContain('No changes.');

    await execa('ip', ['-6', 'addr', 'del', 'fd00:94::1/64', 'dev', bridge]);
    const drift = await cli('plan', '-f', file, '-detailed-exitcode');
    expect(drift.exitCode).toBe(2);
    expect(drift.stdout).toMatch(new RegExp(`network ${TENANT} — repair`));
    expect((await cli('apply', '-f', file, '-auto-approve')).exitCode).toBe(0);
    expect(await bridge6()).toEqual(['fd00:94::1/64']);
    expect((await cli('plan', '-f', file)).stdout).toContain('No changes.');
  });
});
