// Ownership of libvirt object handles (virDomainPtr, virNetworkPtr). A handle is freed exactly
// once: by free(), by the connection's close(), or — as a safety net for forgotten handles — when
// the JS wrapper is garbage collected. A freed handle is never passed to libvirt again.
import { VirtwireError } from '../errors/virtwire-error.js';

export interface HandleOwner {
  /** frees a raw handle (virDomainFree / virNetworkFree) */
  release(kind: 'domain' | 'network', ptr: bigint): void;
}

export class Handle {
  private ptr: bigint | undefined;

  constructor(
    ptr: bigint,
    readonly kind: 'domain' | 'network',
    private readonly owner: HandleOwner,
    private readonly describe: string,
  ) {
    this.ptr = ptr;
  }

  get alive(): boolean {
    return this.ptr !== undefined;
  }

  /** The raw pointer for a call; a clear error (not a crash) once freed or closed. */
  get(): bigint {
    if (this.ptr === undefined)
      throw new VirtwireError('CLOSED', `${this.describe} handle was freed or its connection closed`);
    return this.ptr;
  }

  free(): void {
    const ptr = this.ptr;
    if (ptr === undefined) return;
    this.ptr = undefined;
    this.owner.release(this.kind, ptr);
  }
}
