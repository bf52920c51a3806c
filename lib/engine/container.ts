// The composition root: the only place the layers are wired together. tsyringe registers every
// collaborator the engine needs; a child container per engine lets a test (or an embedding
// service) swap any of them. Callers of createVm never see it.
//
// tsyringe needs the Reflect metadata API; `reflect-metadata` adds it to the global Reflect
// object (Reflect.defineMetadata, Reflect.getMetadata, …) when this module is first imported.
// That is the one global virtwire touches; nothing of the container is exported from 'virtwire'.
import 'reflect-metadata';
import { container as root, type DependencyContainer } from 'tsyringe';
import { ExecaRunner, HostPlane, SshRunner, kvmVerdict, type CommandRunner, type SshTarget } from '../host/index.js';
import { Libvirt } from '../libvirt/index.js';
import type { EngineDeps, RunnerFactory } from './deps.js';
import { Engine } from './engine.js';
import { StateStore } from './state/store.js';
import { TOKENS } from './tokens.js';

export type EngineOverrides = Partial<EngineDeps> & {
  /** shorthand: this runner for every host (local and SSH alike), e.g. a recording runner */
  runner?: CommandRunner;
};

/**
 * One SshRunner per SSH target in this process: it serialises the commands to its host (small
 * SSH servers drop concurrent sessions on one connection now and then), so parallel creates on
 * one host must share it.
 */
function defaultRunners(): RunnerFactory {
  const local = new ExecaRunner();
  const ssh = new Map<string, SshRunner>();
  return {
    local: () => local,
    ssh: (t: SshTarget) => {
      const key = JSON.stringify([
        t.destination,
        t.port,
        t.identityFile,
        t.controlDir,
        t.hostKeyPolicy,
        t.knownHostsFile,
      ]);
      let r = ssh.get(key);
      if (!r) ssh.set(key, (r = new SshRunner(t)));
      return r;
    },
  };
}

let shared: RunnerFactory | undefined;

function register(c: DependencyContainer, overrides: EngineOverrides): void {
  const runners =
    overrides.runners ??
    (overrides.runner
      ? { local: () => overrides.runner!, ssh: () => overrides.runner! }
      : (shared ??= defaultRunners()));
  c.register(TOKENS.Connect, { useValue: overrides.connect ?? ((uri: string) => Libvirt.open(uri)) });
  c.register(TOKENS.Runners, { useValue: runners });
  c.register(TOKENS.Planes, {
    useValue: overrides.planes ?? ((runner: CommandRunner, stateDir: string) => new HostPlane({ runner, stateDir })),
  });
  c.register(TOKENS.State, { useValue: overrides.state ?? ((dir: string) => new StateStore(dir)) });
  c.register(TOKENS.Kvm, {
    useValue: overrides.kvm ?? ((h: Parameters<EngineDeps['kvm']>[0]) => kvmVerdict(h.runner, h.plane.files)),
  });
  c.register(TOKENS.Clock, { useValue: overrides.clock ?? { now: () => new Date() } });
  c.register(TOKENS.Log, { useValue: overrides.log ?? { debug: debugLog } });
}

// VIRTWIRE_DEBUG=1 prints the engine's steps on stderr
const debugLog = (message: string) =>
  void (process.env.VIRTWIRE_DEBUG ? process.stderr.write(`virtwire: ${message}\n`) : undefined);

export function createEngine(overrides: EngineOverrides = {}): Engine {
  const c = root.createChildContainer();
  register(c, overrides);
  return c.resolve(Engine);
}

let engine: Engine | undefined;
export const defaultEngine = (): Engine => (engine ??= createEngine());
