import { VirtwireError } from './virtwire-error.js';

/**
 * A multi-step operation failed at `step`; `stepsDone` were completed (and rolled back unless
 * `rolledBack` is false).
 */
export class ApplyError extends VirtwireError {
  readonly step: string;
  readonly stepsDone: readonly string[];
  readonly rolledBack: boolean;
  readonly rollbackErrors: readonly unknown[];

  constructor(
    details: { step: string; stepsDone: readonly string[]; rolledBack: boolean; rollbackErrors?: readonly unknown[] },
    options: { cause?: unknown } = {},
  ) {
    const cause = options.cause instanceof Error ? `: ${options.cause.message}` : '';
    const rb = details.rolledBack ? 'rolled back' : 'rollback incomplete';
    super('APPLY_FAILED', `step "${details.step}" failed (${rb})${cause}`, options);
    this.step = details.step;
    this.stepsDone = details.stepsDone;
    this.rolledBack = details.rolledBack;
    this.rollbackErrors = details.rollbackErrors ?? [];
  }
}
