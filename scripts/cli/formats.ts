// The CLI's documented machine-readable formats (README: "Machine-readable output"), each with a
// format_version, secrets redacted; and saved plans (`plan -out`, `apply FILE`).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import { redactPlan, SpecError, type Change, type Plan, type SpecFile, type VmInfo } from '../../lib/index.js';

export const FORMAT_VERSION = '1.0';
export const version = (): string =>
  (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Terraform's action lists: a replacement is delete then create. */
export function actions(c: Change): string[] {
  return c.action === 'replace' ? ['delete', 'create'] : [c.action];
}

/** `plan --json`: every change with its address, actions, reason, attributes and the VM as it will be. */
export function planJson(plan: Plan): object {
  const safe = redactPlan(plan);
  return {
    format_version: FORMAT_VERSION,
    virtwire_version: version(),
    complete: !plan.targets?.length,
    ...(plan.targets?.length ? { targets: plan.targets } : {}),
    resource_changes: safe.changes.map((c) => ({
      address: `${c.kind}.${c.name}`,
      type: c.kind,
      name: c.name,
      change: {
        actions: actions(c),
        ...(c.reason ? { reason: c.reason } : {}),
        ...(c.repair ? { repair: c.repair } : {}),
        attributes: c.attributes.map((a) => ({ name: a.name, before: a.from ?? null, after: a.to ?? null })),
        after: c.vm ?? null,
      },
    })),
    summary: plan.summary,
    warnings: plan.warnings ?? [],
  };
}

/** `show --json`: the state's VMs with libvirt's live state. */
export function showJson(vms: VmInfo[], serial: number): object {
  return { format_version: FORMAT_VERSION, virtwire_version: version(), serial, vms };
}

/** What `plan -out` writes: enough to apply exactly that plan later, and to tell when it is stale. */
interface SavedPlan {
  format_version: string;
  kind: 'virtwire-plan';
  created_at: string;
  virtwire_version: string;
  /** the state's serial when planned: an apply or edit since makes the plan stale */
  serial: number;
  spec_file: string;
  spec_sha256: string;
  spec: SpecFile;
  options: { targets?: string[]; replace?: string[]; refresh?: boolean };
  plan: Plan;
}

export const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Written 0600: it holds the spec's secrets (the VMs must be creatable from it), as Terraform's plans do. */
export function writePlanFile(
  file: string,
  saved: Omit<SavedPlan, 'format_version' | 'kind' | 'created_at' | 'virtwire_version'>,
): void {
  const doc: SavedPlan = {
    format_version: FORMAT_VERSION,
    kind: 'virtwire-plan',
    created_at: new Date().toISOString(),
    virtwire_version: version(),
    ...saved,
  };
  rmSync(`${file}.tmp`, { force: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(doc) + '\n', { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export function readPlanFile(file: string): SavedPlan {
  let doc: Partial<SavedPlan>;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8')) as Partial<SavedPlan>;
  } catch (cause) {
    throw new SpecError([{ path: file, message: `not a saved plan: ${(cause as Error).message}` }], 'saved plan');
  }
  if (doc.kind !== 'virtwire-plan' || doc.format_version !== FORMAT_VERSION || !doc.plan || !doc.spec) {
    throw new SpecError(
      [{ path: file, message: `not a virtwire saved plan of format ${FORMAT_VERSION}` }],
      'saved plan',
    );
  }
  return doc as SavedPlan;
}

/** What a plan would do, as comparable text (a saved plan against a fresh one). */
export function planSignature(plan: Plan): string {
  return JSON.stringify(
    plan.changes.map((c) => [
      c.kind,
      c.name,
      c.action,
      c.repair ?? '',
      c.attributes.map((a) => a.name),
      c.reason ?? '',
    ]),
  );
}
