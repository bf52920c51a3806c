// Small, reusable field checks. Each reports into Problems and returns whether the value is usable,
// so callers can go on checking the rest of the input.
import { at, type Problems } from './problems.js';

const NAME_RE = /^[a-z][a-z0-9-]{0,30}$/;

// Characters that could break out of an XML attribute, a dnsmasq config line or a kernel command
// line: control characters (newline, NUL, ...), angle brackets and quotes. Values that reach those
// places are validated against this, and then still escaped by whatever writes them.
const UNSAFE_TEXT = /[\u0000-\u001f\u007f<>"'`]/;

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function checkKeys(p: Problems, path: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) p.add(at(path, key), `unknown field (allowed: ${allowed.join(', ')})`);
  }
}

export function checkName(p: Problems, path: string, value: unknown): value is string {
  if (typeof value !== 'string') {
    p.add(path, 'required string');
    return false;
  }
  if (!NAME_RE.test(value)) {
    p.add(path, `"${printable(value)}" must match ${NAME_RE} (lower-case letter first, then up to 30 of a-z, 0-9, -)`);
    return false;
  }
  return true;
}

export function checkInt(p: Problems, path: string, value: unknown, min: number, max: number): value is number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    p.add(path, `must be an integer from ${min} to ${max}`);
    return false;
  }
  if (value < min || value > max) {
    p.add(path, `${value} is out of range ${min}..${max}`);
    return false;
  }
  return true;
}

export function checkPositive(p: Problems, path: string, value: unknown): value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    p.add(path, 'must be a number greater than 0');
    return false;
  }
  return true;
}

/** A string that will be written into XML, a config file or a command line. */
export function checkSafeText(p: Problems, path: string, value: unknown, { allowEmpty = false } = {}): value is string {
  if (typeof value !== 'string') {
    p.add(path, 'must be a string');
    return false;
  }
  if (!allowEmpty && value.length === 0) {
    p.add(path, 'must not be empty');
    return false;
  }
  if (UNSAFE_TEXT.test(value)) {
    p.add(path, 'contains a control character, quote or angle bracket');
    return false;
  }
  return true;
}

export function checkAbsolutePath(p: Problems, path: string, value: unknown): value is string {
  if (!checkSafeText(p, path, value)) return false;
  if (!value.startsWith('/')) {
    p.add(path, `"${value}" must be an absolute path`);
    return false;
  }
  if (value.split('/').includes('..')) {
    p.add(path, `"${value}" must not contain ".."`);
    return false;
  }
  return true;
}

/** Linux interface name: 1..15 bytes (IFNAMSIZ - 1), no '/', ':' or whitespace, not '.' or '..'. */
export function checkIfName(p: Problems, path: string, value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0) {
    p.add(path, 'required interface name');
    return false;
  }
  if (Buffer.byteLength(value) > 15) {
    p.add(path, `"${printable(value)}" is longer than 15 bytes (IFNAMSIZ)`);
    return false;
  }
  if (/[\s/:\u0000-\u001f\u007f"'<>]/.test(value) || value === '.' || value === '..') {
    p.add(path, `"${printable(value)}" is not a valid interface name (no whitespace, '/', ':' or quotes)`);
    return false;
  }
  return true;
}

/** For echoing bad input back in messages without letting it break the message. */
function printable(value: string): string {
  return JSON.stringify(value).slice(1, -1);
}
