// The one table format every benchmark prints: ours against a baseline measured in the same run.
export interface Row {
  what: string;
  unit: string;
  ours: number;
  baseline: number;
  baselineName: string;
  /** times (seconds) rather than rates: the speed-up is baseline / ours */
  lowerIsBetter?: boolean;
}

const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n >= 1 ? n.toFixed(1) : n.toFixed(3));

export function printTable(title: string, rows: Row[]): void {
  const lines = [
    ['measure', 'virtwire', 'baseline', 'speed-up', 'baseline is'],
    ...rows.map((r) => [
      `${r.what} (${r.unit})`,
      fmt(r.ours),
      fmt(r.baseline),
      `${(r.lowerIsBetter ? r.baseline / r.ours : r.ours / r.baseline).toFixed(1)}x`,
      r.baselineName,
    ]),
  ];
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  console.log(`\n${title}\n`);
  lines.forEach((l, i) => {
    console.log('| ' + l.map((c, j) => c.padEnd(widths[j]!)).join(' | ') + ' |');
    if (i === 0) console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  });
}

/** Runs `fn` `n` times and returns operations per second. */
export async function rate(n: number, fn: (i: number) => unknown): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  return n / ((performance.now() - t0) / 1000);
}

/** The middle value (the upper one of an even count): what every bench's "median" row reports. */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
