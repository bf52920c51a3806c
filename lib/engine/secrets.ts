// Fields that hold secrets. They are kept in the VM's record (0600: the VM must be re-creatable)
// and on its seed ISO, and never printed: plans, JSON output and messages show a marker instead.
// Paths are relative to a VM (ResolvedVm / VmSpec).

/** What is printed in place of a secret. */
export const SENSITIVE = '(sensitive value)';

// Commands, network-config, meta-data and a kernel command line carry tokens and keys as often
// as user-data does. (A kernel command line is also on QEMU's command line, which every local
// user can read in /proc: README.)
const SECRET_PATHS = [
  /^cloudInit\.userData$/,
  /^cloudInit\.writeFiles\[\d+\]\.content$/,
  /^cloudInit\.users\[\d+\]\.hashedPassword$/,
  /^cloudInit\.runcmd(\[\d+\])*$/,
  /^cloudInit\.networkConfig$/,
  /^cloudInit\.metaData(\.[^.]+)?$/,
  /^boot\.cmdline$/,
];

/** Whether the field at `path` (e.g. `cloudInit.userData`) holds a secret. */
export function isSecretPath(path: string): boolean {
  return SECRET_PATHS.some((re) => re.test(path));
}

/** A deep copy of a VM-shaped value with every secret field replaced by SENSITIVE. */
export function redactVm<T>(value: T, path = ''): T {
  if (path && isSecretPath(path) && value !== undefined) return SENSITIVE as T;
  if (Array.isArray(value)) return value.map((v, i) => redactVm(v, `${path}[${i}]`)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactVm(v, path ? `${path}.${k}` : k)])) as T;
  }
  return value;
}
