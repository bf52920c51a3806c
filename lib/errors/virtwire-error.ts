// One base error for everything virtwire throws. `code` is the stable thing callers branch on;
// the message is for humans. The brand symbol is registered globally (Symbol.for) so the guard
// also recognises errors created in another realm (a worker, a vm context, a second copy of the
// package), where `instanceof` would fail.
const BRAND = Symbol.for('virtwire.error');

export type VirtwireErrorCode =
  | 'SPEC_INVALID'
  | 'LIBVIRT'
  | 'HOST_COMMAND'
  | 'HOST_UNSUPPORTED'
  | 'APPLY_FAILED'
  | 'NOT_FOUND'
  | 'LOCKED'
  | 'ABORTED'
  | 'TIMEOUT'
  | 'CLOSED'
  | 'NO_HOST'
  /** a value that validation should have refused reached a config file or command (a bug upstream) */
  | 'UNSAFE_VALUE'
  /** the state dir holds something this version cannot read */
  | 'STATE_INVALID'
  /** a database state could not be reached, read or written (restart, partition, lost lock session) */
  | 'STATE_UNAVAILABLE'
  /** a write would give something another VM or tenant holds (a database state's claims) */
  | 'STATE_CONFLICT'
  /** a process virtwire started (dnsmasq, a guest image build) failed */
  | 'PROCESS_FAILED'
  /** an invariant of virtwire itself does not hold */
  | 'INTERNAL';

export interface VirtwireErrorOptions {
  cause?: unknown;
}

export class VirtwireError extends Error {
  readonly code: VirtwireErrorCode;

  constructor(code: VirtwireErrorCode, message: string, options: VirtwireErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
    Object.defineProperty(this, BRAND, { value: true });
  }
}

/** True for any virtwire error, from any realm; narrows `code` when one is given. */
export function isVirtwireError(value: unknown, code?: VirtwireErrorCode): value is VirtwireError {
  if (typeof value !== 'object' || value === null) return false;
  if ((value as Record<symbol, unknown>)[BRAND] !== true) return false;
  return code === undefined || (value as VirtwireError).code === code;
}
