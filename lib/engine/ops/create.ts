// createVm: validation, placement, allocation, the host plane, disks, domain XML and the
// hypervisor composed into one call, with rollback of everything a failed call created.
import type {
  CreateVmOptions,
  CreatedVm,
  ProgressEvent,
  CreateVmStep,
  HostTarget,
  WaitFor,
} from '../../../types/vm.js';
import type { ResolvedVm } from '../../../types/resolved.js';
import { ApplyError, HostUnsupportedError, SpecError, VirtwireError, isVirtwireError } from '../../errors/index.js';
import { namespaceNames, validatePathPolicy, validateVm } from '../../spec/index.js';
import { checkVmFiles } from '../file-policy.js';
import { renderResolvedDomainXml, effectiveAccel } from '../../xml/index.js';
import { nicsOf } from './lifecycle.js';
import { bootDetail, kernelFor, recordedBoot } from '../kernel/fast-kernel.js';
import { bootedFiles } from '../kernel/kernel-cache.js';
import { CLOUD_INIT_DONE, pollFile, sshAnswer, waitForFile, waitUntil } from '../../host/index.js';
import { NetnsRunner } from '../../host/namespace.js';
import type { DomainHandle, Hypervisor } from '../../libvirt/index.js';
import type { EngineDeps, TenantPlane } from '../deps.js';
import { placeVm, type HostContext } from '../hosts.js';
import { allocate } from '../allocate.js';
import { createDataDisks, createOverlay, createSeedIso, prepareVmDir } from '../disks.js';
import { domainFiles, vmPaths } from '../state/paths.js';
import type { VmRecord } from '../state/store.js';
import { bind } from './scope.js';
import { removeRecord } from './remove-record.js';
import { checkVmGroups } from './security-groups.js';
import { syncPeerHosts } from '../reconcile.js';

export async function createVm(deps: EngineDeps, spec: unknown, options: CreateVmOptions = {}): Promise<CreatedVm> {
  const began = deps.clock.now().getTime();
  const { state, hosts, scope } = await bind(deps, options);
  const timeoutMs = options.timeoutMs ?? 120_000;
  const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(options.signal ? [options.signal] : [])]);
  const elapsed = () => deps.clock.now().getTime() - began;
  const emit = (step: ProgressEvent['step'], status: ProgressEvent['status'], detail?: string) =>
    options.onProgress?.({ step, status, elapsedMs: elapsed(), ...(detail ? { detail } : {}) });
  const undo: { step: string; fn: () => Promise<void> }[] = [];
  const done: string[] = [];
  let step: CreateVmStep = 'validate';
  let hv: Hypervisor | undefined;
  const run = async <T>(name: CreateVmStep, fn: () => Promise<T>, detail?: string): Promise<T> => {
    step = name;
    stopIfAborted(signal, options.signal, timeoutMs);
    emit(name, 'start');
    const value = await fn();
    emit(name, 'done', detail);
    done.push(name);
    deps.log.debug(`createVm ${String((spec as { name?: unknown })?.name)}: ${name} done at ${elapsed()} ms`);
    return value;
  };

  try {
    const { vm, host, placed, kvm } = await run('validate', async () => {
      const v = validateVm(spec);
      const paths = validatePathPolicy(options.paths);
      checkVmGroups(state, v);
      const target = await placeVm(v, scope.hosts, deps.connect, (h) => hosts.uriOf(h));
      const ctx = hosts.context(target);
      await checkVmFiles(v, ctx.plane.files, ctx.stateDir, paths);
      // one rule for every host, asked through its own runner (never libvirt's kvm capability alone)
      const verdict = await deps.kvm(ctx);
      if (v.accel === 'kvm' && !verdict.usable) {
        throw new HostUnsupportedError(
          'kvm',
          `accel 'kvm' was asked for VM ${v.name}, but KVM is not usable ${ctx.remote ? `on host ${ctx.name}` : 'here'} (${verdict.reason}); use 'auto' or 'tcg'`,
        );
      }
      return { vm: v, host: ctx, placed: target, kvm: verdict.usable };
    });
    const accel = effectiveAccel(vm.accel, kvm);
    // before the record, which names it (a kernel a record names is never evicted)
    const choice = await kernelFor(host, vm, accel, {
      ...(options.kernelCache?.maxMiB !== undefined ? { maxMiB: options.kernelCache.maxMiB } : {}),
      inUse: () => bootedFiles(state.records()),
    });

    const allocated = await run('network', async () => {
      // the record under the lock (allocation sees every other record); the host plane after it,
      // coalesced with concurrent creates for the same host (reconcile.ts)
      const mine = await state.withLock(async () => {
        const records = state.records();
        const mine: VmRecord = {
          vm: allocate(vm, records, options.pools, placed?.name),
          accel,
          createdAt: new Date(began).toISOString(),
          ...hostFields(placed),
          ...recordedBoot(choice),
        };
        await state.put(mine);
        undo.push({
          step: 'network',
          fn: async () => {
            await removeRecord(state, host, vm.name);
            await state.withLock(() => syncPeerHosts(state, hosts, [mine.vm], mine.host));
          },
        });
        return mine;
      });
      await deps.commits.commit(state, hosts, host, [mine.vm], { batch: options.batchHostPlane !== false });
      return mine.vm;
    });
    const files = vmPaths(host.stateDir, allocated.name);

    await run('disks', async () => {
      // the VM's directory on its host: disks, seed and the serial log QEMU writes there
      await prepareVmDir(host.plane.files, host.stateDir, allocated.name);
      await createOverlay(host.runner, host.plane.files, allocated, host.stateDir);
      await createSeedIso(host.runner, host.plane.files, allocated, host.stateDir);
      await createDataDisks(host.runner, host.plane.files, allocated, host.stateDir);
    });

    const dom = await run(
      'define',
      async () => {
        hv = await deps.connect(host.uri);
        const xml = renderResolvedDomainXml(allocated, {
          kvmUsable: kvm,
          files: domainFiles(host.stateDir, allocated, choice),
          metadata: { 'created-at': new Date(began).toISOString() },
        });
        const d = await hv.defineDomain(xml);
        undo.push({ step: 'define', fn: () => undefine(d) });
        return d;
      },
      bootDetail(choice.boot),
    );

    await run('start', async () => {
      await dom.start();
      undo.push({
        step: 'start',
        fn: async () => void ((await dom.isActive().catch(() => false)) && (await dom.destroy())),
      });
    });

    const waitFor: WaitFor = options.waitFor ?? (options.waitForIp === false ? 'none' : 'lease');
    if (waitFor !== 'none') await run('lease', () => waitForLeases(allocated, host.plane, signal));
    if (waitFor === 'ip6') await run('ip6', () => waitForIpv6(host, allocated, signal));
    if (waitFor === 'ssh') await run('ssh', () => waitForSsh(host, allocated, signal));
    const serialLog = allocated.serialLog ?? files.serialLog;
    if (waitFor === 'cloud-init') await run('cloud-init', () => waitForCloudInit(host, serialLog, signal));
    dom.free();
    return { ...result(allocated, accel, host, elapsed()), boot: choice.boot };
  } catch (cause) {
    emit(step, 'failed');
    const rollbackErrors: unknown[] = [];
    for (const u of undo.reverse()) await u.fn().catch((e: unknown) => void rollbackErrors.push(e));
    // bad input is reported as itself: nothing had changed
    if (undo.length === 0 && (cause instanceof SpecError || isVirtwireError(cause, 'HOST_UNSUPPORTED'))) throw cause;
    throw new ApplyError(
      { step, stepsDone: done, rolledBack: rollbackErrors.length === 0, rollbackErrors },
      { cause: abortReason(cause, signal, options.signal, timeoutMs) },
    );
  } finally {
    await hv?.close();
  }
}

const hostFields = (placed: HostTarget | undefined) => (placed ? { host: placed.name, hostTarget: placed } : {});

async function waitForLeases(vm: ResolvedVm, plane: TenantPlane, signal: AbortSignal): Promise<void> {
  await Promise.all(
    vm.nics.map(async (nic) => {
      const lease = await plane.waitForLease(nic.network.tenant, nic.mac, { timeoutMs: 24 * 3600_000, signal });
      if (lease.ip !== nic.ip)
        throw new VirtwireError(
          'APPLY_FAILED',
          `NIC ${nic.index} of ${vm.name} leased ${lease.ip}, not its pinned ${nic.ip}`,
        );
    }),
  );
}

/**
 * Every NIC with IPv6 answers an echo request at its ip6, sent from its gateway: the host's
 * bridge, or a namespaced tenant's namespace (where its gateway6 is).
 */
async function waitForIpv6(host: HostContext, vm: ResolvedVm, signal: AbortSignal): Promise<void> {
  await Promise.all(
    vm.nics
      .filter((nic) => nic.ip6)
      .map((nic) => {
        const runner = nic.network.namespace
          ? new NetnsRunner(host.runner, namespaceNames(nic.network.tenant).netns)
          : host.runner;
        const ping = ['ping', '-6', '-n', '-c', '1', '-W', '1', nic.ip6!];
        return waitUntil(
          async () => (await runner.run(ping, { allowFailure: true, step: `ip6: ${nic.ip6}` })).exitCode === 0,
          { timeoutMs: 24 * 3600_000, intervalMs: 250, signal, what: `${vm.name}'s NIC ${nic.index} at ${nic.ip6}` },
        );
      }),
  );
}

/** The first NIC's port 22 answers as an SSH server (asked from the VM's host). */
async function waitForSsh(host: HostContext, vm: ResolvedVm, signal: AbortSignal): Promise<void> {
  const ip = vm.nics[0]!.ip!;
  await waitUntil(async () => (await sshAnswer(host.runner, ip)) !== undefined, {
    timeoutMs: 24 * 3600_000,
    intervalMs: 500,
    signal,
    what: `SSH on ${vm.name} (${ip}:22)`,
  });
}

/** cloud-init's final line on the VM's console (its serial log on its host). */
async function waitForCloudInit(host: HostContext, serialLog: string, signal: AbortSignal): Promise<void> {
  const test = (text: string) => CLOUD_INIT_DONE.exec(text) ?? undefined;
  const wait = { timeoutMs: 24 * 3600_000, signal, what: `cloud-init to finish (${serialLog})` };
  // watched on this machine; on a remote host re-read over its connection
  if (host.remote) await pollFile(() => host.plane.files.read(serialLog), test, { ...wait, intervalMs: 1000 });
  else await waitForFile(serialLog, test, wait);
}

export async function undefine(d: DomainHandle): Promise<void> {
  try {
    await d.undefine({ managedSave: true, nvram: true });
  } finally {
    d.free();
  }
}

function result(vm: ResolvedVm, accel: 'kvm' | 'tcg', host: HostContext, readyMs: number): Omit<CreatedVm, 'boot'> {
  return {
    name: vm.name,
    ...(host.name ? { host: host.name } : {}),
    uuid: vm.uuid,
    accel,
    nics: nicsOf(vm),
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
