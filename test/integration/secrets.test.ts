// A canary secret in a VM's cloud-init user-data: it must be where the VM needs it (its record,
// its seed ISO — both private), and nowhere another user can read it or an operator's terminal
// shows it. Every file under the state dir is read as `nobody`; every CLI output is scanned.
import { execa } from 'execa';
import { mkdtempSync, chmodSync, rmSync, writeFileSync, readdirSync, lstatSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTestGuest, testGuestSpec, type TestGuestImage } from '../../lib/testing/index.js';
import { describeAsRoot } from '../helpers/root.js';

const BIN = new URL('../../dist/scripts/virtwire.js', import.meta.url).pathname;
const CANARY = 'CANARY-5ecr3t-b7d1e0';
const dir = mkdtempSync(join(tmpdir(), 'vwcanary-'));
chmodSync(dir, 0o755);
const stateDir = join(dir, 'state');
const file = join(dir, 'spec.json');
const outputs: string[] = [];
let image: TestGuestImage;

const cli = async (...args: string[]) => {
  const r = await execa('node', [BIN, '--state-dir', stateDir, ...args], { reject: false, timeout: 170_000 });
  outputs.push(r.stdout, r.stderr);
  return r;
};

function walk(d: string): string[] {
  return readdirSync(d).flatMap((e) => {
    const p = join(d, e);
    const st = lstatSync(p);
    return st.isDirectory() ? [p, ...walk(p)] : [p];
  });
}

function spec(userData: string) {
  const vm = { ...testGuestSpec(image, 'vwcanary', []), nics: [{ network: 'vwcanary' }] };
  writeFileSync(
    file,
    JSON.stringify({
      networks: [{ tenant: 'vwcanary', cidr: '10.76.0.0/24' }],
      vms: [{ ...vm, cloudInit: { userData } }],
    }),
  );
}

describeAsRoot('secrets: a canary in user-data is private to root (and QEMU) and never printed', () => {
  beforeAll(async () => {
    image = await buildTestGuest();
  });
  afterAll(async () => {
    await execa('node', [BIN, '--state-dir', stateDir, 'destroy', '-f', file, '--auto-approve'], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });

  test('apply, plan, show and a changed secret: no output carries it', async () => {
    spec(`#cloud-config\npassword: ${CANARY}\n`);
    expect((await cli('plan', '-f', file)).exitCode).toBe(0);
    expect((await cli('plan', '-f', file, '--json')).exitCode).toBe(0);
    const applied = await cli('apply', '-f', file, '--auto-approve');
    expect([applied.exitCode, applied.stderr]).toEqual([0, '']);
    expect((await cli('show')).exitCode).toBe(0);
    expect((await cli('show', '--json')).exitCode).toBe(0);
    spec(`#cloud-config\npassword: ${CANARY}-rotated\n`);
    const changed = await cli('plan', '-f', file, '--detailed-exitcode');
    expect(changed.exitCode).toBe(2);
    expect(changed.stdout).toContain('~ cloudInit.userData: "(sensitive value)" -> "(sensitive value)"');
    expect((await cli('plan', '-f', file, '--json')).stdout).toContain('(sensitive value)');
    expect((await cli('apply', '-f', file, '--dry-run')).exitCode).toBe(0);
    for (const out of outputs) expect(out).not.toContain(CANARY);
  });

  test('no file another user can read holds it; the record and the seed do, privately', async () => {
    const files = walk(stateDir).filter((p) => lstatSync(p).isFile());
    const holding = files.filter((p) => readFileSync(p).includes(CANARY));
    // the VM needs it: its record (to re-create it) and its seed ISO (cloud-init reads it)
    expect(holding.map((p) => p.slice(stateDir.length + 1)).sort()).toEqual([
      'vms/vwcanary/seed.iso',
      'vms/vwcanary/vm.json',
    ]);
    for (const p of files) {
      const asNobody = await execa('runuser', ['-u', 'nobody', '--', 'cat', p], { reject: false, encoding: 'buffer' });
      if (asNobody.exitCode === 0) expect([p, Buffer.from(asNobody.stdout).includes(CANARY)]).toEqual([p, false]);
    }
    for (const p of holding)
      expect((await execa('runuser', ['-u', 'nobody', '--', 'cat', p], { reject: false })).exitCode).not.toBe(0);
    const mode = (p: string) => (statSync(join(stateDir, p)).mode & 0o777).toString(8);
    expect([mode('.'), mode('vms'), mode('vms/vwcanary'), mode('vms/vwcanary/vm.json')]).toEqual([
      '711',
      '711',
      '710',
      '600',
    ]);
    // the serial log and the seed: never world-readable (QEMU owns them while the VM runs)
    for (const f of ['vms/vwcanary/serial.log', 'vms/vwcanary/seed.iso'])
      expect(statSync(join(stateDir, f)).mode & 0o004).toBe(0);
  });
});
