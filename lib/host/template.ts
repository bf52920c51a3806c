// Text assets under templates/, filled with {{key}} values. Every value must already be
// validated; this also refuses any value that could start a new config line. A line whose
// value is undefined is left out (optional settings).
import { readFileSync } from 'node:fs';
import { VirtwireError } from '../errors/index.js';

const TEMPLATES = new URL('../../../templates/', import.meta.url);
const cache = new Map<string, string>();

/** A file under templates/, from the built package (dist/) or the source tree. */
export function readTemplate(name: string): string {
  let text = cache.get(name);
  if (text === undefined) {
    // from dist/lib/host/ or lib/host/ the templates folder is at the package root
    const candidates = [new URL(name, TEMPLATES), new URL(`../../templates/${name}`, import.meta.url)];
    for (const url of candidates) {
      try {
        text = readFileSync(url, 'utf8');
        break;
      } catch {
        /* try the next location */
      }
    }
    if (text === undefined) throw new VirtwireError('INTERNAL', `template ${name} not found`);
    cache.set(name, text);
  }
  return text;
}

type Value = string | number | undefined;

/**
 * Fills `{{key}}` placeholders. A line whose value is undefined is left out; a line whose value
 * is a list is repeated once per element (none for an empty list), e.g. one `server=` each.
 */
export function renderTemplate(name: string, values: Record<string, Value | readonly (string | number)[]>): string {
  const keys = (line: string) => [...line.matchAll(/\{\{(\w+)\}\}/g)].map((m) => m[1]!);
  const fill = (line: string, one: Record<string, Value>) =>
    line.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
      const v = String(one[key]);
      if (/[\u0000-\u001f\u007f]/.test(v))
        throw new VirtwireError('UNSAFE_VALUE', `refusing control characters in template value ${key}`);
      return v;
    });
  return readTemplate(name)
    .split('\n')
    .flatMap((line) => {
      const used = keys(line);
      if (used.some((k) => values[k] === undefined)) return [];
      const list = used.find((k) => Array.isArray(values[k]));
      if (!list) return [fill(line, values as Record<string, Value>)];
      return (values[list] as readonly (string | number)[]).map((v) =>
        fill(line, { ...(values as Record<string, Value>), [list]: v }),
      );
    })
    .join('\n');
}
