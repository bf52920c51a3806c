import { VirtwireError } from './virtwire-error.js';

// A few of libvirt's virErrorNumber values (include/libvirt/virterror.h) that callers branch on.
export const VIR_ERR = {
  NO_DOMAIN: 42,
  NO_NETWORK: 43,
  OPERATION_INVALID: 55,
  DOM_EXIST: 52,
  NETWORK_EXIST: 61,
  NO_CONNECT: 5,
  INVALID_CONN: 6,
  OPERATION_FAILED: 9,
  XML_ERROR: 27,
  XML_DETAIL: 35,
  INTERNAL_ERROR: 1,
  NO_SUPPORT: 3,
  /** VIR_ERR_CONFIG_UNSUPPORTED: valid XML this host/driver cannot run (e.g. type='kvm' without KVM) */
  CONFIG_UNSUPPORTED: 67,
} as const;

export interface LibvirtErrorDetails {
  /** libvirt's virErrorNumber */
  libvirtCode: number;
  /** libvirt's virErrorDomain (which subsystem raised it) */
  libvirtDomain: number;
  /** the libvirt function that failed, e.g. virDomainCreate */
  func: string;
  message: string;
}

/** A failing libvirt call, with libvirt's own numeric code. Branch on `libvirtCode`, never on text. */
export class LibvirtError extends VirtwireError {
  readonly libvirtCode: number;
  readonly libvirtDomain: number;
  readonly func: string;

  constructor(details: LibvirtErrorDetails, options: { cause?: unknown } = {}) {
    super(
      'LIBVIRT',
      `${details.func}: ${details.message} (libvirt code ${details.libvirtCode}, domain ${details.libvirtDomain})`,
      options,
    );
    this.libvirtCode = details.libvirtCode;
    this.libvirtDomain = details.libvirtDomain;
    this.func = details.func;
  }

  isNotFound(): boolean {
    return this.libvirtCode === VIR_ERR.NO_DOMAIN || this.libvirtCode === VIR_ERR.NO_NETWORK;
  }

  isAlreadyExists(): boolean {
    return this.libvirtCode === VIR_ERR.DOM_EXIST || this.libvirtCode === VIR_ERR.NETWORK_EXIST;
  }
}
