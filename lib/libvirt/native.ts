// Typed access to ffi.js for the TypeScript side, and the once-per-process libvirt set-up.
import { libvirt as bindLibvirt, runOp as runOpUntyped } from './ffi.js';
import { LibvirtError } from '../errors/libvirt-error.js';
import { VirtwireError } from '../errors/virtwire-error.js';

export interface OpError {
  code: number;
  domain: number;
  message: string;
  func: string;
}
export type OpResult<T> = { ok: true; value: T } | { ok: false; error: OpError };

export interface Native {
  koffi: typeof import('koffi').default;
  fn: Record<string, (...args: unknown[]) => any>;
  errorFuncProto: unknown;
  /** process-wide set-up state, kept with the binding (see ffi.js) */
  process: { initialised?: boolean; silence?: unknown; loop?: unknown };
}

export const native = (): Native => bindLibvirt() as unknown as Native;
export const runOp = runOpUntyped as (name: string, args: unknown[]) => OpResult<any>;

export function unwrap<T>(result: OpResult<T>): T {
  if (result.ok) return result.value;
  throw toLibvirtError(result.error);
}

export function toLibvirtError(error: OpError): LibvirtError {
  return new LibvirtError({
    libvirtCode: error.code,
    libvirtDomain: error.domain,
    func: error.func,
    message: error.message,
  });
}

/**
 * Once per process, before the first connection: initialise libvirt, register its default event
 * implementation (connections opened later can then deliver events), and install a no-op error
 * handler so libvirt does not print every error to stderr — errors are read per call instead.
 */
export function initLibvirt(): void {
  const { koffi, fn, errorFuncProto, process: state } = native();
  if (state.initialised) return;
  if (fn.virInitialize!() < 0) throw new VirtwireError('LIBVIRT', 'virInitialize failed');
  if (fn.virEventRegisterDefaultImpl!() < 0) throw new VirtwireError('LIBVIRT', 'virEventRegisterDefaultImpl failed');
  // A handler registered by this (main) isolate: errors raised on worker threads are marshalled
  // here by koffi, which is fine for a no-op (the main thread never blocks on a worker).
  state.silence = koffi.register(() => {}, koffi.pointer(errorFuncProto as never));
  fn.virSetErrorFunc!(null, state.silence);
  state.initialised = true;
}

/** libvirt's library version as a number (major * 1,000,000 + minor * 1,000 + release). */
export function libraryVersion(): number {
  const { fn } = native();
  const lib = [0];
  const type = [0];
  if (fn.virGetVersion!(lib, null, type) < 0) throw new VirtwireError('LIBVIRT', 'virGetVersion failed');
  return Number(lib[0]);
}
