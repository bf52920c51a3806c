// `npm run demo`: the main job on an embedded default. Boots two tenants' guests (the test
// guest: Debian kernel + busybox, under TCG here) with createVm, prints who got which address
// how fast, and the isolation matrix the guests measured themselves (each pings every other),
// then tears everything down again (`--keep` leaves the guests running). `--cloud` boots the
// Debian cloud image with cloud-init instead (scripts/demo-cloud.ts).
import { execFileSync } from 'node:child_process';
import { cloudDemo } from './demo-cloud.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createVm,
  destroyVm,
  graph,
  renderGraph,
  renderGraphSvg,
  DEFAULT_STATE_DIR,
  type CreatedVm,
  type VmSpec,
} from '../lib/index.js';
import { buildTestGuest, waitForConsole, consoleText, testGuestSpec } from '../lib/testing/index.js';

const keep = process.argv.includes('--keep');
const networks = {
  acme: { tenant: 'acme', cidr: '10.10.0.0/24' },
  globex: { tenant: 'globex', cidr: '10.20.0.0/24' },
};
const plan = [
  { name: 'acme-web', tenant: 'acme', ip: '10.10.0.11' },
  { name: 'acme-db', tenant: 'acme', ip: '10.10.0.12' },
  { name: 'globex-web', tenant: 'globex', ip: '10.20.0.11' },
  { name: 'globex-db', tenant: 'globex', ip: '10.20.0.12' },
] as const;

const sysctl = (...args: string[]) => execFileSync('sysctl', args, { encoding: 'utf8' }).trim();
const forwarding = sysctl('-n', 'net.ipv4.ip_forward');

async function main(): Promise<void> {
  const image = await buildTestGuest({ log: (l) => console.log(`demo: ${l}`) });
  console.log(`demo: booting ${plan.length} guests on 2 tenant networks (${image.kernelPackage})...`);
  const specs: VmSpec[] = plan.map((g) =>
    testGuestSpec(
      image,
      g.name,
      [{ network: networks[g.tenant], ip: g.ip }],
      plan.filter((o) => o !== g).map((o) => `ping:${o.ip}`),
    ),
  );
  const created: CreatedVm[] = [];
  try {
    const results = await Promise.allSettled(specs.map((s) => createVm(s)));
    for (const r of results) if (r.status === 'fulfilled') created.push(r.value);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;

    console.log('\n| VM         | tenant | IP         | accel | seconds to lease |');
    console.log('|------------|--------|------------|-------|------------------|');
    for (const vm of created) {
      const nic = vm.nics[0]!;
      console.log(
        `| ${vm.name.padEnd(10)} | ${nic.tenant.padEnd(6)} | ${nic.ip.padEnd(10)} | ${vm.accel.padEnd(5)} | ${(vm.readyMs / 1000).toFixed(1).padStart(16)} |`,
      );
    }

    // each guest pings every other in rounds; read the round after its tenant peer first answered
    const matrix = new Map<string, Map<string, string>>();
    for (const vm of created) {
      const me = plan.find((g) => g.name === vm.name)!;
      const peer = plan.find((g) => g.tenant === me.tenant && g !== me)!;
      const first = Number(
        (await waitForConsole(vm, new RegExp(`round=(\\d+) ping ${peer.ip.replace(/\./g, '\\.')} ok`), 90_000))[1],
      );
      await waitForConsole(vm, new RegExp(`round=${first + 2} `), 60_000);
      const row = new Map<string, string>();
      for (const line of consoleText(vm).split('\n')) {
        const m = new RegExp(`round=${first + 1} ping (\\S+) (ok|fail)`).exec(line);
        if (m) row.set(plan.find((g) => g.ip === m[1])!.name, m[2] === 'ok' ? 'reaches' : 'blocked');
      }
      matrix.set(vm.name, row);
    }
    console.log('\nisolation, measured from inside each guest (ping):\n');
    console.log(`| from \\ to  | ${plan.map((g) => g.name.padEnd(10)).join(' | ')} |`);
    console.log(`|------------|${plan.map(() => '------------').join('|')}|`);
    for (const g of plan) {
      console.log(
        `| ${g.name.padEnd(10)} | ${plan.map((o) => (o === g ? '-' : (matrix.get(g.name)?.get(o.name) ?? '?')).padEnd(10)).join(' | ')} |`,
      );
    }
    const leaks = plan.flatMap((g) =>
      plan.filter((o) => o.tenant !== g.tenant && matrix.get(g.name)?.get(o.name) !== 'blocked'),
    );
    const cut = plan.flatMap((g) =>
      plan.filter((o) => o !== g && o.tenant === g.tenant && matrix.get(g.name)?.get(o.name) !== 'reaches'),
    );
    if (leaks.length || cut.length)
      throw new Error(
        `isolation is wrong: ${leaks.length} cross-tenant paths open, ${cut.length} same-tenant paths cut`,
      );
    console.log('\ndemo: each tenant reaches itself and nothing else.');
    await drawNetwork();
  } finally {
    if (!keep) {
      for (const vm of created) await destroyVm(vm.name, { missingOk: true });
      sysctl('-q', '-w', `net.ipv4.ip_forward=${forwarding}`);
      console.log(`demo: destroyed ${created.length} guests and their networks (--keep leaves them running)`);
    }
  }
}

/** The network as it is now (`virtwire graph --live`), as SVG and DOT in the state dir. */
async function drawNetwork(): Promise<void> {
  const g = await graph({ live: true });
  const base = join(DEFAULT_STATE_DIR, 'demo-network');
  writeFileSync(`${base}.dot`, renderGraph(g, 'dot'));
  writeFileSync(`${base}.svg`, await renderGraphSvg(g));
  console.log(`demo: the network as it ran: ${base}.svg (and .dot; \`virtwire graph --live\` draws it anew)`);
}

if (process.argv.includes('--cloud')) await cloudDemo(keep);
else await main();
