// The engine's collaborators: everything an engine operation needs from the layers below, as
// interfaces. The composition root (container.ts) provides the real ones; tests swap any of them
// (a failing hypervisor, a slow runner) through the same container. Nothing in lib/engine
// constructs a runner, a connection or a host plane itself.
import { inject, injectable } from 'tsyringe';
import type { CommandRunner, HostPlane, KvmVerdict, SshTarget } from '../host/index.js';
import type { Hypervisor } from '../libvirt/index.js';
import type { StateStore } from './state/store.js';
import type { HostContext } from './hosts.js';
import { HostCommits } from './reconcile.js';
import { TOKENS } from './tokens.js';

/** Opens a hypervisor connection by libvirt URI. */
export type Connector = (uri: string) => Promise<Hypervisor>;

/** Command runners: this machine's, and one per SSH target (shared in the process). */
export interface RunnerFactory {
  local(): CommandRunner;
  ssh(target: SshTarget): CommandRunner;
}

/** What the engine uses of a host plane (HostPlane is one). */
export type TenantPlane = Pick<
  HostPlane,
  'apply' | 'plan' | 'waitForLease' | 'leases' | 'dnsmasqPid' | 'files' | 'stateDir' | 'runner'
>;

/** A host plane working through `runner`, with its files under `stateDir` on that host. */
export type PlaneFactory = (runner: CommandRunner, stateDir: string) => TenantPlane;

/** The state's records and locks: in `state` (a PostgreSQL URL) when given, else in `stateDir`. */
export type StateFactory = (stateDir: string, state?: string) => StateStore;

/** Whether guests can use KVM on a host (one rule for every host: lib/host/kvm.ts). */
export type KvmProbe = (host: HostContext) => Promise<KvmVerdict>;

export interface Clock {
  now(): Date;
}

export interface Logger {
  debug(message: string): void;
}

export interface EngineDeps {
  connect: Connector;
  runners: RunnerFactory;
  planes: PlaneFactory;
  state: StateFactory;
  kvm: KvmProbe;
  clock: Clock;
  log: Logger;
  /** group commit of host-plane applies (one per process: a singleton of the container) */
  commits: HostCommits;
}

/** The collaborators as the container resolves them, each from its own registration. */
@injectable()
export class Collaborators implements EngineDeps {
  constructor(
    @inject(TOKENS.Connect) readonly connect: Connector,
    @inject(TOKENS.Runners) readonly runners: RunnerFactory,
    @inject(TOKENS.Planes) readonly planes: PlaneFactory,
    @inject(TOKENS.State) readonly state: StateFactory,
    @inject(TOKENS.Kvm) readonly kvm: KvmProbe,
    @inject(TOKENS.Clock) readonly clock: Clock,
    @inject(TOKENS.Log) readonly log: Logger,
    @inject(HostCommits) readonly commits: HostCommits,
  ) {}
}
