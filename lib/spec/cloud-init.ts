// Validation of a VM's cloudInit: every problem with its path. The rendered files (lib/engine/
// disks.ts) are YAML written by the yaml package and whole files on the seed ISO — never spliced
// into XML, a config line or a command line — so free text is checked for type only; names,
// paths and keys that cloud-init hands to the guest's tools are checked for their form.
import { at, type Problems } from './problems.js';
import { checkAbsolutePath, checkKeys, checkSafeText, isRecord } from './checks.js';

const CLOUD_INIT_KEYS = [
  'userData',
  'metaData',
  'networkConfig',
  'hostname',
  'users',
  'writeFiles',
  'runcmd',
  'packages',
];
const USER_KEYS = ['name', 'sshAuthorizedKeys', 'sudo', 'shell', 'groups', 'hashedPassword'];
const FILE_KEYS = ['path', 'content', 'permissions', 'owner'];

const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const SSH_KEY =
  /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\u0000-\u001f\u007f]*)?$/;
const PACKAGE = /^[a-z0-9][a-z0-9+.-]+$/;
const OWNER = /^[a-z_][a-z0-9_-]*(:[a-z_][a-z0-9_-]*)?$/;

function list(p: Problems, path: string, value: unknown, what: string): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    p.add(path, `must be a list of ${what}`);
    return [];
  }
  return value;
}

function matches(p: Problems, path: string, value: unknown, re: RegExp, what: string): void {
  if (typeof value !== 'string' || !re.test(value)) p.add(path, `${JSON.stringify(value ?? null)} is not ${what}`);
}

export function checkCloudInit(p: Problems, path: string, ci: unknown): void {
  if (ci === undefined) return;
  if (!isRecord(ci)) {
    p.add(path, 'must be an object');
    return;
  }
  checkKeys(p, path, ci, CLOUD_INIT_KEYS);
  // user-data and network-config are whole files on the seed ISO: multi-line by nature
  for (const key of ['userData', 'networkConfig'] as const) {
    if (ci[key] !== undefined && typeof ci[key] !== 'string') p.add(at(path, key), 'must be a string');
  }
  if (ci.metaData !== undefined) {
    if (!isRecord(ci.metaData)) p.add(at(path, 'metaData'), 'must be a map of strings');
    else {
      for (const [k, v] of Object.entries(ci.metaData)) {
        if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(k)) p.add(at(at(path, 'metaData'), k), 'key must be a plain identifier');
        checkSafeText(p, at(at(path, 'metaData'), k), v, { allowEmpty: true });
      }
    }
  }
  if (ci.hostname !== undefined)
    matches(p, at(path, 'hostname'), ci.hostname, HOSTNAME, 'a host name (letters, digits, -; up to 63)');
  const names = new Set<string>();
  list(p, at(path, 'users'), ci.users, 'users').forEach((u, i) => {
    const up = at(at(path, 'users'), i);
    if (!isRecord(u)) return p.add(up, 'must be { name, sshAuthorizedKeys?, sudo?, shell?, groups?, hashedPassword? }');
    checkKeys(p, up, u, USER_KEYS);
    matches(p, at(up, 'name'), u.name, USER_NAME, 'a user name (a-z, 0-9, _, -; up to 32)');
    if (typeof u.name === 'string' && names.has(u.name)) p.add(at(up, 'name'), `user ${u.name} is listed twice`);
    if (typeof u.name === 'string') names.add(u.name);
    list(p, at(up, 'sshAuthorizedKeys'), u.sshAuthorizedKeys, 'public keys').forEach((k, j) =>
      matches(
        p,
        at(at(up, 'sshAuthorizedKeys'), j),
        k,
        SSH_KEY,
        'an OpenSSH public key (type, base64, optional comment)',
      ),
    );
    if (u.sudo !== undefined && typeof u.sudo !== 'boolean') p.add(at(up, 'sudo'), 'must be true or false');
    if (u.shell !== undefined) checkAbsolutePath(p, at(up, 'shell'), u.shell);
    list(p, at(up, 'groups'), u.groups, 'group names').forEach((g, j) =>
      matches(p, at(at(up, 'groups'), j), g, USER_NAME, 'a group name'),
    );
    if (
      u.hashedPassword !== undefined &&
      (typeof u.hashedPassword !== 'string' || !/^\$[^\s]+$/.test(u.hashedPassword))
    ) {
      p.add(at(up, 'hashedPassword'), 'must be a crypt(3) hash ($id$salt$hash), never a plain password');
    }
  });
  list(p, at(path, 'writeFiles'), ci.writeFiles, 'files').forEach((f, i) => {
    const fp = at(at(path, 'writeFiles'), i);
    if (!isRecord(f)) return p.add(fp, 'must be { path, content, permissions?, owner? }');
    checkKeys(p, fp, f, FILE_KEYS);
    checkAbsolutePath(p, at(fp, 'path'), f.path);
    if (typeof f.content !== 'string') p.add(at(fp, 'content'), 'must be a string');
    if (f.permissions !== undefined)
      matches(p, at(fp, 'permissions'), f.permissions, /^0?[0-7]{3}$/, 'an octal mode like 0644');
    if (f.owner !== undefined) matches(p, at(fp, 'owner'), f.owner, OWNER, 'user or user:group');
  });
  list(p, at(path, 'runcmd'), ci.runcmd, 'commands').forEach((c, i) => {
    const ok = typeof c === 'string' || (Array.isArray(c) && c.length > 0 && c.every((x) => typeof x === 'string'));
    if (!ok)
      p.add(at(at(path, 'runcmd'), i), 'must be a string (run by the shell) or a non-empty list of strings (an argv)');
  });
  list(p, at(path, 'packages'), ci.packages, 'package names').forEach((x, i) =>
    matches(p, at(at(path, 'packages'), i), x, PACKAGE, 'a Debian package name'),
  );
}
