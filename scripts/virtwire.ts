#!/usr/bin/env node
// The virtwire CLI: plan / apply / destroy / show over a spec file, Terraform-style. A client of
// virtwire's public API only (lib/index.ts): this file parses flags, prints, and maps errors to
// exit codes (0 ok, 1 error, 2 changes present with --detailed-exitcode).
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline/promises';
import { readFileSync } from 'node:fs';
import {
  loadSpecFile,
  plan as makePlan,
  apply,
  dryRun,
  destroy,
  observe,
  importDomain,
  readState,
  withCommandLock,
  formatPlan,
  redactPlan,
  Libvirt,
  isVirtwireError,
  SpecError,
  DEFAULT_STATE_DIR,
  DEFAULT_URI,
} from '../lib/index.js';

const HELP = `virtwire — tenant networks and VMs on this host (or on the spec file's hosts:), from a spec file

Usage:
  virtwire plan    -f spec.yaml [--json] [--detailed-exitcode]
  virtwire apply   -f spec.yaml [--auto-approve] [--dry-run]
  virtwire destroy -f spec.yaml [--auto-approve]
  virtwire show    [--json]
  virtwire import  <domain> [--as <name>]   adopt a libvirt domain whose NICs are on tenant bridges

Global options:
  --state-dir DIR   state and VM files (default ${DEFAULT_STATE_DIR})
  --uri URI         libvirt connection for this host (default qemu:///system); the spec
                    file's hosts: each name their own (name, uri, ssh, stateDir)
  -q, --quiet       only errors and results;  -v, --verbose  more detail
  -h, --help        this text;  --version  the version

Examples:
  virtwire plan -f tenants.yaml --detailed-exitcode   # exit 2 when the host differs from the file
  virtwire apply -f tenants.yaml --auto-approve       # converge without asking
  virtwire apply -f tenants.yaml --dry-run            # print the host commands and libvirt calls only
  virtwire destroy -f tenants.yaml --auto-approve     # remove every VM, network, rule and file

Exit codes: 0 ok, 1 error, 2 changes present (plan --detailed-exitcode).`;

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    file: { type: 'string', short: 'f' },
    as: { type: 'string' },
    'state-dir': { type: 'string' },
    uri: { type: 'string' },
    json: { type: 'boolean' },
    'detailed-exitcode': { type: 'boolean' },
    'auto-approve': { type: 'boolean' },
    'dry-run': { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
    verbose: { type: 'boolean', short: 'v' },
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean' },
  },
});

const target = { stateDir: flags['state-dir'] ?? DEFAULT_STATE_DIR, uri: flags.uri ?? DEFAULT_URI };
const say = (line: string) => void (flags.quiet ? undefined : console.log(line));
const stamp = () => new Date().toISOString().slice(11, 19);

function specFile() {
  if (!flags.file)
    throw new SpecError([{ path: '-f', message: 'a spec file is required (-f spec.yaml)' }], 'command line');
  return loadSpecFile(flags.file);
}

async function confirm(what: string): Promise<void> {
  if (flags['auto-approve']) return;
  if (!process.stdin.isTTY) throw new Error(`refusing to ${what} without --auto-approve: stdin is not a terminal`);
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  const answer = await rl.question(`\nDo you want to ${what}? Only 'yes' will be accepted: `);
  rl.close();
  if (answer.trim() !== 'yes') throw new Error(`${what}: cancelled`);
}

/** On a terminal: one line per resource, redrawn in place as its status changes, with a timer. */
class LiveList {
  private readonly rows = new Map<string, { status: string; since: number; until?: number }>();
  private drawn = 0;
  private readonly timer = setInterval(() => this.draw(), 500);

  set(name: string, status: string): void {
    const since = this.rows.get(name)?.since ?? Date.now();
    const finished = status.endsWith('done') || status.includes('failed');
    this.rows.set(name, { status, since, ...(finished ? { until: Date.now() } : {}) });
    this.draw();
  }

  stop(): void {
    clearInterval(this.timer);
    this.draw();
  }

  private draw(): void {
    const mark = (s: string) => (s.endsWith('done') ? '✓' : s.includes('failed') ? '✗' : '…');
    const lines = [...this.rows].map(
      ([name, r]) =>
        `  ${mark(r.status)} ${name.padEnd(28)} ${r.status.padEnd(24)} ${(((r.until ?? Date.now()) - r.since) / 1000).toFixed(0).padStart(4)} s`,
    );
    process.stdout.write((this.drawn ? `\x1b[${this.drawn}A` : '') + lines.map((l) => `\x1b[2K${l}\n`).join(''));
    this.drawn = lines.length;
  }
}

async function main(command: string | undefined): Promise<number> {
  if (flags.version) {
    console.log(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
    return 0;
  }
  if (flags.help || !command) {
    console.log(HELP);
    return command || flags.help ? 0 : 1;
  }
  const argv = ['virtwire', ...process.argv.slice(2)].join(' ');
  switch (command) {
    case 'plan': {
      const spec = specFile();
      const p = await makePlan(spec, target);
      if (flags.json) console.log(JSON.stringify(redactPlan(p), null, 2));
      else console.log(formatPlan(p));
      return flags['detailed-exitcode'] && p.changes.length > 0 ? 2 : 0;
    }
    case 'apply': {
      const spec = specFile();
      const on = { ...target, ...(spec.hosts ? { hosts: spec.hosts } : {}) };
      return withCommandLock(target.stateDir, argv, async () => {
        const p = await makePlan(spec, on);
        say(formatPlan(p));
        if (p.changes.length === 0) return 0;
        if (flags['dry-run']) {
          const d = await dryRun(p, on);
          console.log('\n--dry-run: nothing was changed. apply would run:');
          for (const call of d.libvirt) console.log(`  libvirt: ${call}`);
          for (const cmd of d.disks) console.log(`  ${cmd}`);
          const batch = (argv: string[], lines: string[]) =>
            lines.length &&
            console.log(`  ${argv.join(' ')}  <<EOF\n${lines.map((l) => `    ${l}`).join('\n')}\n  EOF`);
          batch(['ip', '-batch', '-'], d.host.ip);
          batch(['bridge', '-batch', '-'], d.host.bridge);
          for (const c of d.host.firewall) batch(c.argv, c.input.trimEnd().split('\n'));
          batch(['tc', '-batch', '-'], d.host.tc);
          for (const x of d.host.changes) if (x.kind === 'dnsmasq') console.log(`  dnsmasq ${x.tenant}: ${x.action}`);
          return 0;
        }
        await confirm('perform these actions');
        const live = process.stdout.isTTY && !flags.quiet ? new LiveList() : undefined;
        const created = await apply(p, {
          ...on,
          report: (c, status, detail) =>
            live
              ? live.set(`${c.kind} ${c.name}`, `${c.action} ${status}${detail ? ` (${detail})` : ''}`)
              : say(`${stamp()} ${c.kind} ${c.name}: ${c.action} ${status}${detail ? ` (${detail})` : ''}`),
        });
        live?.stop();
        say(
          `\nApply complete: ${p.summary.create} added, ${p.summary.update} changed, ${p.summary.replace} replaced, ${p.summary.delete} destroyed, ${p.summary.repair} repaired.`,
        );
        for (const vm of created) console.log(`${vm.name}: ${vm.nics.map((n) => `${n.tenant} ${n.ip}`).join(', ')}`);
        return 0;
      });
    }
    case 'destroy': {
      // the same file as apply: refuse a broken one before anything happens; its hosts: reach the VMs
      const spec = specFile();
      const on = { ...target, ...(spec.hosts ? { hosts: spec.hosts } : {}) };
      return withCommandLock(target.stateDir, argv, async () => {
        const names = readState(target.stateDir).map((r) => r.vm.name);
        say(
          names.length
            ? names.map((n) => `  - vm ${n}`).join('\n')
            : 'No VMs in the state; removing any virtwire leftovers on the host.',
        );
        if (names.length) await confirm(`destroy ${names.length} VM(s)`);
        await destroy({ ...on, report: (n) => say(`${stamp()} vm ${n}: destroyed`) });
        say('Destroy complete.');
        return 0;
      });
    }
    case 'show': {
      const records = readState(target.stateDir);
      const { domains } = await observe(target);
      const rows = records.map((r) => ({
        name: r.vm.name,
        host: r.host ?? '(this machine)',
        accel: r.accel,
        state: domains.get(r.vm.name) ?? 'missing',
        nics: r.vm.nics.map((n) => ({ tenant: n.network.tenant, ip: n.ip, mac: n.mac, tap: n.tap })),
      }));
      if (flags.json) console.log(JSON.stringify(rows, null, 2));
      else {
        console.log('| VM | host | state | accel | tenant | IP | MAC | tap |\n|---|---|---|---|---|---|---|---|');
        for (const r of rows)
          for (const n of r.nics)
            console.log(
              `| ${r.name} | ${r.host} | ${r.state} | ${r.accel} | ${n.tenant} | ${n.ip} | ${n.mac} | ${n.tap} |`,
            );
      }
      return 0;
    }
    case 'import': {
      const domain = positionals[1];
      if (!domain)
        throw new SpecError(
          [{ path: '<domain>', message: 'usage: virtwire import <domain> --as <name>' }],
          'command line',
        );
      return withCommandLock(target.stateDir, argv, async () => {
        const vm = await importDomain(domain, flags.as ?? domain, target);
        say(
          `imported ${domain} as ${vm.name}: ${vm.nics.map((n) => `${n.network.tenant} ${n.ip} (${n.tap})`).join(', ')}`,
        );
        say('Add it to your spec file under vms: to keep it; a plan without it will destroy it.');
        return 0;
      });
    }
    default:
      console.error(`unknown command ${command}\n\n${HELP}`);
      return 1;
  }
}

try {
  process.exitCode = await main(positionals[0]);
} catch (e) {
  if (isVirtwireError(e) && flags.verbose && e.cause) console.error(e.cause);
  console.error(`Error: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  await Libvirt.shutdown();
}
