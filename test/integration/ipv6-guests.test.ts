// Dual-stack tenants with real guests (the test guest: a Debian kernel, busybox; its own kernel
// forms its SLAAC address from dnsmasq's router advertisements): createVm reports each NIC's ip6
// and the guest holds exactly that address; two guests of one tenant reach each other over IPv6
// (HTTP to [ip6], ping6) and by name (AAAA); a second tenant's guest cannot (its probes captured
// leaving its tap, never arriving); the outside sees NAT66'd traffic from the host's address; the
// hostile guest's spoofed IPv6 source and rogue router advertisement are captured leaving its tap
// and never reach its neighbour, whose addresses stay its own.
import { execa, type ResultPromise } from 'execa';
import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { linkLocalOf, validateVm } from '../../lib/spec/index.js';
import { buildTestGuest, GuestLab, waitForConsole, consoleText, testGuestSpec } from '../../lib/testing/index.js';
import type { CreatedVm } from '../../types/vm.js';
import { describeAsRoot } from '../helpers/root.js';
import { Lab } from '../helpers/lab.js';
import { waitFor } from '../helpers/wait.js';
import { keepIpv6Forwarding } from '../helpers/ipv6.js';

const stateDir = mkdtempSync(join(tmpdir(), 'vw6g-'));
chmodSync(stateDir, 0o755);
const lab = new Lab('vw6g');
const guests = new GuestLab({ stateDir, timeoutMs: 150_000 });
const UP = 'vw6gup0';
const OUT6 = { host: 'fd00:98::1', outside: 'fd00:98::2' } as const;
const T = { tenant: 'vw6gt', cidr: '10.92.0.0/24', cidr6: 'fd00:92::/64' };
const U = { tenant: 'vw6gu', cidr: '10.93.0.0/24', cidr6: 'fd00:93::/64' };
const ADDR6 = /VIRTWIRE-ADDR6 ip6=(\S+)\r?\n/;
const V6_RANGES = ['fd00:92::/64', 'fd00:93::/64', 'fd00:98::/64', 'fd00:66::/64'];

interface Frame {
  dev: string;
  /** In: sent by the device's guest; Out: delivered to it */
  dir: string;
  text: string;
}
const frames: Frame[] = [];
let capture: ResultPromise | undefined;
let restoreForwarding: () => Promise<void> = async () => {};
let vic: CreatedVm;
let atk: CreatedVm;
let oth: CreatedVm;
let outsideClients: Set<string>;
const vicSteps: string[] = [];
let vicAnswered = false;
const sent = (vm: CreatedVm, what: RegExp) =>
  frames.filter((f) => f.dev === vm.nics[0]!.tap && f.dir !== 'Out' && what.test(f.text)).length;
const delivered = (vm: CreatedVm, what: RegExp) =>
  frames.filter((f) => f.dev === vm.nics[0]!.tap && f.dir === 'Out' && what.test(f.text)).length;
const probe = (vm: CreatedVm, kind: string, target: string) =>
  [
    ...consoleText(vm).matchAll(
      new RegExp(`VIRTWIRE-PROBE round=\\d+ ${kind} ${target.replace(/[[\]]/g, '\\$&')} (\\S+)`, 'g'),
    ),
  ].map((m) => m[1]!);

describeAsRoot('dual-stack tenants with real guests: SLAAC, IPv6 between guests, NAT66, a hostile guest', () => {
  beforeAll(async () => {
    const image = await buildTestGuest();
    // the IPv6 prefixes this test puts on devices are not this host's
    const routes = (await execa('ip', ['-6', 'route', 'show'])).stdout;
    for (const r of V6_RANGES) expect([r, routes.includes(r.replace('::/64', '::'))]).toEqual([r, false]);
    restoreForwarding = await keepIpv6Forwarding();
    await lab.sweep();
    await execa('ip', ['link', 'del', UP], { reject: false });
    const out = await lab.netns('out');
    await execa('ip', ['link', 'add', UP, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', out]);
    await execa('ip', ['-6', 'addr', 'add', `${OUT6.host}/64`, 'dev', UP, 'nodad']);
    await execa('ip', ['link', 'set', UP, 'up']);
    await lab.exec(out, ['ip', '-6', 'addr', 'add', `${OUT6.outside}/64`, 'dev', 'eth0', 'nodad']);
    await lab.exec(out, ['ip', 'link', 'set', 'eth0', 'up']);
    outsideClients = await lab.serveHttp(out, '::', 8080, 'outside');
    capture = execa('tcpdump', ['-i', 'any', '-n', '-e', '-l', '-U', 'icmp6 or (ip6 and tcp port 80)'], {
      reject: false,
      buffer: false,
    });
    capture.stdout!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        const m = /^\S+ (\S+)\s+(In|Out|B|M|P)\s+ifindex \d+ [0-9a-f:]{17} (.*)$/.exec(line);
        if (m) frames.push({ dev: m[1]!, dir: m[2]!, text: m[3]! });
      }
    });
    let said = '';
    capture.stderr!.on('data', (d: Buffer) => (said += d.toString()));
    await waitFor('tcpdump to listen', 10_000, () => said.includes('listening'));

    // the victim's address is known before it boots: its SLAAC address, from its MAC
    const vicSpec = testGuestSpec(image, 'vw6g-vic', [{ network: T }], ['addrs6:eth0']);
    const vicIp6 = validateVm(vicSpec).nics[0]!.ip6!;
    // ready when it answers at its ip6 (waitFor 'ip6'): checked the moment createVm returns
    vic = await guests.create(vicSpec, { waitFor: 'ip6', onProgress: (e) => vicSteps.push(`${e.step} ${e.status}`) });
    vicAnswered = (await execa('ping', ['-6', '-n', '-c', '1', '-W', '1', vicIp6], { reject: false })).exitCode === 0;
    atk = await guests.create(
      testGuestSpec(
        image,
        'vw6g-atk',
        [{ network: T }],
        [`http:[${vicIp6}]`, `ping6:${vicIp6}`, 'aaaa:vw6g-vic', `http:[${OUT6.outside}]:8080`],
        { attacks: ['spoof6', 'ra6'], victim6: vicIp6 },
      ),
    );
    oth = await guests.create(
      testGuestSpec(image, 'vw6g-oth', [{ network: U }], [`ping6:${vicIp6}`, `http:[${vicIp6}]`]),
    );
    // two rounds of every attack and probe once all three have their IPv6 address
    for (const vm of [vic, atk, oth]) await waitForConsole(vm, ADDR6, 60_000);
    const last = (vm: CreatedVm) =>
      Number([...consoleText(vm).matchAll(/VIRTWIRE-PROBE round=(\d+)/g)].pop()?.[1] ?? 0);
    const [a, o] = [last(atk), last(oth)];
    await waitForConsole(
      atk,
      new RegExp(`VIRTWIRE-PROBE round=${a + 2} http \\[${OUT6.outside}\\]\\S* \\S+\r?\n`),
      120_000,
    );
    await waitForConsole(oth, new RegExp(`VIRTWIRE-PROBE round=${o + 2} http \\S+ \\S+\r?\n`), 60_000);
  }, 500_000);

  afterAll(async () => {
    capture?.kill('SIGTERM');
    await guests.destroyAll();
    await lab.cleanup();
    await execa('ip', ['link', 'del', UP], { reject: false });
    // IPv6 forwarding as this machine had it (the host plane turned it on for the tenants)
    await restoreForwarding();
    rmSync(stateDir, { recursive: true, force: true });
  });

  test("createVm reports each NIC's ip6, and the guest's kernel took exactly that address", async () => {
    for (const vm of [vic, atk, oth]) {
      const expected = vm.nics[0]!.ip6!;
      expect(expected).toMatch(vm === oth ? /^fd00:93::/ : /^fd00:92::/);
      expect((await waitForConsole(vm, ADDR6, 30_000))[1]).toBe(expected);
    }
  });

  test("waitFor 'ip6': createVm returned once the guest answered at its ip6", () => {
    expect(vicSteps).toEqual(expect.arrayContaining(['lease done', 'ip6 start', 'ip6 done']));
    expect(vicSteps.indexOf('ip6 start')).toBeGreaterThan(vicSteps.indexOf('lease done'));
    expect(vicAnswered).toBe(true);
  });

  test('two guests of one tenant reach each other over IPv6, by address and by name (AAAA)', () => {
    const vicIp6 = vic.nics[0]!.ip6!;
    expect(probe(atk, 'http', `[${vicIp6}]`)).toContain('ok');
    expect(probe(atk, 'ping6', vicIp6)).toContain('ok');
    expect(probe(atk, 'aaaa', 'vw6g-vic')).toContain(vicIp6);
  });

  test("another tenant's guest cannot reach them: its probes leave its tap and never arrive", () => {
    const vicIp6 = vic.nics[0]!.ip6!;
    expect(probe(oth, 'ping6', vicIp6).length).toBeGreaterThanOrEqual(2);
    expect(new Set([...probe(oth, 'ping6', vicIp6), ...probe(oth, 'http', `[${vicIp6}]`)])).toEqual(new Set(['fail']));
    const echo = new RegExp(`${oth.nics[0]!.ip6} > ${vicIp6}: ICMP6, echo request`);
    expect(sent(oth, echo)).toBeGreaterThan(0);
    expect(delivered(vic, echo)).toBe(0);
    // while the attacker's (same tenant) arrive: the path to the victim was open all along
    expect(delivered(vic, new RegExp(`${atk.nics[0]!.ip6} > ${vicIp6}: ICMP6, echo request`))).toBeGreaterThan(0);
  });

  test("outbound IPv6 is NAT66'd: the outside sees the host's address", () => {
    expect(probe(atk, 'http', `[${OUT6.outside}]:8080`)).toContain('ok');
    expect([...outsideClients]).toEqual([OUT6.host]);
  });

  test('a spoofed IPv6 source and a rogue RA leave the hostile guest and never reach its neighbour', () => {
    const vicIp6 = vic.nics[0]!.ip6!;
    const rounds = consoleText(atk).match(/VIRTWIRE-ATTACK round=\d+ ra6 fd00:66::\/64 from \S+ sent/g) ?? [];
    expect(rounds.length).toBeGreaterThanOrEqual(2);
    const spoofed = /VIRTWIRE-ATTACK round=\d+ spoof6 (\S+) /.exec(consoleText(atk))![1]!;
    expect(spoofed).not.toBe(atk.nics[0]!.ip6);
    const spoof = new RegExp(`${spoofed} > ${vicIp6}: ICMP6, echo request`);
    // the gateway's own advertisements reach the victim; the attacker's, from its link-local address, must not
    const ra = new RegExp(`${linkLocalOf(atk.nics[0]!.mac)} > ff02::1: ICMP6, router advertisement`);
    expect([sent(atk, spoof) > 0, delivered(vic, spoof)]).toEqual([true, 0]);
    expect([sent(atk, ra) > 0, delivered(vic, ra)]).toEqual([true, 0]);
    expect(consoleText(atk)).toMatch(new RegExp(`spoof6 ${spoofed} ${vicIp6} unanswered`));
    // the victim's addresses stayed its own: nothing of the rogue prefix, every round
    // (its first rounds may come before its own SLAAC address: 'none')
    const seen = probe(vic, 'addrs6', 'eth0').filter((a) => a !== 'none');
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(new Set(seen)).toEqual(new Set([vicIp6]));
  });
});
