// The composition root: the only place the layers are wired together. tsyringe registers every
// collaborator the engine needs; a child container per engine lets a test (or an embedding
// service) swap any of them. Callers of createVm never see it.
//
// tsyringe needs the Reflect metadata API; `reflect-metadata` adds it to the global Reflect
// object (Reflect.defineMetadata, Reflect.getMetadata, …) when this module is first imported.
// That is the one global virtwire touches; nothing of the container is exported from 'virtwire'.
import 'reflect-metadata';
import { container as root, instanceCachingFactory, type DependencyContainer } from 'tsyringe';
import { LocalRunner, HostPlane, SshRunner, kvmVerdict, type CommandRunner, type SshTarget } from '../host/index.js';
import { Libvirt } from '../libvirt/index.js';
import type { EngineDeps, RunnerFactory } from './deps.js';
import { HostCommits } from './reconcile.js';
import { Engine } from './engine.js';
import { openState } from './state/open.js';
import { TOKENS } from './tokens.js';

export type EngineOverrides = Partial<Omit<EngineDeps, 'commits'>> & {
  /** shorthand: this runner for every host (local and SSH alike), e.g. a recording runner */
  runner?: CommandRunner;
};

/**
 * One SshRunner per SSH target in this process: it serialises the commands to its host (small
 * SSH servers drop concurrent sessions on one connection now and then), so parallel creates on
 * one host must share it.
 */
function defaultRunners(): RunnerFactory {
  const local = new LocalRunner();
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

/** The defaults, once per process in the root container: the runners and the group commits are shared. */
function registerDefaults(c: DependencyContainer): void {
  c.register(TOKENS.Connect, { useValue: (uri: string) => Libvirt.open(uri) });
  c.register(TOKENS.Runners, { useFactory: instanceCachingFactory(() => defaultRunners()) });
  c.register(TOKENS.Planes, {
    useValue: (runner: CommandRunner, stateDir: string) => new HostPlane({ runner, stateDir }),
  });
  c.register(TOKENS.State, { useValue: openState });
  c.register(TOKENS.Kvm, {
    useValue: (h: Parameters<EngineDeps['kvm']>[0]) => kvmVerdict(h.runner, h.plane.files),
  });
  c.register(TOKENS.Clock, { useValue: { now: () => new Date() } });
  c.register(TOKENS.Log, { useValue: { debug: debugLog } });
  c.registerSingleton(HostCommits);
}

/** An engine's own choices, in its child container: they shadow the root's defaults. */
function registerOverrides(c: DependencyContainer, overrides: EngineOverrides): void {
  const { runner, ...rest } = overrides;
  const runners = rest.runners ?? (runner ? { local: () => runner, ssh: () => runner } : undefined);
  const given: [symbol, unknown][] = [
    [TOKENS.Connect, rest.connect],
    [TOKENS.Runners, runners],
    [TOKENS.Planes, rest.planes],
    [TOKENS.State, rest.state],
    [TOKENS.Kvm, rest.kvm],
    [TOKENS.Clock, rest.clock],
    [TOKENS.Log, rest.log],
  ];
  for (const [token, value] of given) if (value !== undefined) c.register(token, { useValue: value });
}

// VIRTWIRE_DEBUG=1 prints the engine's steps on stderr
const debugLog = (message: string) =>
  void (process.env.VIRTWIRE_DEBUG ? process.stderr.write(`virtwire: ${message}\n`) : undefined);

let defaults = false;

export function createEngine(overrides: EngineOverrides = {}): Engine {
  if (!defaults) {
    registerDefaults(root);
    defaults = true;
  }
  const c = root.createChildContainer();
  registerOverrides(c, overrides);
  return c.resolve(Engine);
}

let engine: Engine | undefined;
export const defaultEngine = (): Engine => (engine ??= createEngine());
