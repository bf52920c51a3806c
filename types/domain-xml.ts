// A typed model of the parts of libvirt's domain XML virtwire writes and reads, mapped 1:1 to
// elements and attributes (in the spirit of libvirt-go-xml). Optional parts stay optional; what
// the model does not know is dropped on parse.

export interface DomainOsType {
  arch?: string;
  machine?: string;
  /** 'hvm' */
  value: string;
}

export interface DomainOs {
  type: DomainOsType;
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  /** <boot dev='...'/> in order */
  boot?: string[];
}

export interface DomainCpu {
  mode?: 'host-passthrough' | 'host-model' | 'custom' | 'maximum';
  match?: string;
  check?: string;
  migratable?: 'on' | 'off';
  model?: { value: string; fallback?: string };
}

export interface DomainDisk {
  type: 'file' | 'block';
  device: 'disk' | 'cdrom';
  driver?: { name: string; type: string; cache?: string };
  source?: { file?: string; dev?: string };
  target: { dev: string; bus: string };
  readonly?: boolean;
}

/** <controller type=… index=… model=…/>, e.g. usb model='none' (no USB bus at all) */
export interface DomainController {
  type: string;
  index?: number;
  model?: string;
}

export interface DomainInterface {
  type: 'ethernet' | 'bridge' | 'network';
  mac?: string;
  /** <source bridge=…> or <source network=…> for those types */
  source?: { bridge?: string; network?: string };
  target?: { dev: string; managed?: 'yes' | 'no' };
  model?: string;
}

export interface DomainChardev {
  type: 'file' | 'pty';
  sourcePath?: string;
  /** <log file=… append=…/>: what the device carries, also written to a file */
  log?: { file: string; append?: 'on' | 'off' };
  /** serial: <target port>; console: <target type port> */
  target?: { type?: string; port?: number };
}

export interface DomainRng {
  model: 'virtio';
  backend: { model: 'random'; value: string };
}

export interface DomainDevices {
  emulator?: string;
  disks: DomainDisk[];
  controllers?: DomainController[];
  interfaces: DomainInterface[];
  serials: DomainChardev[];
  consoles: DomainChardev[];
  memballoon?: { model: string };
  rngs: DomainRng[];
}

export interface DomainXml {
  type: 'kvm' | 'qemu';
  name: string;
  uuid?: string;
  /** opaque virtwire metadata stored in the domain, key -> value */
  metadata?: Record<string, string>;
  memoryKiB: number;
  currentMemoryKiB?: number;
  vcpu: number;
  os: DomainOs;
  features?: { acpi?: boolean; apic?: boolean };
  cpu?: DomainCpu;
  clock?: { offset: string };
  onPoweroff?: string;
  onReboot?: string;
  onCrash?: string;
  devices: DomainDevices;
}
