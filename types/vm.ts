// What createVm/destroyVm take and give back.
import type { SegmentPools, VmSpec } from './spec.js';

export type CreateVmStep = 'validate' | 'network' | 'disks' | 'define' | 'start' | 'lease';

export interface ProgressEvent {
  step: CreateVmStep | 'destroy' | 'cleanup';
  status: 'start' | 'done' | 'failed';
  /** since the call began */
  elapsedMs: number;
}

export interface CreateVmOptions {
  /** default qemu:///system */
  uri?: string;
  /** default /var/lib/virtwire */
  stateDir?: string;
  /** where a network's omitted VLAN id or VNI is allocated from (default: 2-4094, 4096-16777215) */
  pools?: SegmentPools;
  /** wait until every NIC has its DHCP lease; default true */
  waitForIp?: boolean;
  /** for the whole call; default 120000 */
  timeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
}

export interface CreatedNic {
  tenant: string;
  mac: string;
  ip: string;
  tap: string;
  bridge: string;
}

export interface CreatedVm {
  name: string;
  uuid: string;
  accel: 'kvm' | 'tcg';
  nics: CreatedNic[];
  serialLog: string;
  /** from the call's start until every NIC had its lease (or until it was started) */
  readyMs: number;
}

export interface DestroyVmOptions {
  uri?: string;
  stateDir?: string;
  /** a VM that does not exist is not an error: resolve false */
  missingOk?: boolean;
}

export type { VmSpec };
