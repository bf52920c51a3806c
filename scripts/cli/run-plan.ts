// plan, apply and destroy: the Terraform workflow over a spec file. Every call goes through
// virtwire's public API; this file decides what is printed and when the state is locked (plan:
// shared, apply/destroy: exclusive).
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import {
  loadSpecFile,
  plan as makePlan,
  apply,
  dryRun,
  destroy,
  readState,
  stateSerial,
  withCommandLock,
  formatPlan,
  isVirtwireError,
  VirtwireError,
  type CreatedVm,
  type Plan,
  type SpecFile,
} from '../../lib/index.js';
import { adoptSpecState, type Ctx } from './program.js';
import { Progress, type Ui } from './ui.js';
import { actions, planJson, planSignature, readPlanFile, sha256, version, writePlanFile } from './formats.js';

export interface PlanFlags {
  file?: string;
  json?: boolean;
  detailedExitcode?: boolean;
  out?: string;
  target?: string[];
  replace?: string[];
  refresh?: boolean;
}

export interface ApplyFlags extends PlanFlags {
  autoApprove?: boolean;
  dryRun?: boolean;
  parallelism?: number;
}

/** The spec file; a `state:` in it says where the state is, unless --state or VIRTWIRE_STATE did. */
function specFile(ctx: Ctx, flags: { file?: string }): SpecFile {
  if (!flags.file) throw new VirtwireError('SPEC_INVALID', 'a spec file is required: -f spec.yaml');
  const spec = loadSpecFile(flags.file);
  adoptSpecState(ctx, spec);
  return spec;
}

const planOptions = (ctx: Ctx, spec: SpecFile, flags: PlanFlags) => ({
  ...ctx.where,
  uri: ctx.uri,
  ...(spec.hosts ? { hosts: spec.hosts } : {}),
  ...(flags.target?.length ? { targets: flags.target } : {}),
  ...(flags.replace?.length ? { replace: flags.replace } : {}),
  ...(flags.refresh === false ? { refresh: false } : {}),
});

function printPlan(ui: Ui, p: Plan): void {
  for (const w of p.warnings ?? []) ui.warn(w);
  ui.say(formatPlan(p));
}

export async function planCommand(ctx: Ctx, flags: PlanFlags): Promise<number> {
  const spec = specFile(ctx, flags);
  // a reader's lock: no apply changes the state while it is read
  return withCommandLock(
    ctx.where,
    ctx.line,
    async () => {
      const serial = await stateSerial(ctx.where);
      const p = await makePlan(spec, planOptions(ctx, spec, flags));
      if (flags.json) console.log(JSON.stringify(planJson(p), null, 2));
      else printPlan(ctx.ui, p);
      if (flags.out) {
        writePlanFile(flags.out, {
          serial,
          spec_file: flags.file!,
          spec_sha256: sha256(readFileSync(flags.file!, 'utf8')),
          spec,
          options: {
            ...(flags.target ? { targets: flags.target } : {}),
            ...(flags.replace ? { replace: flags.replace } : {}),
            ...(flags.refresh === false ? { refresh: false } : {}),
          },
          plan: p,
        });
        ctx.ui.say(`\nSaved the plan to ${flags.out}. To perform exactly these actions: virtwire apply ${flags.out}`);
      }
      return flags.detailedExitcode && p.changes.length > 0 ? 2 : 0;
    },
    ctx.lock(true),
  );
}

async function confirm(ctx: Ctx, flags: ApplyFlags, what: string): Promise<void> {
  if (flags.autoApprove) return;
  if (!process.stdin.isTTY)
    throw new VirtwireError('ABORTED', `refusing to ${what} without -auto-approve: stdin is not a terminal`);
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  const answer = await rl.question(`\nDo you want to ${what}? Only 'yes' will be accepted: `);
  rl.close();
  if (answer.trim() !== 'yes') throw new VirtwireError('ABORTED', `${what}: cancelled`);
}

/**
 * Ctrl-C while changing the host: the first stops gracefully (what runs finishes or rolls back,
 * nothing new begins), a second exits at once, as Terraform does.
 */
function gracefulStop(ui: Ui): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130);
    ui.warn('stopping: changes under way finish or roll back, nothing new begins (Ctrl-C again to exit at once)');
    ui.event('stopping', 'stopping gracefully', {}, 'warn');
    controller.abort(new VirtwireError('ABORTED', 'interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    done: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

async function run(ctx: Ctx, flags: ApplyFlags, p: Plan, spec: SpecFile): Promise<number> {
  const ui = ctx.ui;
  ui.event('version', `virtwire ${version()}`, { virtwire: version() });
  for (const c of p.changes)
    ui.event('planned_change', `${c.kind}.${c.name}: ${actions(c).join(', ')}`, {
      change: {
        resource: { addr: `${c.kind}.${c.name}`, resource_type: c.kind, resource_name: c.name },
        action: c.action,
        ...(c.reason ? { reason: c.reason } : {}),
      },
    });
  ui.event(
    'change_summary',
    `Plan: ${p.summary.create} to add, ${p.summary.update} to change, ${p.summary.replace} to replace, ${p.summary.delete} to destroy, ${p.summary.repair} to repair.`,
    { changes: p.summary, operation: 'plan' },
  );
  if (p.changes.length === 0) return 0;
  const progress = new Progress(ui);
  const stop = gracefulStop(ui);
  let created: CreatedVm[] = [];
  try {
    created = await apply(p, {
      ...ctx.where,
      uri: ctx.uri,
      ...(spec.hosts ? { hosts: spec.hosts } : {}),
      ...(spec.paths ? { paths: spec.paths } : {}),
      report: progress.report,
      signal: stop.signal,
      ...(flags.parallelism ? { parallelism: flags.parallelism } : {}),
    });
  } catch (e) {
    // -json: the outcome is the last object, a failure included
    const message = e instanceof Error ? e.message : String(e);
    const code = isVirtwireError(e) ? e.code : 'INTERNAL';
    ui.event('diagnostic', message, { diagnostic: { severity: 'error', summary: message, code } }, 'error');
    throw e;
  } finally {
    // the live list ends whatever happened: a failure or a stop must not leave it redrawing
    progress.stop();
    stop.done();
  }
  const s = p.summary;
  const line = `Apply complete! ${s.create} added, ${s.update} changed, ${s.replace} replaced, ${s.delete} destroyed, ${s.repair} repaired.`;
  ui.say(`\n${ui.paint(line, 'green')}`);
  for (const vm of created) ui.out(`${vm.name}: ${vm.nics.map((n) => `${n.tenant} ${n.ip}`).join(', ')}`);
  ui.event('outputs', 'Outputs', {
    outputs: Object.fromEntries(created.map((vm) => [vm.name, { host: vm.host ?? null, nics: vm.nics }])),
  });
  ui.event('change_summary', line, { changes: s, operation: 'apply' });
  return 0;
}

export async function applyCommand(ctx: Ctx, flags: ApplyFlags, planFile: string | undefined): Promise<number> {
  if (planFile) {
    // a saved plan is the whole decision: what shapes a new plan does not fit with it
    const clash = (['file', 'target', 'replace', 'refresh', 'dryRun'] as const).filter((k) => flags[k] !== undefined);
    if (clash.length)
      throw new VirtwireError(
        'SPEC_INVALID',
        `a saved plan is applied as it is: ${clash.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')} cannot be given with it`,
      );
    return applySaved(ctx, flags, planFile);
  }
  const spec = specFile(ctx, flags);
  return withCommandLock(
    ctx.where,
    ctx.line,
    async () => {
      const p = await makePlan(spec, planOptions(ctx, spec, flags));
      if (!flags.json) printPlan(ctx.ui, p);
      if (p.changes.length === 0) return 0;
      if (flags.dryRun) return printDryRun(ctx, p, spec);
      if (!flags.json) await confirm(ctx, flags, 'perform these actions');
      else if (!flags.autoApprove)
        throw new VirtwireError('ABORTED', 'apply -json needs -auto-approve (or a saved plan)');
      return run(ctx, flags, p, spec);
    },
    ctx.lock(),
  );
}

/** `apply PLANFILE`: exactly that plan, without asking — unless the state or the hosts moved on. */
async function applySaved(ctx: Ctx, flags: ApplyFlags, file: string): Promise<number> {
  const saved = readPlanFile(file);
  adoptSpecState(ctx, saved.spec);
  return withCommandLock(
    ctx.where,
    ctx.line,
    async () => {
      const serial = await stateSerial(ctx.where);
      if (serial !== saved.serial) {
        throw new VirtwireError(
          'STATE_INVALID',
          `Saved plan is stale: the state changed since it was made (serial ${saved.serial}, now ${serial}); plan again`,
        );
      }
      const fresh = await makePlan(
        saved.spec,
        planOptions(ctx, saved.spec, {
          ...flags,
          ...saved.options,
          ...(saved.options.targets ? { target: saved.options.targets } : {}),
        }),
      );
      if (planSignature(fresh) !== planSignature(saved.plan)) {
        throw new VirtwireError(
          'STATE_INVALID',
          'Saved plan is stale: the hosts no longer match what it was planned against; plan again',
        );
      }
      if (!flags.json) printPlan(ctx.ui, saved.plan);
      return run(ctx, flags, saved.plan, saved.spec);
    },
    ctx.lock(),
  );
}

async function printDryRun(ctx: Ctx, p: Plan, spec: SpecFile): Promise<number> {
  const d = await dryRun(p, { ...ctx.where, uri: ctx.uri, ...(spec.hosts ? { hosts: spec.hosts } : {}) });
  const out = (line: string) => console.log(line);
  out('\n--dry-run: nothing was changed. apply would run:');
  for (const call of d.libvirt) out(`  libvirt: ${call}`);
  for (const cmd of d.disks) out(`  ${cmd}`);
  const batch = (argv: string[], lines: string[]) =>
    lines.length && out(`  ${argv.join(' ')}  <<EOF\n${lines.map((l) => `    ${l}`).join('\n')}\n  EOF`);
  batch(['ip', '-batch', '-'], d.host.ip);
  batch(['bridge', '-batch', '-'], d.host.bridge);
  if (d.host.sysctl.length) out(`  sysctl -w ${d.host.sysctl.join(' ')}`);
  for (const c of d.host.firewall) batch(c.argv, c.input.trimEnd().split('\n'));
  batch(['tc', '-batch', '-'], d.host.tc);
  for (const ns of d.host.namespaces) {
    const inside = ['ip', 'netns', 'exec', ns.netns];
    batch([...inside, 'ip', '-batch', '-'], ns.ip);
    if (ns.forwarding) out(`  ${inside.join(' ')} sysctl -w net.ipv4.ip_forward=1`);
    for (const c of ns.firewall) batch([...inside, ...c.argv], c.input.trimEnd().split('\n'));
  }
  for (const a of d.host.conntrack) out(`  conntrack -D -s ${a}; conntrack -D -d ${a}`);
  for (const x of d.host.changes) if (x.kind === 'dnsmasq') out(`  dnsmasq ${x.tenant}: ${x.action}`);
  return 0;
}

export async function destroyCommand(ctx: Ctx, flags: ApplyFlags): Promise<number> {
  // the same file as apply: a broken one is refused before anything happens; its hosts: reach the VMs
  const spec = specFile(ctx, flags);
  return withCommandLock(
    ctx.where,
    ctx.line,
    async () => {
      const names = (await readState(ctx.where)).map((r) => r.vm.name);
      ctx.ui.say(
        names.length
          ? names.map((n) => `  - vm ${n}`).join('\n')
          : 'No VMs in the state; removing any virtwire leftovers on the host.',
      );
      if (names.length && !flags.json) await confirm(ctx, flags, `destroy ${names.length} VM(s)`);
      await destroy({
        ...ctx.where,
        uri: ctx.uri,
        ...(spec.hosts ? { hosts: spec.hosts } : {}),
        report: (n) => {
          ctx.ui.say(`${new Date().toISOString().slice(11, 19)} vm ${n}: destroyed`);
          ctx.ui.event('apply_complete', `vm.${n}: destroyed`, {
            hook: { resource: { addr: `vm.${n}` }, action: 'delete' },
          });
        },
      });
      ctx.ui.say('Destroy complete.');
      ctx.ui.event('change_summary', 'Destroy complete.', { changes: { delete: names.length }, operation: 'destroy' });
      return 0;
    },
    ctx.lock(),
  );
}
