// The engine: every operation on VMs and tenant networks is a method here, and each receives
// the same collaborators (deps.ts) from the composition root. The methods are thin: each
// operation lives in its own module under ops/, a function of (deps, …).
import { injectable, inject } from 'tsyringe';
import type { CreateVmOptions, CreatedVm, DestroyVmOptions } from '../../types/vm.js';
import type { ResolvedVm } from '../../types/resolved.js';
import type {
  Clock,
  Connector,
  EngineDeps,
  KvmProbe,
  Logger,
  PlaneFactory,
  RunnerFactory,
  StateFactory,
} from './deps.js';
import { TOKENS } from './tokens.js';
import type { Observed, Plan } from './plan.js';
import type { SpecFile } from './spec-file.js';
import type { ScopeOptions } from './ops/scope.js';
import { createVm } from './ops/create.js';
import { destroyVm } from './ops/destroy.js';
import { observe, plan } from './ops/observe.js';
import { applyPlan, destroyAll, type ApplyOptions } from './ops/converge.js';
import { dryRun, type DryRun } from './ops/dry-run.js';
import { importDomain } from './ops/import.js';

@injectable()
export class Engine {
  readonly deps: EngineDeps;

  constructor(
    @inject(TOKENS.Connect) connect: Connector,
    @inject(TOKENS.Runners) runners: RunnerFactory,
    @inject(TOKENS.Planes) planes: PlaneFactory,
    @inject(TOKENS.State) state: StateFactory,
    @inject(TOKENS.Kvm) kvm: KvmProbe,
    @inject(TOKENS.Clock) clock: Clock,
    @inject(TOKENS.Log) log: Logger,
  ) {
    this.deps = { connect, runners, planes, state, kvm, clock, log };
  }

  create(spec: unknown, options?: CreateVmOptions): Promise<CreatedVm> {
    return createVm(this.deps, spec, options);
  }

  destroy(name: string, options?: DestroyVmOptions): Promise<boolean> {
    return destroyVm(this.deps, name, options);
  }

  observe(options?: ScopeOptions): Promise<Observed> {
    return observe(this.deps, options);
  }

  plan(spec: SpecFile, options?: ScopeOptions): Promise<Plan> {
    return plan(this.deps, spec, options);
  }

  apply(p: Plan, options?: ApplyOptions): Promise<CreatedVm[]> {
    return applyPlan(this.deps, p, options);
  }

  dryRun(p: Plan, options?: ScopeOptions): Promise<DryRun> {
    return dryRun(this.deps, p, options);
  }

  destroyAll(options?: ScopeOptions & { report?: (name: string) => void }): Promise<string[]> {
    return destroyAll(this.deps, options);
  }

  import(domain: string, as: string, options?: ScopeOptions): Promise<ResolvedVm> {
    return importDomain(this.deps, domain, as, options);
  }
}
