// Injection tokens of the composition root (container.ts). Explicit tokens, because esbuild/tsx
// emit no decorator metadata for constructor parameter types.
export const TOKENS = {
  /** Connector: (uri) => Promise<Hypervisor> */
  Connect: Symbol.for('virtwire.Connect'),
  /** RunnerFactory: this machine's runner and one per SSH target */
  Runners: Symbol.for('virtwire.Runners'),
  /** PlaneFactory: (runner, stateDir) => host plane */
  Planes: Symbol.for('virtwire.Planes'),
  /** StateFactory: (stateDir) => StateStore */
  State: Symbol.for('virtwire.State'),
  /** KvmProbe: (host) => Promise<KvmVerdict> */
  Kvm: Symbol.for('virtwire.Kvm'),
  /** Clock */
  Clock: Symbol.for('virtwire.Clock'),
  /** Logger */
  Log: Symbol.for('virtwire.Log'),
} as const;
