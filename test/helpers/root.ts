// The integration tier needs root (namespaces, libvirtd, taps). Without it, its suites are
// reported as skipped with the reason in their title — never as passes.
export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

export const describeAsRoot: jest.Describe = isRoot()
  ? describe
  : (Object.assign(
      (name: string, fn: () => void) =>
        describe.skip(`${name} [skipped: needs root — run npm test as root, as CI does]`, fn),
      describe,
    ) as jest.Describe);
