// Where a state lives, as a user names it: a PostgreSQL URL (`postgresql://…`, `postgres://…`) or
// nothing (this machine's state directory). Checked before anything connects.
import type { Problems } from './problems.js';

const SCHEMES = ['postgresql:', 'postgres:'];

export function isDatabaseUrl(text: string): boolean {
  return SCHEMES.some((s) => text.startsWith(`${s}//`));
}

/** Adds a problem at `path` unless `text` is a PostgreSQL URL with a host or socket and a database. */
export function checkStateUrl(p: Problems, path: string, text: unknown): text is string {
  if (typeof text !== 'string' || !isDatabaseUrl(text)) {
    p.add(path, `must be a PostgreSQL URL (postgresql://user@host:port/database), not ${JSON.stringify(text)}`);
    return false;
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    p.add(path, `is not a valid URL: ${redactUrl(text)}`);
    return false;
  }
  if (url.pathname.length <= 1) p.add(path, `names no database (postgresql://host/<database>): ${redactUrl(text)}`);
  return url.pathname.length > 1;
}

/** The URL without its password, for messages and lock notes. */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return redactUrls(text);
  }
}

/** Every URL's password in `text` (a command line) hidden. */
export function redactUrls(text: string): string {
  return text.replace(/(\/\/[^:@/\s]*):[^@/\s]*@/g, '$1:***@');
}
