// Security groups with real guests, through the library: web lets tcp 80 (and its echo port 7) in
// from group app only. The guests probe each other every round and print the results on their
// consoles; app also holds one long connection to web's echo service. The kernel-level details
// (both backends, drift) are in security-groups-plane.test.ts.
import { execa } from 'execa';
import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createVm,
  deleteSecurityGroup,
  listSecurityGroups,
  putSecurityGroup,
  updateVm,
  SpecError,
} from '../../lib/index.js';
import { Libvirt } from '../../lib/libvirt/index.js';
import { buildTestGuest, GuestLab, consoleText, waitForConsole, testGuestSpec } from '../../lib/testing/index.js';
import type { TestGuestImage } from '../../lib/testing/index.js';
import type { SecurityGroupSpec, VmSpec } from '../../types/spec.js';
import type { CreatedVm } from '../../types/vm.js';
import { describeAsRoot } from '../helpers/root.js';
import { Capture } from '../helpers/capture.js';

const stateDir = mkdtempSync(join(tmpdir(), 'vwsg-'));
chmodSync(stateDir, 0o755);
const opts = { stateDir };
const guests = new GuestLab({ stateDir, timeoutMs: 150_000 });
const T = { tenant: 'vwsgt', cidr: '10.76.0.0/24' };
const IP = { web: '10.76.0.11', app: '10.76.0.12', other: '10.76.0.13', app2: '10.76.0.14' };

const webGroup = (peer: SecurityGroupSpec['rules'][number]['peer']): SecurityGroupSpec => ({
  name: 'web',
  tenant: T.tenant,
  rules: [{ direction: 'ingress', protocol: 'tcp', ports: [80, 7], peer }],
});

let image: TestGuestImage;
const vms: Record<string, CreatedVm> = {};

function spec(name: keyof typeof IP, groups: string[], hold = false): VmSpec {
  const nic = { network: T, ip: IP[name], ...(groups.length ? { securityGroups: groups } : {}) };
  return testGuestSpec(
    image,
    `vwsg-${name}`,
    [nic],
    name === 'web' ? [] : [`http:${IP.web}:80`, `tcp:${IP.web}:22`],
    hold ? { hold: IP.web } : {},
  );
}

/** The last probe round a guest has completed (0: none yet). */
const lastRound = (vm: CreatedVm) =>
  Math.max(0, ...[...consoleText(vm).matchAll(/VIRTWIRE-PROBE round=(\d+)/g)].map((m) => Number(m[1])));

/**
 * What `vm`'s probe of `kind target` said in the round after the next one (a round under way
 * when the rules changed may straddle the change), once it is complete.
 */
async function resultsFromNow(vm: CreatedVm, kind: string, target: string): Promise<string[]> {
  const from = lastRound(vm) + 2;
  // the verdict too: a console line can arrive in two reads, the verdict in the second
  await waitForConsole(vm, new RegExp(`round=${from} ${kind} ${target} (ok|fail)`), 60_000);
  return [...consoleText(vm).matchAll(new RegExp(`round=(\\d+) ${kind} ${target} (ok|fail)`, 'g'))]
    .filter((m) => Number(m[1]) === from)
    .map((m) => m[2]!);
}

describeAsRoot('security groups with real guests', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
    await putSecurityGroup({ name: 'app', tenant: T.tenant, rules: [] }, opts);
    await putSecurityGroup(webGroup({ group: 'app' }), opts);
    const [web, app, other] = await guests.createAll([
      spec('web', ['web']),
      spec('app', ['app'], true),
      spec('other', []),
    ]);
    Object.assign(vms, { web, app, other });
    await waitForConsole(web!, /VIRTWIRE-READY/, 60_000);
  }, 300_000);
  afterAll(async () => {
    await guests.destroyAll();
    for (const g of (await listSecurityGroups(opts)).reverse()) await deleteSecurityGroup(g.name, opts).catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
  });

  test('a NIC naming an unknown group, or another tenant’s: SpecError with paths, nothing created', async () => {
    await putSecurityGroup({ name: 'theirs', tenant: 'vwsgu', rules: [] }, opts);
    const bad = spec('app2', ['ghost', 'theirs']);
    const err = await createVm(bad, opts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    expect((err as SpecError).problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'nics[0].securityGroups[0]: no security group named ghost',
      'nics[0].securityGroups[1]: theirs is a group of tenant vwsgu, not vwsgt',
    ]);
    const lv = await Libvirt.open('qemu:///system');
    try {
      expect((await lv.listDomains()).map((d) => d.name)).not.toContain('vwsg-app2');
    } finally {
      await lv.close();
    }
    await expect(deleteSecurityGroup('app', opts)).rejects.toThrow(/still names security group app/);
    expect(await deleteSecurityGroup('theirs', opts)).toBe(true);
  });

  test('app reaches web:80 (and web replies); other does not; nobody reaches web:22', async () => {
    // other's SYNs are captured leaving its tap and never at web's, where app's arrive
    const syn = `tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0 and dst host ${IP.web}`;
    const left = await Capture.start('', vms.other!.nics[0]!.tap, 'in', syn);
    const arrived = await Capture.start('', vms.web!.nics[0]!.tap, 'out', syn);
    try {
      expect(await resultsFromNow(vms.app!, 'http', `${IP.web}:80`)).toEqual(['ok']);
      expect(await resultsFromNow(vms.app!, 'tcp', `${IP.web}:22`)).toEqual(['fail']);
      expect(await resultsFromNow(vms.other!, 'http', `${IP.web}:80`)).toEqual(['fail']);
      // the barrier: app's next round reaches web after other's attempt
      expect(await resultsFromNow(vms.app!, 'http', `${IP.web}:80`)).toEqual(['ok']);
      await arrived.saw(
        "app's SYN at web",
        new RegExp(`${IP.app.replaceAll('.', '\\.')}\\.\\d+ > ${IP.web.replaceAll('.', '\\.')}\\.80:`),
      );
      const fromOther = new RegExp(
        `${IP.other.replaceAll('.', '\\.')}\\.\\d+ > ${IP.web.replaceAll('.', '\\.')}\\.80:`,
      );
      expect(left.count(fromOther)).toBeGreaterThan(0);
      expect(arrived.lines.filter((l) => fromOther.test(l))).toEqual([]);
      // nobody's SYN to web:22 arrived either, though app's left
      const to22 = /> 10\.76\.0\.11\.22:/;
      expect(arrived.lines.filter((l) => to22.test(l))).toEqual([]);
    } finally {
      await left.stop();
      await arrived.stop();
    }
    // every guest took its lease from the tenant's dnsmasq with the groups in place
    for (const [name, vm] of Object.entries(vms))
      expect(consoleText(vm)).toContain(`VIRTWIRE-LEASE ip=${IP[name as keyof typeof IP]} `);
    await waitForConsole(vms.app!, /VIRTWIRE-HOLD 10\.76\.0\.11 echo=2/, 30_000);
  });

  test('a VM joining app (updateVm, live) reaches web; web untouched', async () => {
    const app2 = await guests.create(spec('app2', []));
    expect(await resultsFromNow(app2, 'http', `${IP.web}:80`)).toEqual(['fail']);
    const r = await updateVm(spec('app2', ['app']), opts);
    expect(r).toEqual({ changes: ['nics[0].securityGroups[0]'], live: true });
    expect(await resultsFromNow(app2, 'http', `${IP.web}:80`)).toEqual(['ok']);
    expect(consoleText(app2).split('VIRTWIRE-BOOT').length - 1).toBe(1);
  });

  test('web’s rule changed live to other’s /32: both results flip, app’s held connection is cut', async () => {
    const bootsBefore = consoleText(vms.web!).split('VIRTWIRE-BOOT').length;
    await putSecurityGroup(webGroup({ cidr: `${IP.other}/32` }), opts);
    expect(await resultsFromNow(vms.other!, 'http', `${IP.web}:80`)).toEqual(['ok']);
    expect(await resultsFromNow(vms.app!, 'http', `${IP.web}:80`)).toEqual(['fail']);
    // the connection app opened while it was allowed stops: its conntrack entry was removed
    await waitForConsole(vms.app!, /VIRTWIRE-HOLD 10\.76\.0\.11 stalled after echo=\d+/, 30_000);
    expect(consoleText(vms.web!).split('VIRTWIRE-BOOT').length).toBe(bootsBefore);
    expect((await listSecurityGroups(opts)).find((g) => g.name === 'web')!.rules[0]!.peer).toEqual({
      cidr: `${IP.other}/32`,
    });
  });

  test('destroying the last member leaves no policy behind for it', async () => {
    await guests.destroyAll();
    const rules = (await execa('nft', ['list', 'ruleset'])).stdout;
    expect(rules).not.toMatch(/sgc_|10\.76\.0\./);
  });
});
