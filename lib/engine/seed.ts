// The NoCloud seed's files for a VM: user-data (typed fields rendered to #cloud-config with the
// yaml package, the user's own user-data as given — both, as MIME multi-part), meta-data (the
// instance and its host name) and network-config (every NIC by its MAC, DHCP).
import { createHash } from 'node:crypto';
import { stringify } from 'yaml';
import type { ResolvedVm } from '../../types/resolved.js';
import type { CloudInitSpec } from '../../types/spec.js';

/** The typed fields as a cloud-config object, or undefined when none is given. */
function cloudConfig(ci: CloudInitSpec): Record<string, unknown> | undefined {
  const config: Record<string, unknown> = {};
  if (ci.hostname !== undefined) config.hostname = ci.hostname;
  if (ci.users?.length) {
    config.users = ci.users.map((u) => ({
      name: u.name,
      ...(u.sshAuthorizedKeys?.length ? { ssh_authorized_keys: u.sshAuthorizedKeys } : {}),
      ...(u.sudo ? { sudo: 'ALL=(ALL) NOPASSWD:ALL' } : {}),
      shell: u.shell ?? '/bin/bash',
      ...(u.groups?.length ? { groups: u.groups.join(', ') } : {}),
      ...(u.hashedPassword ? { hashed_passwd: u.hashedPassword, lock_passwd: false } : { lock_passwd: true }),
    }));
  }
  if (ci.writeFiles?.length) {
    config.write_files = ci.writeFiles.map((f) => ({
      path: f.path,
      content: f.content,
      ...(f.permissions ? { permissions: f.permissions } : {}),
      ...(f.owner ? { owner: f.owner } : {}),
    }));
  }
  if (ci.runcmd?.length) config.runcmd = ci.runcmd;
  if (ci.packages?.length) config.packages = ci.packages;
  return Object.keys(config).length > 0 ? config : undefined;
}

/** A user-data part's MIME type, as cloud-init recognises its first line. */
function partType(userData: string): string {
  if (userData.startsWith('#cloud-config')) return 'text/cloud-config';
  if (userData.startsWith('#!')) return 'text/x-shellscript';
  if (userData.startsWith('#cloud-boothook')) return 'text/cloud-boothook';
  return 'text/plain';
}

/** Several user-data parts as one MIME multi-part document (a boundary none of them contains). */
function multipart(parts: { type: string; body: string }[]): string {
  const boundary = `==virtwire-${createHash('sha256')
    .update(parts.map((x) => x.body).join('\0'))
    .digest('hex')
    .slice(0, 16)}==`;
  const lines = ['Content-Type: multipart/mixed; boundary="' + boundary + '"', 'MIME-Version: 1.0', ''];
  for (const part of parts) {
    lines.push(
      `--${boundary}`,
      `Content-Type: ${part.type}; charset="utf-8"`,
      'MIME-Version: 1.0',
      'Content-Transfer-Encoding: 8bit',
      '',
      part.body.replace(/\n?$/, ''),
    );
  }
  lines.push(`--${boundary}--`, '');
  return lines.join('\n');
}

/**
 * network-config version 2: each NIC by its MAC, named eth<index>, DHCP. On a network with IPv6
 * the guest's kernel takes its SLAAC address from the router advertisements by itself; a NIC with
 * a pinned ip6 also asks DHCPv6 for it (dhcp6).
 */
function networkConfig(vm: ResolvedVm): string {
  const ethernets = Object.fromEntries(
    vm.nics.map((n) => [
      `eth${n.index}`,
      {
        match: { macaddress: n.mac },
        'set-name': `eth${n.index}`,
        dhcp4: true,
        ...(n.ip6Pinned ? { dhcp6: true } : {}),
      },
    ]),
  );
  return stringify({ version: 2, ethernets });
}

/** The NoCloud files for a VM (meta-data always names its instance and host). */
export function seedFiles(vm: ResolvedVm): Record<string, string> {
  const ci = vm.cloudInit ?? {};
  const typed = cloudConfig(ci);
  const typedText = typed ? `#cloud-config\n${stringify(typed)}` : undefined;
  const userData =
    typedText && ci.userData !== undefined
      ? multipart([
          { type: 'text/cloud-config', body: typedText },
          { type: partType(ci.userData), body: ci.userData },
        ])
      : (typedText ?? ci.userData ?? '#cloud-config\n{}\n');
  return {
    'user-data': userData,
    'meta-data': stringify({
      'instance-id': vm.uuid,
      'local-hostname': ci.hostname ?? vm.name,
      ...(ci.metaData ?? {}),
    }),
    'network-config': ci.networkConfig ?? networkConfig(vm),
  };
}
