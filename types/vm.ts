// What createVm/destroyVm take and give back.
import type { SegmentPools, VmSpec } from './spec.js';
import type { ResolvedForward, ResolvedVm } from './resolved.js';
import type { SshTarget } from './host.js';

export type CreateVmStep =
  'validate' | 'network' | 'disks' | 'define' | 'start' | 'lease' | 'ip6' | 'ssh' | 'cloud-init';

/**
 * When createVm returns: 'none' once the domain started; 'lease' (default) once every NIC has its
 * DHCP lease; 'ip6' once, besides, every NIC with IPv6 answers at its `ip6` (a ping from its
 * gateway: the guest took the address, by SLAAC or DHCPv6, and passed duplicate address
 * detection); 'ssh' once the first NIC's port 22 answers as an SSH server; 'cloud-init' once
 * cloud-init reports it finished (its final line on the serial console).
 */
export type WaitFor = 'none' | 'lease' | 'ip6' | 'ssh' | 'cloud-init';

export interface ProgressEvent {
  step: CreateVmStep | 'destroy' | 'cleanup';
  status: 'start' | 'done' | 'failed';
  /** what a step found worth saying (define: how the VM boots, e.g. "boot: kernel (boot.fastKernel is false)") */
  detail?: string;
  /** since the call began */
  elapsedMs: number;
}

/** A hypervisor host VMs may be placed on. */
export interface HostTarget {
  /** what VmSpec.host names: /^[a-z][a-z0-9-]{0,30}$/ */
  name: string;
  /** libvirt's URI for it, e.g. qemu+ssh://root@hv1/system */
  uri: string;
  /** how its host plane is reached; absent: this machine */
  ssh?: SshTarget;
  /** on that host: the VMs' disks and logs, dnsmasq's files; default /var/lib/virtwire (this machine: the state dir) */
  stateDir?: string;
  /** the host's NIC for tenant segments (VLAN sub-interfaces, VXLAN); default: the segment's own `uplink` */
  uplink?: string;
  /**
   * its underlay address (on `uplink`): a VXLAN segment that names neither `remotes` nor a
   * multicast `group` then finds its peers in the hosts list — `local` is this address, and the
   * forwarding entries name exactly the other hosts where the tenant has VMs (l2population)
   */
  address?: string;
}

/**
 * Where a VM's files may be read from and written to beyond virtwire's own: the operator's
 * choice (createVm's options, the CLI's spec file), never a VM spec's. By default a VM reads its
 * boot files (image, kernel, initrd) only from the state dir, /var/lib/virtwire,
 * /var/lib/libvirt/images and /boot, and its serial log is written only in its own directory.
 */
export interface PathPolicy {
  /** more directories boot files may come from */
  read?: string[];
  /** more directories a serial log may go to */
  write?: string[];
}

/** A kernel in a host's cache of extracted kernels (listKernelCache). */
export interface KernelCacheEntry {
  /** the extracted vmlinux, or an initrd's archives uncompressed */
  path: string;
  kind: 'kernel' | 'initrd';
  /** the content hash of the bzImage or initrd it came from */
  hash: string;
  bytes: number;
  /** ISO time of its last use by a create */
  lastUsed: string;
  /** the VMs whose records boot it (never evicted) */
  usedBy: string[];
}

export interface CreateVmOptions {
  /** directories a VM's files may come from or go to beyond the defaults (PathPolicy) */
  paths?: PathPolicy;
  /**
   * The host's cache of extracted kernels (fast boot): at most `maxMiB` (default 1024), least
   * recently used evicted first, never a kernel a VM's record names
   */
  kernelCache?: { maxMiB?: number };
  /** default qemu:///system; with `hosts`, each host's own */
  uri?: string;
  /**
   * the hosts VMs may land on: the spec's `host`, or else the one with the most free memory
   * (as libvirt reports it) that fits the VM. Default: this machine only.
   */
  hosts?: HostTarget[];
  /** default /var/lib/virtwire */
  stateDir?: string;
  /**
   * where the records, security groups, allocations and locks live when not in `stateDir`: a
   * PostgreSQL URL (postgresql://user@host:port/database) that many operators share. Per-host
   * files (disks, seeds, logs, kernel cache) stay in `stateDir`. Default: the state dir.
   */
  state?: string;
  /** where a network's omitted VLAN id or VNI is allocated from (default: 2-4094, 4096-16777215) */
  pools?: SegmentPools;
  /** wait until every NIC has its DHCP lease; default true */
  waitForIp?: boolean;
  /** what "ready" means; default 'lease' ('none' when waitForIp is false) */
  waitFor?: WaitFor;
  /** for the whole call; default 120000 */
  timeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
  /**
   * join concurrent creates' host-plane work into one apply per host while another runs (group
   * commit); default true. false: this create applies its host alone (for comparison).
   */
  batchHostPlane?: boolean;
}

/** createVms: createVm's options; progress events name their VM. */
export interface CreateVmsOptions extends Omit<CreateVmOptions, 'onProgress'> {
  onProgress?: (event: ProgressEvent & { name: string }) => void;
}

export interface CreatedNic {
  tenant: string;
  mac: string;
  ip: string;
  /**
   * its IPv6 address on a network with cidr6: the pinned one, else its SLAAC address (the MAC's
   * EUI-64 in the /64, which the guest's own kernel forms from the router advertisements)
   */
  ip6?: string;
  tap: string;
  bridge: string;
  /** its port forwards, as resolved (absent: none) */
  forwards?: ResolvedForward[];
  floatingIp?: string;
}

/** How a VM boots, and why not faster where it could be. */
export interface BootPath {
  /**
   * 'pvh': its kernel's extracted vmlinux, entered at its PVH note (the fast path); 'kernel': the
   * kernel as given (the spec's, or a disk image's own, read from its /boot), which decompresses
   * itself; 'firmware': SeaBIOS and the disk's boot loader. For an image, 'pvh' and 'kernel' boot
   * the kernel, initrd and arguments of its GRUB config's first entry, re-read on each startVm.
   */
  kind: 'pvh' | 'kernel' | 'firmware';
  /** why not 'pvh' */
  reason?: string;
  /** for 'pvh' and 'kernel' with an initrd: whether QEMU loads it with its archives uncompressed */
  initrd?: BootInitrd;
}

/**
 * 'unpacked': the initrd's archives decompressed once on the host and loaded so (the guest's
 * kernel, under TCG, inflates a compressed one slowly; the files it unpacks are the same);
 * 'as given', and why (not compressed, too large for the VM's memory, a compression not read).
 */
export interface BootInitrd {
  kind: 'unpacked' | 'as given';
  reason?: string;
}

export interface CreatedVm {
  name: string;
  /** the host it runs on (with `hosts`) */
  host?: string;
  uuid: string;
  accel: 'kvm' | 'tcg';
  nics: CreatedNic[];
  /** how it boots, and why not the fast path where it is not taken */
  boot: BootPath;
  serialLog: string;
  /** from the call's start until every NIC had its lease (or until it was started) */
  readyMs: number;
}

export interface DestroyVmOptions {
  uri?: string;
  /** as for createVm: the VM's record names its host */
  hosts?: HostTarget[];
  stateDir?: string;
  /** as for createVm */
  state?: string;
  /** a VM that does not exist is not an error: resolve false */
  missingOk?: boolean;
}

export type { VmSpec };

/** What every lifecycle call takes: where the state is and how its hosts are reached. */
export interface VmOptions {
  /** default qemu:///system */
  uri?: string;
  /** the hosts VMs live on (a VM's record names its host; this adds or overrides how it is reached) */
  hosts?: HostTarget[];
  /** default /var/lib/virtwire */
  stateDir?: string;
  /**
   * where the records, security groups, allocations and locks live when not in `stateDir`: a
   * PostgreSQL URL (postgresql://user@host:port/database) that many operators share. Per-host
   * files (disks, seeds, logs, kernel cache) stay in `stateDir`. Default: the state dir.
   */
  state?: string;
  signal?: AbortSignal;
}

/** What importDomain adopted, and what of the domain it could not keep. */
export interface ImportedVm {
  vm: ResolvedVm;
  /** devices and firmware the redefined domain no longer has, one description each */
  dropped: string[];
}

/** A VM as listVms/getVm report it: its record and libvirt's live state. */

export interface VmInfo {
  name: string;
  host?: string;
  uuid: string;
  /** libvirt's state; 'missing' when the record has no domain */
  state: 'running' | 'paused' | 'shutoff' | 'crashed' | 'missing';
  accel: 'kvm' | 'tcg';
  createdAt: string;
  nics: CreatedNic[];
  disks: DiskInfo[];
  serialLog: string;
  memoryMiB: number;
  vcpus: number;
}

export interface DiskInfo {
  /** 'root' for the boot disk's overlay, else the data disk's name */
  name: string;
  path: string;
  /** undefined for a root overlay that takes its base image's size */
  sizeGiB?: number;
  /** the guest's device, e.g. vdb */
  target: string;
}

export interface StopOptions extends VmOptions {
  /** power off at once instead of asking the guest (ACPI) */
  force?: boolean;
  /** how long the guest gets to act on ACPI before it is forced; default 60000 */
  timeoutMs?: number;
}

export interface UpdateOptions extends VmOptions {
  /** changes that cannot be made live are made by a stop, redefine and start (same UUID, MAC, IP) */
  allowRestart?: boolean;
}

export interface UpdateResult {
  /** the fields that changed, e.g. nics[0].qos.egressKbps */
  changes: string[];
  /** true when every change was made without restarting the guest */
  live: boolean;
}

export interface SnapshotSummary {
  name: string;
  description?: string;
  /** the domain's state when it was taken (running: memory included) */
  state: string;
  createdAt: string;
}

/** A lifecycle event of one of virtwire's VMs. */
export interface VmEvent {
  name: string;
  type: 'started' | 'stopped' | 'crashed' | 'rebooted' | 'suspended' | 'resumed' | 'shutdown' | 'defined' | 'undefined';
}
