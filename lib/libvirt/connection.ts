import { CallPool } from './call-pool.js';
import { initLibvirt, libraryVersion, runOp, toLibvirtError, unwrap, type OpResult } from './native.js';
import { Handle, type HandleOwner } from './handles.js';
import { eventLoop, type DomainEvent } from './event-loop.js';
import { ConsoleStream } from './console.js';

// VIR_DOMAIN_AFFECT_LIVE = 1, VIR_DOMAIN_AFFECT_CONFIG = 2
const affect = (o: AffectOptions) => (o.live ? 1 : 0) | (o.config ? 2 : 0);
import { VirtwireError } from '../errors/virtwire-error.js';
import { LibvirtError } from '../errors/libvirt-error.js';

export type DomainState =
  'nostate' | 'running' | 'blocked' | 'paused' | 'shutdown' | 'shutoff' | 'crashed' | 'pmsuspended';
const STATES: DomainState[] = [
  'nostate',
  'running',
  'blocked',
  'paused',
  'shutdown',
  'shutoff',
  'crashed',
  'pmsuspended',
];
const stateName = (n: number): DomainState => STATES[n] ?? 'nostate';

export interface DomainSummary {
  name: string;
  uuid: string;
  /** -1 when not running */
  id: number;
  state: DomainState;
}

export interface NetworkSummary {
  name: string;
  uuid: string;
  active: boolean;
  persistent: boolean;
}

export interface UndefineOptions {
  /** VIR_DOMAIN_UNDEFINE_MANAGED_SAVE */
  managedSave?: boolean;
  /** VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA */
  snapshotsMetadata?: boolean;
  /** VIR_DOMAIN_UNDEFINE_NVRAM (UEFI guests) */
  nvram?: boolean;
  /** VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA */
  checkpointsMetadata?: boolean;
}

export interface XmlOptions {
  /** VIR_DOMAIN_XML_INACTIVE: the persistent config, not the live one */
  inactive?: boolean;
  /** VIR_DOMAIN_XML_SECURE: include security-sensitive data */
  secure?: boolean;
}

export interface Subscription {
  off(): Promise<void>;
}

/**
 * What a caller of a hypervisor connection uses (the engine depends on this, not on the class):
 * `Libvirt` implements it over libvirt.so; tests hand the engine stand-ins that fail at will.
 */
export interface Hypervisor {
  readonly uri: string;
  defineDomain(xml: string): Promise<DomainHandle>;
  lookupDomain(name: string): Promise<DomainHandle | null>;
  listDomains(): Promise<DomainSummary[]>;
  freeMemory(): Promise<number>;
  onDomainEvent(listener: (event: DomainEvent) => void): Promise<Subscription>;
  close(): Promise<void>;
}

/** Where a device change applies: the running guest, its persistent definition, or both. */
export interface AffectOptions {
  live?: boolean;
  config?: boolean;
}

export interface SnapshotInfo {
  name: string;
  /** the snapshot's XML as libvirt keeps it */
  xml: string;
}

/** A domain as a Hypervisor hands it out (`Domain` implements it). */
export interface DomainHandle {
  readonly name: string;
  readonly uuid: string;
  start(): Promise<void>;
  shutdown(): Promise<void>;
  /** ACPI reboot request (the guest must act on it) */
  reboot(): Promise<void>;
  /** hard reset, like the reset button */
  reset(): Promise<void>;
  attachDevice(xml: string, options?: AffectOptions): Promise<void>;
  detachDevice(xml: string, options?: AffectOptions): Promise<void>;
  /** the guest's current memory (balloon), KiB */
  setMemory(kib: number, options?: AffectOptions): Promise<void>;
  createSnapshot(xml: string, options?: { diskOnly?: boolean }): Promise<string>;
  revertToSnapshot(name: string): Promise<void>;
  deleteSnapshot(name: string): Promise<void>;
  listSnapshots(): Promise<SnapshotInfo[]>;
  /** the guest's console (its first serial port unless `dev` names another), read and write */
  openConsole(dev?: string): Promise<import('node:stream').Duplex>;
  destroy(): Promise<void>;
  undefine(options?: UndefineOptions): Promise<void>;
  rename(name: string): Promise<void>;
  state(): Promise<{ state: DomainState; reason: number }>;
  xml(options?: XmlOptions): Promise<string>;
  isActive(): Promise<boolean>;
  free(): void;
}

// Shared by every connection in the process: calls that may block run here.
let pool: CallPool | undefined;
const callPool = (): CallPool => (pool ??= new CallPool());
/** Connections not yet closed: shutdown closes them before the pool they close on. */
const openConnections = new Set<Libvirt>();

// Handles the application forgot to free are freed when their wrapper is collected.
const collected = new FinalizationRegistry<Handle>((h) => h.free());

/**
 * A connection to libvirt through libvirt.so (koffi). Calls that talk to the daemon run on
 * worker threads; `isAlive()` and `libraryVersion()` are synchronous.
 */
export class Libvirt implements Hypervisor {
  private conn: bigint | undefined;
  private readonly handles = new Set<Handle>();
  private readonly freeing = new Set<Promise<unknown>>();
  private readonly subscriptions = new Set<number>();
  private inFlight = 0;
  private drained: (() => void) | undefined;

  private constructor(
    conn: bigint,
    readonly uri: string,
  ) {
    this.conn = conn;
  }

  /** Opens a connection, e.g. `qemu:///system`, `qemu+ssh://host/system`, `test:///default`. */
  static async open(uri: string): Promise<Libvirt> {
    initLibvirt();
    const conn = unwrap(await callPool().call<bigint>('open', [uri]));
    const lv = new Libvirt(conn, uri);
    openConnections.add(lv);
    try {
      await eventLoop.hold(); // answers libvirtd's keepalive probes while the connection is open
    } catch (e) {
      await lv.close();
      throw e;
    }
    lv.held = true;
    return lv;
  }

  /** libvirt.so's version, e.g. 9000000 for 9.0.0. */
  static libraryVersion(): number {
    return libraryVersion();
  }

  /**
   * Ends the worker threads (they are unref'd anyway; for tidy teardown). Connections still open —
   * or closing, e.g. a console stream's as it ends — are closed first: their close runs on the pool.
   */
  static async shutdown(): Promise<void> {
    await Promise.allSettled([...openConnections].map((c) => c.close()));
    await eventLoop.shutdown();
    await pool?.close();
    pool = undefined;
  }

  get closed(): boolean {
    return this.conn === undefined;
  }

  /** Synchronous, no round trip for local drivers: is the connection usable? */
  isAlive(): boolean {
    const r = runOp('isAlive', [this.raw()]) as OpResult<number>;
    return unwrap(r) === 1;
  }

  async version(): Promise<number> {
    return this.call('version', [this.raw()]);
  }
  async libVersion(): Promise<number> {
    return this.call('libVersion', [this.raw()]);
  }
  async capabilities(): Promise<string> {
    return this.call('capabilities', [this.raw()]);
  }
  async domainCapabilities(
    options: { emulator?: string; arch?: string; machine?: string; virttype?: string } = {},
  ): Promise<string> {
    return this.call('domainCapabilities', [
      this.raw(),
      options.emulator ?? null,
      options.arch ?? null,
      options.machine ?? null,
      options.virttype ?? null,
    ]);
  }
  async hostname(): Promise<string> {
    return this.call('hostname', [this.raw()]);
  }
  /** Free host memory in bytes, as libvirt reports it. */
  async freeMemory(): Promise<number> {
    return this.call('freeMemory', [this.raw()]);
  }

  // ---- domains --------------------------------------------------------------------------------

  /** Defines a persistent domain (not started). */
  async defineDomain(xml: string): Promise<Domain> {
    return this.domain(await this.call<bigint>('defineDomain', [this.raw(), xml]));
  }

  /** Creates and starts a transient domain. */
  async createDomain(xml: string, options: { autodestroy?: boolean; paused?: boolean } = {}): Promise<Domain> {
    const flags = (options.paused ? 1 : 0) | (options.autodestroy ? 2 : 0);
    return this.domain(await this.call<bigint>('createDomain', [this.raw(), xml, flags]));
  }

  /** The domain by name, or null when there is none. */
  async lookupDomain(name: string): Promise<Domain | null> {
    try {
      return this.domain(await this.call<bigint>('lookupDomain', [this.raw(), name]));
    } catch (e) {
      if (e instanceof LibvirtError && e.isNotFound()) return null;
      throw e;
    }
  }

  async lookupDomainByUuid(uuid: string): Promise<Domain | null> {
    try {
      return this.domain(await this.call<bigint>('lookupDomainByUuid', [this.raw(), uuid]));
    } catch (e) {
      if (e instanceof LibvirtError && e.isNotFound()) return null;
      throw e;
    }
  }

  async listDomains(): Promise<DomainSummary[]> {
    const list = await this.call<Array<Omit<DomainSummary, 'state'> & { state: number }>>('listDomains', [
      this.raw(),
      0,
    ]);
    return list.map((d) => ({ ...d, state: stateName(d.state) }));
  }

  // ---- networks (libvirt's own network objects) ---------------------------------------------

  async defineNetwork(xml: string): Promise<Network> {
    return this.network(await this.call<bigint>('defineNetwork', [this.raw(), xml]));
  }
  async createNetwork(xml: string): Promise<Network> {
    return this.network(await this.call<bigint>('createNetwork', [this.raw(), xml]));
  }
  async lookupNetwork(name: string): Promise<Network | null> {
    try {
      return this.network(await this.call<bigint>('lookupNetwork', [this.raw(), name]));
    } catch (e) {
      if (e instanceof LibvirtError && e.isNotFound()) return null;
      throw e;
    }
  }
  async listNetworks(): Promise<NetworkSummary[]> {
    return this.call('listNetworks', [this.raw(), 0]);
  }

  // ---- events ---------------------------------------------------------------------------------

  /**
   * Domain lifecycle events (defined, undefined, started, stopped, crashed, …) delivered on the
   * main thread. Listeners do not keep the process alive. Call `off()` to stop.
   */
  async onDomainEvent(listener: (event: DomainEvent) => void): Promise<Subscription> {
    const key = await eventLoop.subscribe(this.raw(), listener);
    this.subscriptions.add(key);
    return {
      off: async () => {
        if (!this.subscriptions.delete(key)) return;
        await eventLoop.unsubscribe(key);
      },
    };
  }

  /**
   * Closes the connection: waits for calls in flight, removes event subscriptions, frees every
   * handle still open. Handles used afterwards fail with code CLOSED instead of crashing.
   */
  /** Closes the connection; a second call waits for the first. */
  close(): Promise<void> {
    this.closing ??= this.closeNow().finally(() => openConnections.delete(this));
    return this.closing;
  }

  private closing: Promise<void> | undefined;

  private async closeNow(): Promise<void> {
    const conn = this.conn;
    if (conn === undefined) return;
    this.conn = undefined;
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    for (const key of [...this.subscriptions]) await eventLoop.unsubscribe(key);
    this.subscriptions.clear();
    for (const h of [...this.handles]) h.free();
    await Promise.all([...this.freeing]); // handles go before their connection
    try {
      unwrap(await callPool().call('close', [conn]));
    } finally {
      if (this.held) await eventLoop.release();
      this.held = false;
    }
  }

  /** whether this connection holds the event loop running (released when it closes) */
  private held = false;

  // ---- internals ------------------------------------------------------------------------------

  /** Frees a raw handle on the pool (virDomainFree may take the driver lock). */
  private release(kind: 'domain' | 'network', ptr: bigint): void {
    // freeing is not awaited by the caller: close() awaits it, and a failure (the pool shut down
    // under it) must not surface as an unhandled rejection that ends the process
    const freeing: Promise<unknown> = callPool()
      .call(kind === 'domain' ? 'domainFree' : 'networkFree', [ptr])
      .catch(() => undefined);
    this.freeing.add(freeing);
    void freeing.finally(() => this.freeing.delete(freeing));
  }

  /** @internal runs an operation on the pool, counted so close() can wait for it */
  async call<T>(op: string, args: unknown[]): Promise<T> {
    this.inFlight++;
    try {
      const result = await callPool().call<T>(op, args);
      if (!result.ok) throw toLibvirtError(result.error);
      return result.value;
    } finally {
      if (--this.inFlight === 0) this.drained?.();
    }
  }

  /** @internal the connection pointer, for streams driven by the event-loop thread */
  rawConnection(): bigint {
    return this.raw();
  }

  private raw(): bigint {
    if (this.conn === undefined) throw new VirtwireError('CLOSED', `connection to ${this.uri} is closed`);
    return this.conn;
  }

  private track(ptr: bigint, kind: 'domain' | 'network', what: string): Handle {
    const owner: HandleOwner = {
      release: (k, p) => {
        this.handles.delete(handle);
        this.release(k, p);
      },
    };
    const handle = new Handle(ptr, kind, owner, what);
    this.handles.add(handle);
    return handle;
  }

  private async domain(ptr: bigint): Promise<Domain> {
    const handle = this.track(ptr, 'domain', 'domain');
    const info = await this.call<{ name: string; uuid: string }>('domainInfo', [ptr]);
    const d = new Domain(this, handle, info.name, info.uuid);
    collected.register(d, handle, handle);
    return d;
  }

  private async network(ptr: bigint): Promise<Network> {
    const handle = this.track(ptr, 'network', 'network');
    const name = await this.call<string>('networkName', [ptr]);
    const n = new Network(this, handle, name);
    collected.register(n, handle, handle);
    return n;
  }
}

/** A libvirt domain handle. Free it with `free()` (or `using`), or let it be collected. */
export class Domain implements DomainHandle {
  constructor(
    private readonly lv: Libvirt,
    private readonly handle: Handle,
    readonly name: string,
    readonly uuid: string,
  ) {}

  async start(): Promise<void> {
    return this.op('domainStart');
  }
  /** Asks the guest to shut down (ACPI); returns before it has. */
  async shutdown(): Promise<void> {
    return this.op('domainShutdown');
  }
  /** Asks the guest to reboot (ACPI); returns before it has. */
  async reboot(): Promise<void> {
    return this.op('domainReboot', 0);
  }
  /** Resets the guest at once (no shutdown). */
  async reset(): Promise<void> {
    return this.op('domainReset');
  }
  async attachDevice(xml: string, options: AffectOptions = { live: true, config: true }): Promise<void> {
    return this.op('domainAttach', xml, affect(options));
  }
  async detachDevice(xml: string, options: AffectOptions = { live: true, config: true }): Promise<void> {
    return this.op('domainDetach', xml, affect(options));
  }
  async setMemory(kib: number, options: AffectOptions = { live: true, config: true }): Promise<void> {
    return this.op('domainSetMemory', kib, affect(options));
  }
  /** Creates a snapshot from its XML; its name. Internal (qcow2), with memory when running, unless diskOnly. */
  async createSnapshot(xml: string, options: { diskOnly?: boolean } = {}): Promise<string> {
    // VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY = 16
    return this.lv.call('snapshotCreate', [this.handle.get(), xml, options.diskOnly ? 16 : 0]);
  }
  async revertToSnapshot(name: string): Promise<void> {
    await this.lv.call('snapshotRevert', [this.handle.get(), name, 0]);
  }
  async deleteSnapshot(name: string): Promise<void> {
    await this.lv.call('snapshotDelete', [this.handle.get(), name, 0]);
  }
  async listSnapshots(): Promise<SnapshotInfo[]> {
    return this.lv.call('snapshotList', [this.handle.get()]);
  }
  /** The guest's console (its first serial port, or `dev` such as "serial0") as a Duplex. */
  async openConsole(dev?: string): Promise<ConsoleStream> {
    return ConsoleStream.open(this.lv.rawConnection(), this.handle.get(), dev, this);
  }
  /** Stops the guest at once (power off). */
  async destroy(): Promise<void> {
    return this.op('domainDestroy');
  }
  async undefine(options: UndefineOptions = {}): Promise<void> {
    const flags =
      (options.managedSave ? 1 : 0) |
      (options.snapshotsMetadata ? 2 : 0) |
      (options.nvram ? 4 : 0) |
      (options.checkpointsMetadata ? 16 : 0);
    return this.op('domainUndefine', flags);
  }
  /** Renames a shut-off domain (libvirt refuses for a running one: OPERATION_INVALID). */
  async rename(name: string): Promise<void> {
    return this.op('domainRename', name);
  }
  async state(): Promise<{ state: DomainState; reason: number }> {
    const s = await this.lv.call<{ state: number; reason: number }>('domainState', [this.handle.get()]);
    return { state: stateName(s.state), reason: s.reason };
  }
  async xml(options: XmlOptions = {}): Promise<string> {
    return this.lv.call('domainXml', [this.handle.get(), (options.secure ? 1 : 0) | (options.inactive ? 2 : 0)]);
  }
  async isActive(): Promise<boolean> {
    return (await this.lv.call<number>('domainIsActive', [this.handle.get()])) === 1;
  }
  async isPersistent(): Promise<boolean> {
    return (await this.lv.call<number>('domainIsPersistent', [this.handle.get()])) === 1;
  }
  async info(): Promise<DomainSummary> {
    const d = await this.lv.call<Omit<DomainSummary, 'state'> & { state: number }>('domainInfo', [this.handle.get()]);
    return { ...d, state: stateName(d.state) };
  }
  free(): void {
    this.handle.free();
  }
  [Symbol.dispose](): void {
    this.free();
  }

  private async op(name: string, ...args: unknown[]): Promise<void> {
    await this.lv.call(name, [this.handle.get(), ...args]);
  }
}

/** A libvirt network handle. */
export class Network {
  constructor(
    private readonly lv: Libvirt,
    private readonly handle: Handle,
    readonly name: string,
  ) {}

  async start(): Promise<void> {
    return this.op('networkStart');
  }
  async destroy(): Promise<void> {
    return this.op('networkDestroy');
  }
  async undefine(): Promise<void> {
    return this.op('networkUndefine');
  }
  async xml(options: { inactive?: boolean } = {}): Promise<string> {
    return this.lv.call('networkXml', [this.handle.get(), options.inactive ? 1 : 0]);
  }
  async isActive(): Promise<boolean> {
    return (await this.lv.call<number>('networkIsActive', [this.handle.get()])) === 1;
  }
  free(): void {
    this.handle.free();
  }
  [Symbol.dispose](): void {
    this.free();
  }

  private async op(name: string): Promise<void> {
    await this.lv.call(name, [this.handle.get()]);
  }
}
