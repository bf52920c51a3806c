// The built CLI binary as a new user meets it: flags spelled the Terraform way, flags that do not
// exist or belong to another command, per-command help, and the commands that read spec files
// alone (validate, fmt). None of these needs root or a host: they run everywhere, and a state dir
// that does not exist must still not exist afterwards.
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'vwflags-'));
const stateDir = join(dir, 'state-never-made');
const BIN = new URL('../../dist/scripts/virtwire.js', import.meta.url).pathname;
const cli = (...args: string[]) =>
  execa('node', [BIN, '--state-dir', stateDir, ...args], { reject: false, timeout: 60_000, env: { NO_COLOR: '' } });

const GOOD = `networks:
  - tenant: vwflags
    cidr: 10.91.0.0/24
vms:
  - name: vwflags-a
    boot: { kernel: /boot/vmlinuz }
    nics:
      - network: vwflags
`;
const spec = join(dir, 'spec.yaml');

afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeEach(() => writeFileSync(spec, GOOD));
afterEach(() => expect(existsSync(stateDir)).toBe(false));

/** One line on stderr, no stack trace: what every rejected command line gets. */
function oneLine(r: { exitCode?: number; stderr: string }, message: RegExp): void {
  expect(r.exitCode).toBe(1);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('flags', () => {
  test('a flag of another command is refused, naming the commands it belongs to', async () => {
    oneLine(
      await cli('plan', '-f', spec, '-auto-approve'),
      /^Error: unknown flag -auto-approve for virtwire plan \(it is an option of virtwire apply, virtwire destroy\)$/,
    );
    oneLine(
      await cli('show', '--out', 'x'),
      /unknown flag --out for virtwire show \(it is an option of virtwire plan, virtwire graph\)/,
    );
  });

  test('a misspelt flag gets the closest valid one', async () => {
    oneLine(
      await cli('plan', '-f', spec, '--detailed-exitcod'),
      /unknown flag --detailed-exitcod for virtwire plan \(did you mean --detailed-exitcode\?\)/,
    );
    oneLine(
      await cli('apply', '-parallelizm=2', '-f', spec),
      /unknown flag -parallelizm=2 for virtwire apply \(did you mean --parallelism\?\)/,
    );
    oneLine(await cli('state', 'rm', 'x', '--forse'), /unknown flag --forse for virtwire state rm/);
  });

  test("Terraform's single-dash long flags are the same flags", async () => {
    const single = await cli('validate', '-f', spec, '-json');
    const double = await cli('validate', '-f', spec, '--json');
    expect(single.exitCode).toBe(0);
    expect(JSON.parse(single.stdout)).toEqual(JSON.parse(double.stdout));
    // -flag=value and values that must parse
    oneLine(await cli('plan', '-f', spec, '-refresh=maybe'), /option '--refresh <bool>' argument 'maybe' is invalid/);
    oneLine(await cli('plan', '-f', spec, '-lock-timeout=5q'), /'5q' is invalid\. "5q" is not a duration/);
    oneLine(await cli('apply', '-f', spec, '-parallelism=0'), /"0" is not a whole number of at least 1/);
  });

  test('unknown commands, missing arguments and extra arguments: one line each', async () => {
    oneLine(await cli('aply'), /^Error: unknown command 'aply' for virtwire \(did you mean apply\?\)$/);
    oneLine(await cli('state', 'remove', 'x'), /unknown command 'remove' for virtwire state/);
    oneLine(await cli('state', 'rm'), /missing required argument 'names'/);
    oneLine(await cli('show', 'a', 'b'), /too many arguments for 'show'/);
    oneLine(await cli('plan', '-f'), /option '-f, --file <file>' argument missing/);
  });

  test('every command has its own --help, exit 0', async () => {
    for (const command of [['plan'], ['apply'], ['fmt'], ['state', 'rm'], ['output'], ['force-unlock']]) {
      const r = await cli(...command, '--help');
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toContain(`Usage: virtwire ${command.join(' ')}`);
    }
    expect((await cli('plan', '--help')).stdout).toMatch(/--target <name>[\s\S]*--lock-timeout <duration>/);
    expect((await cli('--help')).stdout).toContain('Exit codes: 0 ok, 1 error, 2 changes present');
    const none = await execa('node', [BIN], { reject: false });
    expect([none.exitCode, none.stderr]).toEqual([1, expect.stringContaining('Usage: virtwire')]);
  });
});

describe('validate', () => {
  test('a good file: success, exit 0, no host, no state', async () => {
    const r = await cli('validate', '-f', spec);
    expect([r.exitCode, r.stdout.trim()]).toEqual([0, 'Success! The spec file is valid.']);
  });

  test('tenants that overlap are valid: validate says what virtwire does about them', async () => {
    writeFileSync(spec, `${GOOD.replace('networks:\n', 'networks:\n  - {tenant: vwother, cidr: 10.91.0.0/25}\n')}`);
    const r = await cli('validate', '-f', spec);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(
      /Note: tenants vwother \(10\.91\.0\.0\/25\) and vwflags \(10\.91\.0\.0\/24\) overlap: .*namespace of its own/,
    );
    const j = JSON.parse((await cli('validate', '-f', spec, '-json')).stdout) as Record<string, unknown>;
    expect(j).toMatchObject({ valid: true, error_count: 0, warning_count: 1 });
  });

  test('every problem with its line; -json diagnostics of format 1.0', async () => {
    writeFileSync(
      spec,
      GOOD.replace('cidr: 10.91.0.0/24', 'cidr: 10.91.0.0/33').replace('    nics:', '    colour: red\n    nics:'),
    );
    const r = await cli('validate', '-f', spec);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/spec\.yaml:3: networks\[0\]\.cidr: .*10\.91\.0\.0\/33/);
    expect(r.stderr).toMatch(/spec\.yaml:7: vms\[0\]\.colour: unknown field/);
    expect(r.stderr).toMatch(/spec\.yaml:9: vms\[0\]\.nics\[0\]\.network: no network with tenant "vwflags"/);
    const j = await cli('validate', '-f', spec, '-json');
    expect(j.exitCode).toBe(1);
    const doc = JSON.parse(j.stdout) as {
      format_version: string;
      valid: boolean;
      error_count: number;
      diagnostics: { path: string; range: { start: { line: number } } }[];
    };
    expect(doc).toMatchObject({ format_version: '1.0', valid: false, error_count: 3 });
    expect(doc.diagnostics.map((d) => [d.path, d.range.start.line])).toEqual([
      ['networks[0].cidr', 3],
      ['vms[0].nics[0].network', 9],
      ['vms[0].colour', 7],
    ]);
  });
});

describe('fmt', () => {
  const messy =
    'networks:\n- tenant: vwflags   # ours\n  cidr: 10.91.0.0/24\nvms:\n-   name: vwflags-a\n    boot: {kernel: /boot/vmlinuz}\n    nics: [{network: vwflags}]\n';

  test('-check: exit 3 and the file named when it is not canonical, 0 when it is; nothing written', async () => {
    writeFileSync(spec, messy);
    const r = await cli('fmt', '-check', spec);
    expect([r.exitCode, r.stdout.trim()]).toEqual([3, spec]);
    expect(readFileSync(spec, 'utf8')).toBe(messy);
    writeFileSync(spec, GOOD);
    expect(await cli('fmt', '-check', spec)).toMatchObject({ exitCode: 0, stdout: '' });
  });

  test('fmt writes the canonical form, keeps comments, and a second run changes nothing', async () => {
    writeFileSync(spec, messy);
    const diff = await cli('fmt', '-check', '-diff', spec);
    expect(diff.exitCode).toBe(3);
    expect(diff.stdout).toContain('-- tenant: vwflags   # ours\n');
    expect(diff.stdout).toContain('+  - tenant: vwflags # ours\n');
    expect((await cli('fmt', spec)).exitCode).toBe(0);
    const once = readFileSync(spec, 'utf8');
    expect(once).toContain('# ours');
    expect(once).toContain('  - name: vwflags-a\n');
    expect((await cli('validate', '-f', spec)).exitCode).toBe(0);
    expect(await cli('fmt', '-check', spec)).toMatchObject({ exitCode: 0, stdout: '' });
    expect(readFileSync(spec, 'utf8')).toBe(once);
  });

  test('a syntax error: exit 1 with its line, and no file is written', async () => {
    const other = join(dir, 'other.yaml');
    writeFileSync(other, messy);
    writeFileSync(spec, 'vms: [\n');
    const r = await cli('fmt', other, spec);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/spec\.yaml:2: \(syntax\)/);
    expect(readFileSync(other, 'utf8')).toBe(messy);
  });
});
