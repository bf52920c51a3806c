// Golden firewall batches: each case under firewall/ (host networks, ports, security groups)
// renders byte-for-byte to the nft script (<name>.nft) and the iptables-restore and
// ebtables-restore files (<name>.iptables) each backend sends to a host where nothing of
// virtwire's exists. These pin the tenant policy: a change to a rule shows here, in both backends,
// and a refactor of the renderers must leave them unchanged. `npm run golden:update` writes them.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { execa } from 'execa';
import { BACKENDS, caseState, firewallBatches } from '../../scripts/golden/firewall-batches.js';
import { isRoot } from '../helpers/root.js';

const dir = new URL('firewall/', import.meta.url);
const cases = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.replace(/\.json$/, ''));

describe('golden firewall batches', () => {
  test('there are cases', () => expect(cases.length).toBeGreaterThanOrEqual(4));

  test.each(cases.flatMap((c) => BACKENDS.map((k) => [c, k] as const)))(
    '%s renders byte-for-byte in %s',
    async (name, kind) => {
      const state = caseState(readFileSync(new URL(`${name}.json`, dir), 'utf8'));
      const file = new URL(`${name}.${kind === 'nftables' ? 'nft' : 'iptables'}`, dir);
      if (!existsSync(file))
        throw new Error(`golden file ${file.pathname} is missing: run npm run golden:update and review it`);
      expect(await firewallBatches(state, kind)).toBe(readFileSync(file, 'utf8'));
    },
  );

  // The tools' own parsers read every batch in check mode (nft -c, iptables-restore --test), in a
  // network namespace of their own: a rendering they would refuse fails here, not on a host.
  // ebtables-restore has no check mode; its files are applied for real by the integration tier.
  const checkTest = isRoot() ? test : test.skip;
  checkTest(
    'every nft, iptables and ip6tables batch parses (root: unshare -n; skipped without root, runs in npm test as root)',
    async () => {
      const heads = ['nft -f -', 'iptables-restore -w --noflush', 'ip6tables-restore -w --noflush'];
      const checked: string[] = [];
      for (const name of cases)
        for (const ext of ['nft', 'iptables']) {
          if (!existsSync(new URL(`${name}.${ext}`, dir))) continue; // a case of one backend
          const text = readFileSync(new URL(`${name}.${ext}`, dir), 'utf8');
          for (const chunk of text.split(/^# /m).slice(1)) {
            const [head, ...body] = chunk.split('\n');
            const cmd = head!.split(': ')[1]!;
            if (!heads.includes(cmd)) continue;
            const argv = cmd.startsWith('nft') ? ['nft', '-c', '-f', '-'] : [cmd.split(' ')[0]!, '--test', '--noflush'];
            const r = await execa('unshare', ['-n', ...argv], { input: body.join('\n'), reject: false });
            expect({ batch: `${name}.${ext}: ${head}`, stderr: r.stderr, exitCode: r.exitCode }).toMatchObject({
              exitCode: 0,
            });
            checked.push(head!);
          }
        }
      expect(checked.length).toBeGreaterThanOrEqual(15);
      // and the check mode is not a rubber stamp
      const bad = await execa('unshare', ['-n', 'nft', '-c', '-f', '-'], {
        input: 'table inet t {\n chain c {\n iifname @nosuchset drop\n }\n}\n',
        reject: false,
      });
      expect(bad.exitCode).not.toBe(0);
    },
  );

  test('a case that changes one rule changes its batches (the comparison is not a rubber stamp)', async () => {
    const state = caseState(readFileSync(new URL('two-tenants.json', dir), 'utf8'));
    const before = await firewallBatches(state, 'nftables');
    state.networks[0]!.ports[0]!.ip = '10.10.0.12';
    expect(await firewallBatches(state, 'nftables')).not.toBe(before);
  });
});
