// What a call refused with: its SpecError's problems as { path: message } (a test fails if it
// threw anything else, or nothing).
import { SpecError } from '../../lib/errors/index.js';

export function problems(fn: () => unknown): Record<string, string> {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return Object.fromEntries((e as SpecError).problems.map((p) => [p.path, p.message]));
  }
  throw new Error('expected a SpecError');
}
