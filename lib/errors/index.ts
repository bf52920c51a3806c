export { VirtwireError, isVirtwireError, type VirtwireErrorCode } from './virtwire-error.js';
export { SpecError, type SpecProblem } from './spec-error.js';
export { LibvirtError, VIR_ERR, type LibvirtErrorDetails } from './libvirt-error.js';
export { HostCommandError, HostUnsupportedError, type HostCommandFailure } from './host-command-error.js';
export { ApplyError } from './apply-error.js';
