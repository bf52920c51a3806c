import { execa } from 'execa';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Validates XML against libvirt's RelaxNG schemas with virt-xml-validate (libvirt-clients + xmllint). */
export async function virtXmlValidate(
  xml: string,
  kind: 'domain' | 'network',
): Promise<{ ok: boolean; output: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'vwtest-xml-'));
  try {
    const file = join(dir, `${kind}.xml`);
    writeFileSync(file, xml);
    const r = await execa('virt-xml-validate', [file, kind], { reject: false, all: true });
    return { ok: r.exitCode === 0, output: r.all ?? '' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
