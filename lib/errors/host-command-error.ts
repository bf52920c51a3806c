import { VirtwireError } from './virtwire-error.js';

export interface HostCommandFailure {
  argv: readonly string[];
  exitCode: number | undefined;
  stderr: string;
  /** the step that ran it, e.g. "bridge vwb-acme-1a2b" */
  step?: string;
  /** a batch's failing input line (1-based) as the tool named it, and the device it acts on */
  line?: { number: number; text: string; device?: string };
}

/** A host command (ip, nft, tc, dnsmasq, qemu-img, ...) that failed. */
export class HostCommandError extends VirtwireError {
  readonly argv: readonly string[];
  readonly exitCode: number | undefined;
  readonly stderr: string;
  readonly step: string | undefined;
  readonly line: HostCommandFailure['line'];

  constructor(failure: HostCommandFailure, options: { cause?: unknown } = {}) {
    const where = failure.step ? `${failure.step}: ` : '';
    const status = failure.exitCode === undefined ? 'could not run' : `exited ${failure.exitCode}`;
    const l = failure.line;
    const line = l ? ` at input line ${l.number} "${l.text}"${l.device ? ` (device ${l.device})` : ''}` : '';
    super('HOST_COMMAND', `${where}${failure.argv.join(' ')} ${status}${line}: ${failure.stderr.trim()}`, options);
    this.argv = failure.argv;
    this.exitCode = failure.exitCode;
    this.stderr = failure.stderr;
    this.step = failure.step;
    this.line = failure.line;
  }
}

/** The host lacks a kernel feature or tool an operation needs; raised before anything changes. */
export class HostUnsupportedError extends VirtwireError {
  readonly feature: string;
  constructor(feature: string, message: string) {
    super('HOST_UNSUPPORTED', message);
    this.feature = feature;
  }
}
