// The state in PostgreSQL through the built CLI, with real guests, libvirtd and host planes: a
// directory state moved to the database and back without touching a host (plan empty after each
// move), an apply killed with SIGKILL after it recorded a VM (the next command gets the lock at
// once and plan names the repair), an apply whose database restarts under it (a clear error, every
// record whole, the next apply finishes the job), and an apply cut off from the database by a partition (it stops
// before it changes a host: no domain, no bridge, no record).
import { execa } from 'execa';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { buildTestGuest, type TestGuestImage } from '../../lib/testing/index.js';
import { bridgeName } from '../../lib/spec/index.js';
import { describeAsRoot } from '../helpers/root.js';
import { waitFor } from '../helpers/wait.js';
import { guestYaml } from '../helpers/spec-yaml.js';
import { PartitionProxy, freshDatabase, privateCluster, restartCluster } from '../helpers/postgres.js';

const dir = mkdtempSync(join(tmpdir(), 'vwpgc-'));
chmodSync(dir, 0o755);
const stateDir = join(dir, 'state');
const file = join(dir, 'spec.yaml');
const BIN = new URL('../../dist/scripts/virtwire.js', import.meta.url).pathname;
const cli = (args: string[], state?: string) =>
  execa('node', [BIN, '--state-dir', stateDir, ...(state ? ['--state', state] : []), ...args], {
    reject: false,
    timeout: 240_000,
  });
const virsh = (...args: string[]) => execa('virsh', ['-c', 'qemu:///system', ...args], { reject: false });

let image: TestGuestImage;
function writeSpec(...names: [string, string][]): void {
  writeFileSync(
    file,
    [
      'networks:',
      '  - { tenant: vwpga, cidr: 10.85.0.0/24 }',
      '  - { tenant: vwpgb, cidr: 10.86.0.0/24 }',
      'vms:',
      ...names.map(([n, t]) => guestYaml(image, n, t, '', 160)),
      '',
    ].join('\n'),
  );
}

async function recorded(url: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<{ name: string }>('select name from virtwire.vms order by name')).rows.map((r) => r.name);
  } catch (e) {
    if ((e as { code?: string }).code === '42P01') return []; // no schema yet: nothing recorded
    throw e;
  } finally {
    await c.end();
  }
}

describeAsRoot('the state in PostgreSQL through the CLI (real guests)', () => {
  let url: string;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    image = await buildTestGuest();
    ({ url, drop } = await freshDatabase(await privateCluster(), 'cli'));
  });
  afterAll(async () => {
    writeSpec();
    await cli(['destroy', '-f', file, '--auto-approve'], url);
    await cli(['destroy', '-f', file, '--auto-approve']);
    await drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a directory state moves to PostgreSQL and back; no host changes, plan empty after each move', async () => {
    writeSpec(['vwpg-a', 'vwpga']);
    expect((await cli(['apply', '-f', file, '-auto-approve'])).exitCode).toBe(0);
    const uuid = (await virsh('domuuid', 'vwpg-a')).stdout.trim();

    const moved = await cli(['state', 'migrate', '--to', url]);
    expect(moved.stderr).toBe('');
    expect(moved.stdout).toContain('moved 1 VM(s) to postgresql://');
    expect(await recorded(url)).toEqual(['vwpg-a']);
    expect((await cli(['state', 'list'])).stdout.trim()).toBe(''); // the directory holds no record now
    expect((await cli(['state', 'list'], url)).stdout.trim()).toBe('vm.vwpg-a');
    expect((await cli(['plan', '-f', file], url)).stdout).toContain('No changes.');
    // a move to where the state already is: refused, naming it
    const again = await cli(['state', 'migrate', '--to', url], url);
    expect(again.exitCode).not.toBe(0);
    expect(again.stderr).toMatch(/is where the state already is/);

    // the spec file may name the state itself
    writeFileSync(file, `state: ${url}\n` + readFileSync(file, 'utf8'));
    expect((await cli(['plan', '-f', file])).stdout).toContain('No changes.');
    writeSpec(['vwpg-a', 'vwpga']);

    const back = await cli(['state', 'migrate', '--to', stateDir], url);
    expect(back.exitCode).toBe(0);
    expect(await recorded(url)).toEqual([]);
    expect((await cli(['plan', '-f', file])).stdout).toContain('No changes.');
    expect((await virsh('domuuid', 'vwpg-a')).stdout.trim()).toBe(uuid); // the same domain throughout

    // a directory other than the one holding the VM files is refused before anything moves
    await cli(['state', 'migrate', '--to', url]);
    const elsewhere = await cli(['state', 'migrate', '--to', join(dir, 'other')], url);
    expect(elsewhere.stderr).toMatch(/holds its VM files beside its records/);
    expect(await recorded(url)).toEqual(['vwpg-a']);
  });

  test('an apply killed with SIGKILL after it recorded a VM: the lock is free at once, plan names the repair', async () => {
    writeSpec(['vwpg-a', 'vwpga'], ['vwpg-b', 'vwpga']);
    const apply = cli(['apply', '-f', file, '-auto-approve'], url);
    let out = '';
    apply.stdout.on('data', (d: Buffer) => (out += d.toString()));
    apply.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // the record is written before the host changes: kill the moment it is there
    await waitFor('vwpg-b recorded', 120_000, async () => {
      if (apply.exitCode !== null) throw new Error(`apply ended first: ${out}`);
      return (await recorded(url)).includes('vwpg-b');
    });
    apply.kill('SIGKILL');
    await apply;
    const plan = await cli(['plan', '-f', file], url); // no -lock-timeout: the lock must be free now
    expect(plan.exitCode).toBe(0);
    expect(plan.stdout).toMatch(/vm vwpg-b.*repair/);
    expect((await cli(['apply', '-f', file, '-auto-approve'], url)).exitCode).toBe(0);
    expect((await cli(['plan', '-f', file], url)).stdout).toContain('No changes.');
  });

  test('a partition between the CLI and the database: apply stops before it changes a host', async () => {
    const proxy = new PartitionProxy({ host: '127.0.0.1', port: Number(new URL(url).port) });
    await proxy.start();
    try {
      writeSpec(['vwpg-a', 'vwpga'], ['vwpg-b', 'vwpga'], ['vwpg-c', 'vwpgb']);
      const apply = cli(['apply', '-f', file, '-auto-approve'], proxy.via(url));
      // cut when it holds the command lock (its note is in the database), before any record
      await waitFor('apply holds the command lock', 60_000, async () => {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        try {
          return (await c.query("select 1 from virtwire.holders where command like '%apply%'")).rowCount === 1;
        } finally {
          await c.end();
        }
      });
      proxy.cut();
      const r = await apply;
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(/state in postgresql:\/\/.* (could not|is unreachable)|state lock's session .* ended/);
      // nothing of vwpg-c anywhere: no record, no domain, no tenant bridge
      expect(await recorded(url)).toEqual(['vwpg-a', 'vwpg-b']);
      expect((await virsh('dominfo', 'vwpg-c')).exitCode).not.toBe(0);
      expect((await execa('ip', ['link', 'show', bridgeName('vwpgb')], { reject: false })).exitCode).not.toBe(0);
    } finally {
      await proxy.stop();
    }
    // the partitioned holder's session is still alive on the server: force-unlock ends it
    const info = await cli(['plan', '-f', file], url);
    if (info.exitCode !== 0) {
      const id = /session (\d+)/.exec(info.stderr)?.[1];
      expect(id).toBeDefined();
      expect((await cli(['force-unlock', id!], url)).stdout).toMatch(/ended \d session/);
    }
    expect((await cli(['plan', '-f', file], url)).stdout).toContain('vwpg-c');
  });

  test('the database restarts mid-apply: a clear error, nothing half-recorded, the next apply finishes', async () => {
    writeSpec(['vwpg-a', 'vwpga'], ['vwpg-b', 'vwpga'], ['vwpg-c', 'vwpgb'], ['vwpg-d', 'vwpgb'], ['vwpg-e', 'vwpgb']);
    const apply = cli(['apply', '-f', file, '-auto-approve', '-parallelism', '1'], url);
    let out = '';
    apply.stdout.on('data', (d: Buffer) => (out += d.toString()));
    apply.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // restart the server the moment the apply's first new record is in: its later writes are cut off
    await waitFor('a new VM recorded', 120_000, async () => {
      if (apply.exitCode !== null) throw new Error(`apply ended first: ${out}`);
      return (await recorded(url)).some((n) => ['vwpg-c', 'vwpg-d', 'vwpg-e'].includes(n));
    });
    await restartCluster();
    const r = await apply;
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(
      /STATE_UNAVAILABLE|state in postgresql:\/\/.* (could not|is unreachable)|session .* ended/,
    );
    // every record there is whole (it reads back as a VM of the spec), and not every VM got one
    const names = await recorded(url);
    expect(names.filter((n) => ['vwpg-c', 'vwpg-d', 'vwpg-e'].includes(n)).length).toBe(1);
    const list = await cli(['state', 'list'], url);
    expect(list.exitCode).toBe(0);
    expect(list.stdout.trim().split('\n')).toEqual(names.map((n) => `vm.${n}`));
    // the next command needs no force-unlock (the restart ended the holder's sessions) and finishes the job
    const plan = await cli(['plan', '-f', file], url);
    expect(plan.exitCode).toBe(0);
    expect((await cli(['apply', '-f', file, '-auto-approve'], url)).exitCode).toBe(0);
    expect((await cli(['plan', '-f', file], url)).stdout).toContain('No changes.');
    expect(await recorded(url)).toEqual(['vwpg-a', 'vwpg-b', 'vwpg-c', 'vwpg-d', 'vwpg-e']);
  });
});
