import { VirtwireError } from './virtwire-error.js';

/** One problem in user input: where it is (`nics[1].network.cidr`) and what is wrong with it. */
export interface SpecProblem {
  path: string;
  message: string;
  /** where it is in the file it came from, when it came from one */
  file?: string;
  line?: number;
}

/** Bad input. Carries every problem found, not just the first, so a user fixes them in one go. */
export class SpecError extends VirtwireError {
  readonly problems: readonly SpecProblem[];

  constructor(problems: readonly SpecProblem[], subject = 'spec') {
    const lines = problems.map((p) => `  ${p.file ? `${p.file}:${p.line ?? 1}: ` : ''}${p.path}: ${p.message}`);
    super(
      'SPEC_INVALID',
      `invalid ${subject} (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`,
    );
    this.problems = problems;
  }
}
