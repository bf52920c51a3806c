// The CLI's spec file: YAML or JSON with the library's own types. `networks:` is a list of
// NetworkSpec; `vms:` a list of VmSpec whose NICs may name their network by tenant. Every
// problem — YAML syntax, unknown keys, types, validation, duplicates, overlapping subnets — is
// reported together, each with its line in the file.
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import type { NetworkSpec, SegmentPools } from '../../types/spec.js';
import type { HostTarget } from '../../types/vm.js';
import { checkHosts } from './hosts.js';
import type { ResolvedNetwork, ResolvedSecurityGroup, ResolvedVm } from '../../types/resolved.js';
import { SpecError, type SpecProblem } from '../errors/index.js';
import {
  Problems,
  at,
  isRecord,
  resolveNetwork,
  resolvePools,
  resolveVm,
  subnetsOverlap,
  resolveSecurityGroup,
  checkSecurityReferences,
} from '../spec/index.js';

export interface SpecFile {
  networks: ResolvedNetwork[];
  vms: ResolvedVm[];
  /** the security groups the NICs name (absent: none) */
  securityGroups?: ResolvedSecurityGroup[];
  /** where omitted VLAN ids and VNIs come from */
  pools?: SegmentPools;
  /** the hosts VMs may be placed on (default: this machine) */
  hosts?: HostTarget[];
  /** what virtwire does about tenants whose subnets overlap, one sentence per pair (absent: none overlap) */
  overlaps?: string[];
}

const TOP_KEYS = ['networks', 'vms', 'securityGroups', 'pools', 'hosts'];

export function loadSpecFile(file: string): SpecFile {
  return parseSpecText(readSpecText(file), file);
}

/** A spec file's text, or a SpecError naming the file when it cannot be read. */
export function readSpecText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new SpecError(
      [{ path: '(file)', message: `cannot read ${file}: ${(cause as Error).message}`, file }],
      'spec file',
    );
  }
}

export function parseSpecText(text: string, file = 'spec.yaml'): SpecFile {
  const { doc, lines } = parseYaml(text, file);
  const input = doc.toJS() as unknown;
  const p = new Problems();
  const result = validateSpecObject(p, input);
  if (!p.empty)
    throw new SpecError(
      p.list.map((problem) => locate(problem, doc, lines, file)),
      'spec file',
    );
  return result!;
}

/**
 * A spec file's canonical text (`virtwire fmt`): two-space indents, lists indented under their
 * key, no line folding, one space inside flow braces; comments, key order and the choice of
 * block or flow style are the author's and stay. Formatting it again changes nothing.
 */
export function formatSpecText(text: string, file = 'spec.yaml'): string {
  const { doc } = parseYaml(text, file);
  return doc.toString({ indent: 2, indentSeq: true, lineWidth: 0, flowCollectionPadding: true });
}

/** The YAML document, or a SpecError naming each syntax error's line. */
function parseYaml(text: string, file: string): { doc: Document; lines: LineCounter } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new SpecError(
      doc.errors.map((e) => ({
        path: '(syntax)',
        message: e.message.split('\n')[0]!,
        file,
        line: lines.linePos(e.pos[0]).line,
      })),
      'spec file',
    );
  }
  return { doc, lines };
}

function validateSpecObject(p: Problems, input: unknown): SpecFile | undefined {
  if (!isRecord(input)) {
    p.add('(root)', 'must be a map with networks: and vms:');
    return undefined;
  }
  for (const key of Object.keys(input))
    if (!TOP_KEYS.includes(key)) p.add(key, `unknown field (allowed: ${TOP_KEYS.join(', ')})`);
  const netInputs = input.networks ?? [];
  const vmInputs = input.vms ?? [];
  if (!Array.isArray(netInputs)) p.add('networks', 'must be a list of networks');
  if (!Array.isArray(vmInputs)) p.add('vms', 'must be a list of VMs');
  const networks: ResolvedNetwork[] = [];
  const overlaps: string[] = [];
  const byTenant = new Map<string, NetworkSpec>();
  (Array.isArray(netInputs) ? netInputs : []).forEach((n: unknown, i: number) => {
    const resolved = resolveNetwork(p, at('networks', i), n);
    if (!resolved) return;
    if (byTenant.has(resolved.tenant))
      p.add(at(at('networks', i), 'tenant'), `tenant ${resolved.tenant} is defined twice`);
    for (const o of networks.filter((o) => subnetsOverlap(o, resolved))) overlaps.push(overlapNote(o, resolved));
    byTenant.set(resolved.tenant, n as NetworkSpec);
    networks.push(resolved);
  });
  const vms: ResolvedVm[] = [];
  const names = new Set<string>();
  (Array.isArray(vmInputs) ? vmInputs : []).forEach((v: unknown, i: number) => {
    const path = at('vms', i);
    if (isRecord(v) && typeof v.name === 'string') {
      if (names.has(v.name)) p.add(at(path, 'name'), `VM ${v.name} is defined twice`);
      names.add(v.name);
    }
    const unknownNetworks: string[] = [];
    if (isRecord(v) && Array.isArray(v.nics)) {
      // a NIC may name its network by tenant
      v = {
        ...v,
        nics: v.nics.map((nic: unknown, j: number) => {
          if (!isRecord(nic) || typeof nic.network !== 'string') return nic;
          const net = byTenant.get(nic.network);
          if (net) return { ...nic, network: net };
          const where = at(at(at(path, 'nics'), j), 'network');
          p.add(where, `no network with tenant "${nic.network}" in networks:`);
          unknownNetworks.push(where);
          return { ...nic, network: { tenant: nic.network, cidr: '0.0.0.0/0' } };
        }),
      };
    }
    if (unknownNetworks.length === 0) {
      const vm = resolveVm(p, path, v);
      if (vm) vms.push(vm);
      return;
    }
    // the VM's other problems still count; only its stand-in networks' own are not news
    const scratch = new Problems();
    resolveVm(scratch, path, v);
    for (const x of scratch.list)
      if (!unknownNetworks.some((w) => x.path === w || x.path.startsWith(`${w}.`))) p.add(x.path, x.message);
  });
  const vmIndex = (name: string) => (vmInputs as { name?: unknown }[]).findIndex((v) => v?.name === name);
  const securityGroups = resolveGroups(p, input.securityGroups, byTenant, vms, vmIndex);
  const pools = resolvePools(p, 'pools', input.pools);
  const hosts = checkHosts(p, input.hosts);
  vms.forEach((vm) => {
    if (vm.host !== undefined && !hosts.some((h) => h.name === vm.host)) {
      p.add(
        at(at('vms', vmIndex(vm.name)), 'host'),
        hosts.length
          ? `host ${vm.host} is not one of hosts: (${hosts.map((h) => h.name).join(', ')})`
          : `host ${vm.host} is not known: the file has no hosts:`,
      );
    }
  });
  return {
    networks,
    vms,
    ...(securityGroups.length ? { securityGroups } : {}),
    ...(pools && Object.keys(pools).length ? { pools } : {}),
    ...(hosts.length ? { hosts } : {}),
    ...(overlaps.length ? { overlaps } : {}),
  };
}

/** Why two tenants overlap, and what virtwire does about it. */
function overlapNote(first: ResolvedNetwork, second: ResolvedNetwork): string {
  return (
    `tenants ${first.tenant} (${first.cidr}) and ${second.tenant} (${second.cidr}) overlap: on a host where both ` +
    `have VMs, the one that arrives second gets a network namespace of its own for its gateway, DHCP/DNS and NAT ` +
    `(joined to the host by a transit /30 from pools.transit, NAT'd twice), and keeps it; neither sees the other's frames`
  );
}

/** The file's groups: each valid, names unique, tenants of the file, and every reference resolved. */
function resolveGroups(
  p: Problems,
  input: unknown,
  tenants: Map<string, NetworkSpec>,
  vms: ResolvedVm[],
  vmIndex: (name: string) => number,
): ResolvedSecurityGroup[] {
  if (input === undefined) input = [];
  if (!Array.isArray(input)) {
    p.add('securityGroups', 'must be a list of security groups');
    return [];
  }
  const groups: { group: ResolvedSecurityGroup; path: string }[] = [];
  const invalid = new Set<string>();
  input.forEach((g: unknown, i: number) => {
    const path = at('securityGroups', i);
    const group = resolveSecurityGroup(p, path, g);
    if (!group) {
      if (isRecord(g) && typeof g.name === 'string') invalid.add(g.name);
      return;
    }
    if (groups.some((o) => o.group.name === group.name))
      p.add(at(path, 'name'), `security group ${group.name} is defined twice`);
    else if (!tenants.has(group.tenant))
      p.add(at(path, 'tenant'), `no network with tenant "${group.tenant}" in networks:`);
    else groups.push({ group, path });
  });
  const nics = vms.flatMap((vm) =>
    vm.nics.map((n) => ({
      tenant: n.network.tenant,
      groups: n.securityGroups ?? [],
      path: at(at(at(at('vms', vmIndex(vm.name)), 'nics'), n.index), 'securityGroups'),
    })),
  );
  checkSecurityReferences(p, groups, nics, invalid);
  return groups.map((g) => g.group);
}

/** `vms[0].nics[1].qos` -> ['vms', 0, 'nics', 1, 'qos'] */
function pathKeys(path: string): (string | number)[] {
  const keys: (string | number)[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) keys.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return keys;
}

/** The problem with its file and the line of the nearest node its path reaches. */
function locate(problem: SpecProblem, doc: Document, lines: LineCounter, file: string): SpecProblem {
  const keys = pathKeys(problem.path);
  for (let n = keys.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(keys.slice(0, n), true);
    if (isNode(node) && node.range) return { ...problem, file, line: lines.linePos(node.range[0]).line };
  }
  return { ...problem, file };
}
