// Injection tokens of the composition root (lib/engine/container.ts). Explicit tokens, because
// esbuild/tsx emit no decorator metadata for constructor parameter types.
export const TOKENS = {
  /** CommandRunner for host commands */
  Runner: Symbol.for('virtwire.Runner'),
  /** (uri) => Promise<Libvirt> */
  Connect: Symbol.for('virtwire.Connect'),
  /** () => boolean: is KVM usable on this host */
  KvmUsable: Symbol.for('virtwire.KvmUsable'),
} as const;
