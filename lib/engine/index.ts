import type { CreateVmOptions, CreatedVm, DestroyVmOptions } from '../../types/vm.js';
import type { VmSpec } from '../../types/spec.js';
import { defaultEngine } from './container.js';

/** Creates, starts and (by default) waits for the DHCP lease of a VM on its tenants' networks. */
export function createVm(spec: VmSpec, options?: CreateVmOptions): Promise<CreatedVm> {
  return defaultEngine().create(spec, options);
}

/** Stops and removes a VM and everything virtwire made for it; the last VM of a tenant takes its network. */
export function destroyVm(name: string, options?: DestroyVmOptions): Promise<boolean> {
  return defaultEngine().destroy(name, options);
}

export { createEngine, type EngineOverrides } from './container.js';
export { readRecords, hostStateOf, type VmRecord } from './registry.js';
export { seedFiles } from './disks.js';
