// `virtwire cache list|prune`: the host's cache of extracted kernels and uncompressed initrds
// (fast boot). They stay after their last VM (a create → destroy loop extracts once), bounded by createVm's
// `kernelCache.maxMiB`; these show it and empty it by hand.
import { listKernelCache, pruneKernelCache, type KernelCacheEntry } from '../../lib/index.js';
import type { Ctx } from './program.js';
import { FORMAT_VERSION } from './formats.js';

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function print(ctx: Ctx, entries: KernelCacheEntry[], json: boolean | undefined): void {
  if (json) {
    console.log(JSON.stringify({ format_version: FORMAT_VERSION, kernels: entries }, null, 2));
    return;
  }
  for (const k of entries)
    ctx.ui.out(
      `${k.kind.padEnd(6)} ${k.hash} ${mib(k.bytes)} last used ${k.lastUsed} ${k.usedBy.length ? `by ${k.usedBy.join(', ')}` : '(no VM)'}`,
    );
  const count = (kind: KernelCacheEntry['kind']) => {
    const n = entries.filter((k) => k.kind === kind).length;
    return `${n} ${kind}${n === 1 ? '' : 's'}`;
  };
  ctx.ui.out(`${count('kernel')}, ${count('initrd')}, ${mib(entries.reduce((n, k) => n + k.bytes, 0))}`);
}

export async function cacheList(ctx: Ctx, flags: { json?: boolean }): Promise<number> {
  print(ctx, await listKernelCache(ctx.where), flags.json);
  return 0;
}

export async function cachePrune(
  ctx: Ctx,
  flags: { json?: boolean; maxMib?: string; includeRecent?: boolean },
): Promise<number> {
  const maxMiB = flags.maxMib === undefined ? 0 : Number(flags.maxMib);
  if (!Number.isFinite(maxMiB) || maxMiB < 0) throw new Error(`--max-mib ${flags.maxMib}: a number of MiB, 0 or more`);
  const gone = await pruneKernelCache({
    ...ctx.where,
    maxMiB,
    ...(flags.includeRecent ? { includeRecent: true } : {}),
  });
  print(ctx, gone, flags.json);
  return 0;
}
