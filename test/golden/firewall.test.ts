// Golden firewall batches: each case under firewall/ (host networks, ports, security groups)
// renders byte-for-byte to the nft script (<name>.nft) and the iptables-restore and
// ebtables-restore files (<name>.iptables) each backend sends to a host where nothing of
// virtwire's exists. These pin the tenant policy: a change to a rule shows here, in both backends,
// and a refactor of the renderers must leave them unchanged. `npm run golden:update` writes them.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { caseState, firewallBatches } from '../../scripts/golden/firewall-batches.js';

const dir = new URL('firewall/', import.meta.url);
const cases = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.replace(/\.json$/, ''));

describe('golden firewall batches', () => {
  test('there are cases', () => expect(cases.length).toBeGreaterThanOrEqual(4));

  test.each(cases.flatMap((c) => [[c, 'nftables'] as const, [c, 'iptables'] as const]))(
    '%s renders byte-for-byte in %s',
    async (name, kind) => {
      const state = caseState(readFileSync(new URL(`${name}.json`, dir), 'utf8'));
      const file = new URL(`${name}.${kind === 'nftables' ? 'nft' : 'iptables'}`, dir);
      if (!existsSync(file))
        throw new Error(`golden file ${file.pathname} is missing: run npm run golden:update and review it`);
      expect(await firewallBatches(state, kind)).toBe(readFileSync(file, 'utf8'));
    },
  );

  test('a case that changes one rule changes its batches (the comparison is not a rubber stamp)', async () => {
    const state = caseState(readFileSync(new URL('two-tenants.json', dir), 'utf8'));
    const before = await firewallBatches(state, 'nftables');
    state.networks[0]!.ports[0]!.ip = '10.10.0.12';
    expect(await firewallBatches(state, 'nftables')).not.toBe(before);
  });
});
