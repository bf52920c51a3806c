// renderDomainXml for callers who have a spec: validated, with the VM's files where the state
// module puts them (the XML layer renders whatever paths it is given).
import { validateVm } from '../spec/index.js';
import { renderResolvedDomainXml, type DomainRenderOptions } from '../xml/index.js';
import { DEFAULT_STATE_DIR, domainFiles } from './state/paths.js';

export interface RenderOptions extends Omit<DomainRenderOptions, 'files'> {
  /** where the VM's files live (default /var/lib/virtwire) */
  stateDir?: string;
  /**
   * the kernel (an extracted vmlinux) the VM boots instead of its spec's; for a disk image booted
   * directly, with the initrd and arguments read from it — as createVm defines it on the fast path
   */
  kernel?: { path: string; initrd?: string; cmdline?: string };
}

/**
 * Renders a VM spec as libvirt domain XML. Validates first (a SpecError lists every problem);
 * deterministic for the same spec and options.
 */
export function renderDomainXml(spec: unknown, options: RenderOptions = {}): string {
  const vm = validateVm(spec);
  const { stateDir, kernel, ...rest } = options;
  const image = 'image' in vm.boot && kernel ? { ...kernel, cmdline: kernel.cmdline ?? '' } : undefined;
  const files = domainFiles(stateDir ?? DEFAULT_STATE_DIR, vm, { kernel: kernel?.path, imageBoot: image });
  return renderResolvedDomainXml(vm, { ...rest, files });
}
