// Benchmark: starting host commands. virtwire starts them with glibc's posix_spawnp (no copy of
// the parent's page tables, lib/host/spawn.ts); the baseline is execa, which forks through
// Node's child_process — what virtwire did before. The same command both ways, alternating, in
// one run: from this process as it is, then grown to the size of a process running createVm
// (~200 MB resident), one command at a time and four at once (as the host plane's reads go).
// No root needed; runs `ip -j link show lo`.
import { runToEnd } from '../../lib/host/spawn.js';
import { median, printTable, type Row } from './table.js';

const ARGV = ['ip', '-j', 'link', 'show', 'lo'];

async function once(method: 'posix_spawn' | 'fork', parallel: number): Promise<number> {
  const t0 = performance.now();
  const rs = await Promise.all(Array.from({ length: parallel }, () => runToEnd(ARGV, {}, method)));
  if (rs.some((r) => r.exitCode !== 0 || !r.stdout.includes('"ifname":"lo"')))
    throw new Error(`${ARGV.join(' ')} failed: ${JSON.stringify(rs[0])}`);
  return performance.now() - t0;
}

async function measure(parallel: number, n: number): Promise<{ ours: number; baseline: number }> {
  const ours: number[] = [];
  const baseline: number[] = [];
  for (let i = 0; i < n; i++) {
    ours.push(await once('posix_spawn', parallel));
    baseline.push(await once('fork', parallel));
  }
  return { ours: median(ours), baseline: median(baseline) };
}

const rssMB = () => Math.round(process.memoryUsage().rss / 2 ** 20);

async function rows(label: string): Promise<Row[]> {
  const one = await measure(1, 40);
  const four = await measure(4, 20);
  const baselineName = 'execa (child_process: fork + exec), the same command, alternating';
  return [
    { what: `one command, ${label}, median`, unit: 'ms', ...one, baselineName, lowerIsBetter: true },
    { what: `four at once, ${label}, median`, unit: 'ms', ...four, baselineName: 'the same', lowerIsBetter: true },
  ];
}

async function main(): Promise<void> {
  await once('posix_spawn', 1); // load libc and warm both ways
  await once('fork', 1);
  const small = await rows(`from a ${rssMB()} MB process`);
  const ballast: Buffer[] = [];
  while (rssMB() < 200) ballast.push(Buffer.alloc(8 << 20, 1)); // touched: resident
  const large = await rows(`from a ${rssMB()} MB process`);
  printTable(`starting a host command (${ARGV.join(' ')}), until it has ended and its output is read`, [
    ...small,
    ...large,
  ]);
  ballast.length = 0;
}

await main();
