// Spec-file YAML for CLI tests: one test-guest VM entry under `vms:`.
import type { TestGuestImage } from '../../lib/testing/index.js';

/** A VM of the test guest on one tenant; `extra` is one more line of its NIC (e.g. its QoS). */
export function guestYaml(image: TestGuestImage, name: string, tenant: string, extra = '', memoryMiB = 192): string {
  return [
    `  - name: ${name}`,
    `    memoryMiB: ${memoryMiB}`,
    `    boot: { kernel: ${image.kernel}, initrd: ${image.initrd}, cmdline: "${image.cmdline} vw.name=${name}" }`,
    '    nics:',
    `      - network: ${tenant}`,
    ...(extra ? [`        ${extra}`] : []),
  ].join('\n');
}
