// The composition root: the only place the layers are wired together. Callers of createVm never
// see it; tests build an engine with their own runner, connection or KVM answer.
import 'reflect-metadata';
import { container as root, type DependencyContainer } from 'tsyringe';
import { ExecaRunner, kvmVerdict, type CommandRunner, type KvmVerdict } from '../host/index.js';
import type { HostContext } from './hosts.js';
import { Libvirt } from '../libvirt/index.js';
import { TOKENS } from './tokens.js';
import { VmEngine } from './vm-engine.js';

export interface EngineOverrides {
  runner?: CommandRunner;
  connect?: (uri: string) => Promise<Libvirt>;
  kvm?: (host: HostContext) => Promise<KvmVerdict>;
}

export function createEngine(overrides: EngineOverrides = {}): VmEngine {
  const c: DependencyContainer = root.createChildContainer();
  c.register(TOKENS.Runner, { useValue: overrides.runner ?? new ExecaRunner() });
  c.register(TOKENS.Connect, { useValue: overrides.connect ?? ((uri: string) => Libvirt.open(uri)) });
  c.register(TOKENS.Kvm, { useValue: overrides.kvm ?? ((h: HostContext) => kvmVerdict(h.runner, h.plane.files)) });
  return c.resolve(VmEngine);
}

let engine: VmEngine | undefined;
export const defaultEngine = (): VmEngine => (engine ??= createEngine());
