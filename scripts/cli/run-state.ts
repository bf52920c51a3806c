// The commands over the state rather than a spec file: show, output, state list|show|rm|mv,
// refresh, force-unlock, import and console. Each reads or edits only what it names: `output` and
// `state list|show` read the records alone (no libvirt, no lock), the rest take the command lock.
import {
  listVms,
  readState,
  stateSerial,
  forgetVm,
  renameVm,
  refresh,
  forceUnlock,
  migrateState,
  redactStateUrl,
  importDomain,
  openConsole,
  redactVm,
  redactPlan,
  formatPlan,
  withCommandLock,
  VirtwireError,
  type VmRecord,
} from '../../lib/index.js';
import type { Ctx } from './program.js';
import { FORMAT_VERSION, planJson, readPlanFile, showJson, version } from './formats.js';

const scope = (ctx: Ctx) => ({ ...ctx.where, uri: ctx.uri });

/** A VM's name as given: Terraform users write addresses (`vm.web`); the name is the part after `vm.`. */
const vmName = (address: string) => address.replace(/^vm\./, '');

async function record(ctx: Ctx, address: string): Promise<VmRecord> {
  const name = vmName(address);
  const r = (await readState(ctx.where)).find((x) => x.vm.name === name);
  if (!r)
    throw new VirtwireError(
      'NOT_FOUND',
      `no VM named ${name} in the state (${ctx.where.state ?? ctx.stateDir}); see virtwire state list`,
    );
  return r;
}

/** `show`: the state's VMs; `show PLANFILE`: a saved plan, as it will be applied. */
export async function showCommand(ctx: Ctx, planFile: string | undefined, flags: { json?: boolean }): Promise<number> {
  if (planFile) {
    const saved = readPlanFile(planFile);
    if (flags.json) console.log(JSON.stringify(planJson(saved.plan), null, 2));
    else {
      ctx.ui.out(formatPlan(redactPlan(saved.plan)));
      ctx.ui.say(`\nSaved ${saved.created_at} from ${saved.spec_file} against state serial ${saved.serial}.`);
    }
    return 0;
  }
  const vms = await listVms(scope(ctx));
  if (flags.json) {
    console.log(JSON.stringify(showJson(vms, await stateSerial(ctx.where)), null, 2));
    return 0;
  }
  if (vms.length === 0) {
    ctx.ui.out('The state is empty.');
    return 0;
  }
  ctx.ui.out('| VM | host | state | accel | tenant | IP | MAC | tap |\n|---|---|---|---|---|---|---|---|');
  for (const v of vms)
    for (const n of v.nics)
      ctx.ui.out(
        `| ${v.name} | ${v.host ?? '(this machine)'} | ${v.state} | ${v.accel} | ${n.tenant} | ${n.ip} | ${n.mac} | ${n.tap} |`,
      );
  return 0;
}

const nicsOf = (r: VmRecord) =>
  r.vm.nics.map((n) => ({
    tenant: n.network.tenant,
    ip: n.ip,
    ...(n.ip6 ? { ip6: n.ip6 } : {}),
    mac: n.mac,
    tap: n.tap,
    ...(n.forwards ? { forwards: n.forwards } : {}),
    ...(n.floatingIp ? { floatingIp: n.floatingIp } : {}),
  }));

/**
 * Where a VM is reached from outside its tenant: `<address>:<port>/<protocol> -> <ip>:<port>` per
 * forward (`uplink`: the addresses of its host's uplink) and `<floating ip> -> <ip>`.
 */
const endpointsOf = (r: VmRecord) =>
  r.vm.nics.flatMap((n) => [
    ...(n.forwards ?? []).map((f) => `${f.address ?? 'uplink'}:${f.hostPort}/${f.protocol} -> ${n.ip}:${f.port}`),
    ...(n.floatingIp ? [`${n.floatingIp} -> ${n.ip}`] : []),
  ]);

/**
 * What a wrapper script needs from the state: each VM's host and NICs. `output NAME` prints the
 * VM's first IP alone (as `terraform output -raw` does), `--json` the documented object.
 */
export async function outputCommand(ctx: Ctx, name: string | undefined, flags: { json?: boolean }): Promise<number> {
  const records = name ? [await record(ctx, name)] : await readState(ctx.where);
  const value = (r: VmRecord) => ({
    host: r.host ?? null,
    ip: r.vm.nics[0]?.ip ?? null,
    nics: nicsOf(r),
    endpoints: endpointsOf(r),
  });
  if (flags.json) {
    const doc = name
      ? value(records[0]!)
      : { format_version: FORMAT_VERSION, vms: Object.fromEntries(records.map((r) => [r.vm.name, value(r)])) };
    console.log(JSON.stringify(doc, null, 2));
  } else if (name) {
    console.log(records[0]!.vm.nics[0]?.ip ?? '');
  } else {
    for (const r of records) {
      for (const n of nicsOf(r)) console.log(`${r.vm.name} ${r.host ?? '-'} ${n.tenant} ${n.ip} ${n.mac} ${n.tap}`);
      for (const e of endpointsOf(r)) console.log(`${r.vm.name} ${r.host ?? '-'} endpoint ${e}`);
    }
  }
  return 0;
}

export async function stateList(ctx: Ctx): Promise<number> {
  for (const r of await readState(ctx.where)) console.log(`vm.${r.vm.name}`);
  return 0;
}

export async function stateShow(ctx: Ctx, address: string): Promise<number> {
  const r = await record(ctx, address);
  console.log(
    JSON.stringify(
      { format_version: FORMAT_VERSION, virtwire_version: version(), address: `vm.${r.vm.name}`, ...redactVm(r) },
      null,
      2,
    ),
  );
  return 0;
}

/** `state rm`: the records go, nothing on a host changes; the next plan sees the domains as not in the state. */
export async function stateRm(ctx: Ctx, addresses: string[]): Promise<number> {
  return withCommandLock(
    ctx.where,
    ctx.line,
    async () => {
      for (const a of addresses) await record(ctx, a); // every name checked before any is removed
      for (const a of addresses) {
        await forgetVm(vmName(a), scope(ctx));
        ctx.ui.out(`Removed vm.${vmName(a)} from the state (its domain, disks and taps are untouched)`);
      }
      ctx.ui.say(`Successfully removed ${addresses.length} VM(s) from the state.`);
      return 0;
    },
    ctx.lock(),
  );
}

export async function stateMv(ctx: Ctx, from: string, to: string): Promise<number> {
  return withCommandLock(
    ctx.where,
    ctx.line,
    async () => {
      await record(ctx, from);
      await renameVm(vmName(from), vmName(to), scope(ctx));
      ctx.ui.out(`Moved vm.${vmName(from)} to vm.${vmName(to)}`);
      return 0;
    },
    ctx.lock(),
  );
}

export async function refreshCommand(ctx: Ctx, flags: { json?: boolean }): Promise<number> {
  return withCommandLock(
    ctx.where,
    ctx.line,
    async () => {
      const { checked, removed } = await refresh(scope(ctx));
      if (flags.json)
        console.log(
          JSON.stringify({ format_version: FORMAT_VERSION, checked, removed, serial: await stateSerial(ctx.where) }),
        );
      for (const name of removed) ctx.ui.out(`vm.${name}: its domain is gone; removed from the state`);
      ctx.ui.say(`Refreshed ${checked.length} VM(s): ${removed.length} removed, nothing changed on any host.`);
      return 0;
    },
    ctx.lock(),
  );
}

export async function forceUnlockCommand(ctx: Ctx, id: string): Promise<number> {
  const pid = Number(id);
  if (!Number.isInteger(pid) || pid < 1)
    throw new VirtwireError(
      'SPEC_INVALID',
      `"${id}" is not a lock ID (the holder's pid or database session, as the LOCKED error and lockInfo name it)`,
    );
  ctx.ui.out(await forceUnlock(ctx.where, pid));
  return 0;
}

export async function importCommand(ctx: Ctx, domain: string, as: string | undefined): Promise<number> {
  return withCommandLock(
    ctx.where,
    ctx.line,
    async () => {
      const { vm, dropped } = await importDomain(domain, as ?? domain, scope(ctx));
      ctx.ui.out(
        `imported ${domain} as ${vm.name}: ${vm.nics.map((n) => `${n.network.tenant} ${n.ip} (${n.tap})`).join(', ')}`,
      );
      for (const d of dropped) ctx.ui.warn(`not kept (virtwire does not model it): ${d}`);
      ctx.ui.say('Add it to your spec file under vms: to keep it; a plan without it will destroy it.');
      return 0;
    },
    ctx.lock(),
  );
}

/** The VM's serial console, as `virsh console`: Ctrl-] leaves. Without a terminal, stdin is sent until it ends. */
export async function consoleCommand(ctx: Ctx, name: string): Promise<number> {
  const stream = await openConsole(vmName(name), scope(ctx));
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  ctx.ui.say(`Connected to ${vmName(name)}'s console${tty ? ' (Ctrl-] to leave)' : ''}`);
  return new Promise((resolve, reject) => {
    const leave = () => {
      if (tty) stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      stream.end();
      stream.destroy();
      resolve(0);
    };
    const onData = (chunk: Buffer) => {
      const at = chunk.indexOf(0x1d); // Ctrl-]
      if (at >= 0) {
        if (at > 0) stream.write(chunk.subarray(0, at));
        leave();
      } else stream.write(chunk);
    };
    if (tty) stdin.setRawMode(true);
    stdin.on('data', onData);
    stdin.once('end', leave);
    stream.on('data', (d: Buffer) => process.stdout.write(d));
    stream.once('error', reject);
    stream.once('close', () => resolve(0));
  });
}

/** `state migrate --to`: the state moves (records, security groups); no host is touched. */
export async function stateMigrate(ctx: Ctx, to: string): Promise<number> {
  return withCommandLock(
    ctx.where,
    ctx.line,
    async () => {
      const moved = await migrateState(ctx.where, to);
      ctx.ui.out(`moved ${moved.length} VM(s) to ${redactStateUrl(to)}; use --state ${redactStateUrl(to)} from now on`);
      return 0;
    },
    ctx.lock(),
  );
}
