// The operator's PathPolicy (createVm's options, the CLI's spec file): lists of absolute directories.
import type { PathPolicy } from '../../types/vm.js';
import { Problems, at } from './problems.js';
import { checkAbsolutePath, checkKeys, isRecord } from './checks.js';

/** The same, collecting into `p` under `path`. */
export function checkPathPolicy(p: Problems, path: string, input: unknown): PathPolicy | undefined {
  if (input === undefined) return undefined;
  if (!isRecord(input)) {
    p.add(path, 'must be { read?: [directories], write?: [directories] }');
    return undefined;
  }
  checkKeys(p, path, input, ['read', 'write']);
  for (const key of ['read', 'write'] as const) {
    const list = input[key];
    if (list === undefined) continue;
    if (!Array.isArray(list)) p.add(at(path, key), 'must be a list of absolute directories');
    else list.forEach((d: unknown, i) => checkAbsolutePath(p, at(at(path, key), i), d));
  }
  return input as PathPolicy;
}

/** Every problem of a PathPolicy, with its path, before anything is touched. */
export function validatePathPolicy(input: unknown, path = 'paths'): PathPolicy | undefined {
  const p = new Problems();
  const policy = checkPathPolicy(p, path, input);
  p.throwIfAny('options');
  return policy;
}
