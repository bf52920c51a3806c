// The hosts list of a spec file or createVm's options, checked before anything is contacted:
// names, libvirt URIs (allowed transports and parameters only: nothing that runs a program or
// turns host-key checking off), SSH targets, state dirs and uplinks.
import type { HostTarget } from '../../types/vm.js';
import { Problems, at } from './problems.js';
import { checkAbsolutePath, checkIfName, checkInt, checkKeys, checkName, isRecord } from './checks.js';
import { parseIpv4 } from './ipv4.js';

/** Every problem of a hosts list, with its path, before anything is contacted. */
export function validateHosts(input: unknown): HostTarget[] {
  const p = new Problems();
  const hosts = checkHosts(p, input);
  p.throwIfAny('hosts');
  return hosts;
}

const HOST_KEYS = ['name', 'uri', 'ssh', 'stateDir', 'uplink', 'address'];
const SSH_KEYS = ['destination', 'identityFile', 'port', 'controlDir', 'hostKeyPolicy', 'knownHostsFile'];

/** The same, collecting into `p` (a spec file's problems). */
export function checkHosts(p: Problems, input: unknown): HostTarget[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) p.add('hosts', 'must be a list of hosts');
  const names = new Set<string>();
  (Array.isArray(input) ? input : []).forEach((h: unknown, i) => {
    const path = at('hosts', i);
    if (!isRecord(h)) return p.add(path, 'must be an object with name and uri');
    checkKeys(p, path, h, HOST_KEYS);
    if (h.uplink !== undefined) checkIfName(p, at(path, 'uplink'), h.uplink);
    if (h.address !== undefined && (typeof h.address !== 'string' || parseIpv4(h.address) === undefined))
      p.add(at(path, 'address'), `${JSON.stringify(h.address)} is not an IPv4 address`);
    if (checkName(p, at(path, 'name'), h.name)) {
      if (names.has(h.name as string)) p.add(at(path, 'name'), `host ${String(h.name)} is listed twice`);
      names.add(h.name as string);
    }
    checkLibvirtUri(p, at(path, 'uri'), h.uri);
    if (h.ssh !== undefined) checkSsh(p, at(path, 'ssh'), h.ssh);
    if (h.stateDir !== undefined) checkAbsolutePath(p, at(path, 'stateDir'), h.stateDir);
  });
  return Array.isArray(input) ? (input as HostTarget[]) : [];
}

function checkSsh(p: Problems, path: string, ssh: unknown): void {
  if (!isRecord(ssh)) return p.add(path, 'must be { destination: "user@host", identityFile?, port?, hostKeyPolicy? }');
  checkKeys(p, path, ssh, SSH_KEYS);
  const dest = ssh.destination;
  if (typeof dest !== 'string' || !/^[A-Za-z0-9_.@:-]+$/.test(dest) || dest.startsWith('-')) {
    p.add(at(path, 'destination'), 'must be "user@host" or "host" (letters, digits, _ . @ : -; not starting with -)');
  }
  for (const key of ['identityFile', 'controlDir'] as const) {
    if (ssh[key] !== undefined) checkAbsolutePath(p, at(path, key), ssh[key]);
  }
  if (ssh.knownHostsFile !== undefined) checkKnownHostsPath(p, at(path, 'knownHostsFile'), ssh.knownHostsFile);
  if (ssh.port !== undefined) checkInt(p, at(path, 'port'), ssh.port, 1, 65535);
  if (ssh.hostKeyPolicy !== undefined && ssh.hostKeyPolicy !== 'strict' && ssh.hostKeyPolicy !== 'accept-new') {
    p.add(
      at(path, 'hostKeyPolicy'),
      `${JSON.stringify(ssh.hostKeyPolicy)} is not strict or accept-new (host keys are always checked)`,
    );
  }
}

/**
 * Where host keys are checked must hold them: a device or kernel file (/dev/null above all)
 * would let any key through. (On the host, a symlink or non-regular file is refused too.)
 */
function checkKnownHostsPath(p: Problems, path: string, value: unknown): void {
  if (!checkAbsolutePath(p, path, value)) return;
  if (/^\/(dev|proc|sys)(\/|$)/.test(value.replace(/\/+/g, '/')))
    p.add(path, `${JSON.stringify(value)} is a device or kernel file: host keys would not be checked`);
}

// libvirt transports virtwire accepts, and the URI parameters each may carry. Anything else —
// ext (runs a program of the URI's choosing), unix sockets elsewhere, command=, socket=,
// netcat=, or a parameter that turns host-key checking off — is refused as bad input.
const TRANSPORTS: Record<string, readonly string[]> = {
  qemu: [],
  'qemu+ssh': ['keyfile', 'known_hosts', 'known_hosts_verify', 'sshauth', 'no_tty', 'mode'],
  'qemu+libssh': ['keyfile', 'known_hosts', 'known_hosts_verify', 'sshauth', 'no_tty', 'mode'],
  'qemu+libssh2': ['keyfile', 'known_hosts', 'known_hosts_verify', 'sshauth', 'no_tty', 'mode'],
  'qemu+tls': ['pkipath', 'no_verify'],
  test: [],
};

/** A libvirt URI of an allowed transport with only its allowed parameters. */
export function checkLibvirtUri(p: Problems, path: string, uri: unknown): boolean {
  const bad = (why: string) => {
    p.add(path, `${JSON.stringify(uri ?? null)} ${why}`);
    return false;
  };
  if (typeof uri !== 'string' || !/^[a-z0-9+]+:\/\/[^\s]*$/.test(uri))
    return bad('is not a libvirt URI (e.g. qemu+ssh://root@hv1/system)');
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return bad('is not a libvirt URI (e.g. qemu+ssh://root@hv1/system)');
  }
  const scheme = url.protocol.slice(0, -1);
  const allowed = TRANSPORTS[scheme];
  if (!allowed)
    return bad(
      `uses transport ${scheme}; allowed: qemu:///system, ${Object.keys(TRANSPORTS)
        .filter((t) => t.includes('+'))
        .map((t) => `${t}://`)
        .join(', ')}`,
    );
  if (scheme === 'qemu' && (url.host !== '' || url.pathname !== '/system'))
    return bad('must be qemu:///system for this machine');
  if (scheme.startsWith('qemu') && url.pathname !== '/system') return bad('must name the system instance (…/system)');
  for (const [key, value] of url.searchParams) {
    if (!allowed.includes(key))
      return bad(
        `has parameter ${key}, which virtwire does not allow (${allowed.length ? `allowed: ${allowed.join(', ')}` : 'none are'})`,
      );
    if (key === 'known_hosts_verify' && value !== 'normal' && value !== 'auto')
      return bad('turns host-key checking off (known_hosts_verify may be normal or auto)');
    if (key === 'no_verify' && value !== '0') return bad('turns certificate checking off (no_verify)');
    if (key === 'known_hosts') {
      const q = new Problems();
      checkKnownHostsPath(q, path, value);
      if (q.list.length) return bad(`has known_hosts=${value}, not a file that can hold host keys`);
    }
  }
  return true;
}
