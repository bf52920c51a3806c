// createVm / destroyVm: validation, allocation, the host plane, disks, domain XML and the
// libvirt binding composed into one call, with rollback of everything a failed call created.
import { injectable, inject } from 'tsyringe';
import type { CreateVmOptions, CreatedVm, DestroyVmOptions, ProgressEvent, CreateVmStep, HostTarget } from '../../types/vm.js';
import type { ResolvedVm } from '../../types/resolved.js';
import { ApplyError, HostUnsupportedError, SpecError, VirtwireError, isVirtwireError } from '../errors/index.js';
import { validateVm } from '../spec/index.js';
import { renderResolvedDomainXml, effectiveAccel, vmPaths, DEFAULT_STATE_DIR, VIRTWIRE_XMLNS } from '../xml/index.js';
import type { CommandRunner, HostFiles, HostPlane, KvmVerdict } from '../host/index.js';
import { hostContext, hostStateFor, placeVm, validateHosts, type HostContext } from './hosts.js';
import type { Libvirt, Domain } from '../libvirt/index.js';
import { TOKENS } from './tokens.js';
import { withStateLock } from './lock.js';
import { allocate } from './allocate.js';
import { readRecords, writeRecord, removeVmDir, type VmRecord } from './registry.js';
import { createOverlay, createSeedIso } from './disks.js';

const DEFAULT_URI = 'qemu:///system';

@injectable()
export class VmEngine {
  constructor(
    @inject(TOKENS.Runner) private readonly runner: CommandRunner,
    @inject(TOKENS.Connect) private readonly connect: (uri: string) => Promise<Libvirt>,
    @inject(TOKENS.Kvm) private readonly kvm: (host: HostContext) => Promise<KvmVerdict>,
  ) {}

  /** The host a recorded VM (or a new one) lives on, and how to reach it. */
  private context(target: HostTarget | undefined, options: { uri?: string; stateDir: string }): HostContext {
    return hostContext(target, { runner: this.runner, uri: options.uri ?? DEFAULT_URI, stateDir: options.stateDir });
  }

  async create(spec: unknown, options: CreateVmOptions = {}): Promise<CreatedVm> {
    const began = Date.now();
    const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
    const timeoutMs = options.timeoutMs ?? 120_000;
    const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(options.signal ? [options.signal] : [])]);
    const emit = (step: ProgressEvent['step'], status: ProgressEvent['status']) => options.onProgress?.({ step, status, elapsedMs: Date.now() - began });
    const undo: { step: string; fn: () => Promise<void> }[] = [];
    const done: string[] = [];
    let step: CreateVmStep = 'validate';
    let lv: Libvirt | undefined;
    let host: HostContext | undefined;
    let placed: HostTarget | undefined;
    const run = async <T>(name: CreateVmStep, fn: () => Promise<T>): Promise<T> => {
      step = name;
      stopIfAborted(signal, options.signal, timeoutMs);
      emit(name, 'start');
      const value = await fn();
      emit(name, 'done');
      done.push(name);
      return value;
    };

    try {
      let kvm = false;
      const vm = await run('validate', async () => {
        const v = validateVm(spec);
        const hosts = validateHosts(options.hosts);
        placed = await placeVm(v, hosts, this.connect);
        host = this.context(placed, { ...options, stateDir });
        await checkBootFiles(v, host.plane.files);
        // one rule for every host, asked through its own runner (never libvirt's kvm capability alone)
        const verdict = await this.kvm(host);
        kvm = verdict.usable;
        if (v.accel === 'kvm' && !kvm) throw new HostUnsupportedError('kvm', `accel 'kvm' was asked for VM ${v.name}, but KVM is not usable ${host.remote ? `on host ${host.name}` : 'here'} (${verdict.reason}); use 'auto' or 'tcg'`);
        return v;
      });
      const on = host!;
      const accel = effectiveAccel(vm.accel, kvm);

      const allocated = await run('network', () =>
        withStateLock(stateDir, async () => {
          const records = readRecords(stateDir);
          const mine: VmRecord = { vm: allocate(vm, records, options.pools), accel, createdAt: new Date().toISOString(), ...(placed ? { host: placed.name, hostTarget: placed } : {}) };
          writeRecord(stateDir, mine);
          undo.push({ step: 'network', fn: () => this.forget(stateDir, on, vm.name) });
          await on.plane.apply(hostStateFor([...records, mine], on));
          return mine.vm;
        }),
      );

      await run('disks', async () => {
        // the VM's directory on its host: disks, seed and the serial log QEMU writes there
        await on.plane.files.mkdir(vmPaths(on.stateDir, allocated.name).dir);
        await createOverlay(on.runner, on.plane.files, allocated, on.stateDir);
        await createSeedIso(on.runner, on.plane.files, allocated, on.stateDir);
      });

      const dom = await run('define', async () => {
        lv = await this.connect(on.uri);
        const xml = renderResolvedDomainXml(allocated, { kvmUsable: kvm, stateDir: on.stateDir, metadata: { 'created-at': new Date(began).toISOString() } });
        const d = await lv.defineDomain(xml);
        undo.push({ step: 'define', fn: () => undefine(d) });
        return d;
      });

      await run('start', async () => {
        await dom.start();
        undo.push({ step: 'start', fn: async () => void (await dom.isActive().catch(() => false) && (await dom.destroy())) });
      });

      if (options.waitForIp !== false) {
        await run('lease', () => this.waitForLeases(allocated, on.plane, signal));
      }
      dom.free();
      return result(allocated, accel, on, Date.now() - began);
    } catch (cause) {
      emit(step, 'failed');
      const rollbackErrors: unknown[] = [];
      for (const u of undo.reverse()) await u.fn().catch((e: unknown) => void rollbackErrors.push(e));
      // bad input is reported as itself: nothing had changed
      if (undo.length === 0 && cause instanceof SpecError) throw cause;
      if (undo.length === 0 && isVirtwireError(cause, 'HOST_UNSUPPORTED')) throw cause;
      throw new ApplyError({ step, stepsDone: done, rolledBack: rollbackErrors.length === 0, rollbackErrors }, { cause: abortReason(cause, signal, options.signal, timeoutMs) });
    } finally {
      await lv?.close();
    }
  }

  private async waitForLeases(vm: ResolvedVm, plane: HostPlane, signal: AbortSignal): Promise<void> {
    await Promise.all(vm.nics.map(async (nic) => {
      const lease = await plane.waitForLease(nic.network.tenant, nic.mac, { timeoutMs: 24 * 3600_000, signal });
      if (lease.ip !== nic.ip) throw new VirtwireError('APPLY_FAILED', `NIC ${nic.index} of ${vm.name} leased ${lease.ip}, not its pinned ${nic.ip}`);
    }));
  }

  /**
   * Removes the VM's record and files (here, and on its host) and re-applies its host's plane
   * without it (in the lock).
   */
  private forget(stateDir: string, host: HostContext, name: string): Promise<void> {
    return withStateLock(stateDir, async () => {
      removeVmDir(stateDir, name);
      // a remote host's state dir may have the same path as ours: it is still another machine's
      if (host.remote || host.stateDir !== stateDir) await host.plane.files.remove(vmPaths(host.stateDir, name).dir);
      await host.plane.apply(hostStateFor(readRecords(stateDir), host));
    });
  }

  async destroy(name: string, options: DestroyVmOptions = {}): Promise<boolean> {
    const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
    const record = readRecords(stateDir).find((r) => r.vm.name === name);
    const hosts = validateHosts(options.hosts);
    // the hosts given, else the host as the record keeps it (destroy works from the state alone)
    const target = record?.host === undefined ? undefined : hosts.find((h) => h.name === record.host) ?? record.hostTarget;
    if (record?.host !== undefined && !target) {
      throw new VirtwireError('NOT_FOUND', `VM ${name} runs on host ${record.host}, which is not among the hosts given (${hosts.map((h) => h.name).join(', ') || 'none'})`);
    }
    const host = this.context(target, { ...options, stateDir });
    const lv = await this.connect(host.uri);
    try {
      const known = record !== undefined;
      const dom = await lv.lookupDomain(name);
      const ours = dom ? known || (await dom.xml()).includes(VIRTWIRE_XMLNS) : false;
      if (!known && !ours) {
        dom?.free();
        if (options.missingOk) return false;
        throw new VirtwireError('NOT_FOUND', `no VM named ${name} was created by virtwire here (state dir ${stateDir})`);
      }
      if (dom) {
        if (await dom.isActive()) await dom.destroy();
        await undefine(dom);
      }
      await this.forget(stateDir, host, name);
      return true;
    } finally {
      await lv.close();
    }
  }
}

/** The files a VM boots from must exist on its host before anything is made for it (bad input, not a rollback). */
async function checkBootFiles(vm: ResolvedVm, files: HostFiles): Promise<void> {
  const wanted = 'image' in vm.boot ? { 'boot.image': vm.boot.image } : { 'boot.kernel': vm.boot.kernel, ...(vm.boot.initrd ? { 'boot.initrd': vm.boot.initrd } : {}) };
  const missing: [string, string][] = [];
  for (const [path, f] of Object.entries(wanted)) if (!(await files.exists(f))) missing.push([path, f]);
  if (missing.length > 0) throw new SpecError(missing.map(([path, f]) => ({ path, message: `${f} does not exist${vm.host ? ` on host ${vm.host}` : ''}` })), `VM spec for ${vm.name}`);
}

async function undefine(d: Domain): Promise<void> {
  try {
    await d.undefine({ managedSave: true, nvram: true });
  } finally {
    d.free();
  }
}

function result(vm: ResolvedVm, accel: 'kvm' | 'tcg', host: HostContext, readyMs: number): CreatedVm {
  return {
    name: vm.name,
    ...(host.name ? { host: host.name } : {}),
    uuid: vm.uuid,
    accel,
    nics: vm.nics.map((n) => ({ tenant: n.network.tenant, mac: n.mac, ip: n.ip!, tap: n.tap, bridge: n.network.bridge })),
    serialLog: vm.serialLog ?? vmPaths(host.stateDir, vm.name).serialLog,
    readyMs,
  };
}

function stopIfAborted(signal: AbortSignal, user: AbortSignal | undefined, timeoutMs: number): void {
  if (signal.aborted) throw abortReason(signal.reason, signal, user, timeoutMs);
}

function abortReason(cause: unknown, signal: AbortSignal, user: AbortSignal | undefined, timeoutMs: number): unknown {
  if (!signal.aborted) return cause;
  if (user?.aborted) return new VirtwireError('ABORTED', 'createVm was aborted', { cause: user.reason });
  return new VirtwireError('TIMEOUT', `createVm did not finish within ${timeoutMs} ms`, { cause });
}
