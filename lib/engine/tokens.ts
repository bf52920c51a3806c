// Injection tokens of the composition root (lib/engine/container.ts). Explicit tokens, because
// esbuild/tsx emit no decorator metadata for constructor parameter types.
export const TOKENS = {
  /** CommandRunner for host commands */
  Runner: Symbol.for('virtwire.Runner'),
  /** (uri) => Promise<Libvirt> */
  Connect: Symbol.for('virtwire.Connect'),
  /** (host: HostContext) => Promise<KvmVerdict>: can guests use KVM on that host */
  Kvm: Symbol.for('virtwire.Kvm'),
} as const;
