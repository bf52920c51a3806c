// Public input types. Field names are a contract with the CLI, the docs and other services.

/** Direct kernel boot (the guest kernel and initrd are files on the host). */
export interface KernelBoot {
  kernel: string;
  initrd?: string;
  cmdline?: string;
  /**
   * Boot the kernel's decompressed ELF through its PVH entry when it has one (extracted once,
   * cached by content in the state dir): ~3 s less under TCG. Default true under TCG; never
   * under KVM (not measured there). false: boot the file as given.
   */
  fastKernel?: boolean;
}

/** Boot from a disk: a qcow2 overlay is created on top of `image` (which is never written). */
export interface ImageBoot {
  image: string;
  /** size of the overlay; default: the base image's size */
  sizeGiB?: number;
  /**
   * Boot the image's own kernel, initrd and arguments directly — what the first entry of its GRUB
   * config boots, read from the image (read-only, cached by its content) — on the fast path where
   * that kernel has a PVH note, instead of SeaBIOS and GRUB: the same guest, booted sooner under
   * TCG. Default true under TCG on the machine that runs virtwire; where it cannot be (no ext2/3/4
   * partition with a GRUB config, another default entry, KVM, a remote host), the firmware boots
   * it and createVm's `boot.reason` says why. An update of the kernel inside the guest takes
   * effect on the next startVm, which reads the VM's own disk again; a reboot the guest starts
   * itself keeps the kernel it booted with. false: always the firmware.
   */
  fastKernel?: boolean;
}

export type BootSpec = KernelBoot | ImageBoot;

/**
 * cloud-init's NoCloud seed. The typed fields are rendered to `#cloud-config`; `userData` (any
 * cloud-config or script) is sent as given, or — with typed fields too — as the second part of a
 * MIME multi-part user-data. Secrets (`userData`, `writeFiles[].content`, `users[].hashedPassword`)
 * are never printed (see the README's threat model).
 */
export interface CloudInitSpec {
  userData?: string;
  metaData?: Record<string, string>;
  /** network-config as given; default: every NIC matched by its MAC, named eth<i>, DHCP (version 2) */
  networkConfig?: string;
  /** the guest's hostname; default the VM's name */
  hostname?: string;
  users?: CloudInitUser[];
  writeFiles?: CloudInitFile[];
  /** commands run once at first boot: a string for the shell, or an argv list */
  runcmd?: (string | string[])[];
  /** Debian packages installed at first boot */
  packages?: string[];
}

export interface CloudInitUser {
  /** a POSIX user name */
  name: string;
  sshAuthorizedKeys?: string[];
  /** passwordless sudo; default false */
  sudo?: boolean;
  /** default /bin/bash */
  shell?: string;
  groups?: string[];
  /** a crypt(3) hash, e.g. from `mkpasswd -m sha-512` (a secret) */
  hashedPassword?: string;
}

export interface CloudInitFile {
  /** absolute path in the guest */
  path: string;
  /** the file's text (a secret) */
  content: string;
  /** octal, e.g. '0644' */
  permissions?: string;
  /** user or user:group */
  owner?: string;
}

export type Accel = 'auto' | 'kvm' | 'tcg';

export interface VmSpec {
  /** /^[a-z][a-z0-9-]{0,30}$/ */
  name: string;
  /** stable when omitted: derived from the name */
  uuid?: string;
  /** default 1, 1..64 */
  vcpus?: number;
  /** default 256, 64..1048576 */
  memoryMiB?: number;
  /**
   * the most memory the guest may be given without a restart (its balloon can grow up to it);
   * default memoryMiB
   */
  maxMemoryMiB?: number;
  /** data disks: qcow2 files in the VM's directory, made before it is defined, removed with it */
  disks?: DataDiskSpec[];
  /** default 'auto': kvm only where /dev/kvm works and the CPU has vmx/svm */
  accel?: Accel;
  boot: BootSpec;
  cloudInit?: CloudInitSpec;
  /** at least one */
  nics: NicSpec[];
  /** absolute path; default under the state dir */
  serialLog?: string;
  /** the host to run on (a name from createVm's `hosts`); default: placed by free memory */
  host?: string;
}

export interface DataDiskSpec {
  /** /^[a-z][a-z0-9-]{0,30}$/, unique in the VM */
  name: string;
  /** 1..65536 */
  sizeGiB: number;
  /** default 'virtio' */
  bus?: 'virtio';
}

export interface NicSpec {
  network: NetworkSpec;
  /** unicast MAC; default: derived from the VM name and NIC index (52:54:00:…) */
  mac?: string;
  /** inside the network's subnet; default: allocated */
  ip?: string;
  /**
   * inside the network's cidr6: served by DHCPv6 (stateful), pinned like `ip`. Default: the NIC's
   * SLAAC address (its MAC's EUI-64 in the /64), which the guest forms itself
   */
  ip6?: string;
  qos?: QosSpec;
  /**
   * security groups of the NIC's tenant. None (the default): the NIC is open within its tenant.
   * Some: ingress only as their rules allow; egress as their egress rules allow (all, when none
   * of them has one); replies to allowed flows pass; DHCP, DNS and ARP to the gateway always do.
   */
  securityGroups?: string[];
  /**
   * Ports of the host that reach this NIC (Docker's `-p`, Incus's network forwards): traffic to
   * the host on `hostPort` — from outside, from the host itself, and from the tenant's own guests
   * (hairpin) — goes to the guest's `port`; replies go back through the host. The NIC's network
   * must be NAT'd. Its security groups decide what may come in, as for any traffic.
   */
  forwards?: ForwardSpec[];
  /**
   * An address of a subnet one of the host's interfaces is on (the uplink's), mapped 1:1 to this
   * NIC (Neutron's floating IP): the host takes the address on that interface, everything sent to
   * it reaches the guest, and the guest's traffic out of the host leaves from it. Live: moving
   * it to another NIC is an updateVm.
   */
  floatingIp?: string;
}

export interface ForwardSpec {
  /** the host's port */
  hostPort: number;
  /** the guest's port */
  port: number;
  /** default 'tcp' */
  protocol?: 'tcp' | 'udp';
  /**
   * one of the host's addresses; default: the addresses of the host's uplink — the network's
   * `uplink`, else the device of its default route — read when the host is planned (never every
   * address: a management or storage network does not expose the guest)
   */
  address?: string;
}

/**
 * Who may talk to a tenant's NICs (Neutron's and AWS's security groups): rules that allow, on the
 * tenant's bridge, per port; everything else to a member NIC is dropped.
 */
export interface SecurityGroupSpec {
  /** /^[a-z][a-z0-9-]{0,30}$/, unique in the state */
  name: string;
  /** the tenant whose NICs may join it */
  tenant: string;
  description?: string;
  rules: SecurityRuleSpec[];
}

export interface SecurityRuleSpec {
  direction: 'ingress' | 'egress';
  protocol: 'tcp' | 'udp' | 'icmp' | 'any';
  /** tcp and udp only: 80, '8000-8100', or a list of both; absent: every port */
  ports?: PortSpec | PortSpec[];
  /**
   * the other side: addresses (an IPv4 or IPv6 CIDR), the NICs of a group of the same tenant
   * (their IPv4 and IPv6 addresses, kept current), or anyone
   */
  peer: { cidr: string } | { group: string } | { any: true };
  /** 'ipv4' or 'ipv6' only (Neutron's ethertype); default both, or the CIDR peer's family. icmp is ICMPv6 over IPv6 */
  ethertype?: 'ipv4' | 'ipv6';
  description?: string;
}

export type PortSpec = number | string;

export type SegmentSpec =
  | { type: 'none' }
  /** `id` omitted: allocated from the VLAN pool when the tenant's first VM is created */
  | { type: 'vlan'; id?: number; uplink: string }
  /** `vni` omitted: allocated from the VNI pool */
  | { type: 'vxlan'; vni?: number; uplink: string; remotes?: string[]; group?: string; local?: string };

/** Where omitted segment ids come from: inclusive ranges, shared by every host of a state dir. */
export interface SegmentPools {
  /** default [2, 4094] */
  vlan?: [number, number];
  /** default [4096, 16777215] */
  vni?: [number, number];
  /**
   * where a namespaced tenant's transit /30 comes from (tenants whose subnets overlap on a host);
   * default 100.64.0.0/10 (shared address space, RFC 6598)
   */
  transit?: string;
}

export interface NetworkSpec {
  /** /^[a-z][a-z0-9-]{0,30}$/ */
  tenant: string;
  /** IPv4, e.g. 10.10.0.0/24 */
  cidr: string;
  /** default: first host address */
  gateway?: string;
  /** default: the rest of the subnet after the gateway */
  dhcpRange?: [string, string];
  /** default true: masquerade out of the host */
  nat?: boolean;
  /** with nat: only masquerade out of this host interface */
  uplink?: string;
  /** default { type: 'none' } */
  segment?: SegmentSpec;
  /**
   * Ports of the host a guest of this tenant may reach on its gateway address, beyond DHCP, DNS
   * and ping (e.g. a metadata service). Everything else addressed to the host is dropped.
   */
  hostServices?: HostService[];
  /**
   * DNS for the tenant (its dnsmasq on the gateway answers the tenant's VM names, `<vm>` and
   * `<vm>.<tenant>.virtwire`, and forwards everything else): `upstream` servers; default the
   * host's own resolvers for a NAT network (from /etc/resolv.conf, or systemd-resolved's upstream
   * list where its stub is in use), none for a network without NAT. `upstream: []` keeps it internal.
   */
  dns?: { upstream?: string[] };
  /**
   * IPv6 beside IPv4 (dual stack): a /64, ULA (fd…) or global. The bridge takes `gateway6`,
   * dnsmasq sends router advertisements (SLAAC) and answers DHCPv6 for NICs with a pinned `ip6`,
   * DNS answers AAAA for the tenant's names. Absent: the network has no IPv6 and its guests' IPv6
   * frames are dropped.
   */
  cidr6?: string;
  /** default ::1 of cidr6 */
  gateway6?: string;
  /**
   * on a NAT network, outbound IPv6: true (default) masqueraded to the host's address (NAT66),
   * false routed unchanged (the operator routes cidr6 to the host). Not with `nat: false`, which
   * keeps IPv6 inside the tenant as it keeps IPv4.
   */
  nat6?: boolean;
}

export interface HostService {
  port: number;
  protocol: 'tcp' | 'udp';
}

/** From the guest's point of view, like libvirt's <bandwidth> outbound/inbound. */
export interface QosSpec {
  /** what the guest sends, kbit/s */
  egressKbps?: number;
  /** what the guest receives, kbit/s */
  ingressKbps?: number;
  burstKiB?: number;
  /**
   * what the guest may send, packets/s (a tenth of a second's worth at once); default 100,000:
   * every port is capped so one guest's flood of tiny frames cannot take the host's CPU
   */
  packetsPerSecond?: number;
}
