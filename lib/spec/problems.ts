import { SpecError, type SpecProblem } from '../errors/spec-error.js';

/** Collects every problem in an input before anything happens, then throws them together. */
export class Problems {
  readonly list: SpecProblem[] = [];

  add(path: string, message: string): void {
    this.list.push({ path, message });
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  throwIfAny(subject?: string): void {
    if (this.list.length > 0) throw new SpecError(this.list, subject);
  }
}

/** `base` + `key` in the paths users see: `nics[1].network.cidr`. */
export function at(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`;
  return base === '' ? key : `${base}.${key}`;
}
