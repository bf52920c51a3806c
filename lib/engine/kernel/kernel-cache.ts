// The extracted-kernel cache (<state-dir>/kernels): content-addressed (`<hash>.vmlinux`, and an
// initrd's archives uncompressed as `<hash>.cpio`, initrd.ts), shared
// by every VM and process of a host, and kept after the last VM that boots a kernel is gone — a
// test suite's create → destroy loop extracts once. Bounded: after an extraction, the least
// recently used files go until the cache fits its bound, except a kernel a record names and one
// used in the last GRACE_MS (a create in another process may have chosen it and not yet recorded
// it). Each use touches the file's mtime: that is "last used". A kernel's hash is remembered by
// its path, size, mtime and inode (memo.json), so an unchanged kernel is not read again. A disk
// image's boot files (image-boot.ts) are kept beside them, in `<hash>.boot/`.
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

export const kernelCacheDir = (stateDir: string) => join(stateDir, 'kernels');

/** The default bound of a host's cache. */
const KERNEL_CACHE_MIB = 1024;

/** A kernel used this recently is never evicted. */
export const GRACE_MS = 10 * 60_000;

export interface CachedKernel {
  /** the extracted vmlinux, or an initrd's uncompressed archives */
  path: string;
  kind: 'kernel' | 'initrd';
  /** the content hash of the bzImage or initrd it was made from */
  hash: string;
  bytes: number;
  lastUsed: Date;
}

interface Memo {
  [kernel: string]: { size: number; mtimeMs: number; ino: number; hash: string };
}

const memoFile = (stateDir: string) => join(kernelCacheDir(stateDir), 'memo.json');

function readMemo(stateDir: string): Memo {
  try {
    return JSON.parse(readFileSync(memoFile(stateDir), 'utf8')) as Memo;
  } catch {
    return {}; // none yet, or half-written by a crash: a memo only saves work
  }
}

/**
 * The content hash of the kernel at `kernel`: from the memo while its path, size, mtime and inode
 * are unchanged, else read and hashed (and remembered). The image is read only then.
 */
export function kernelHash(stateDir: string, kernel: string): { hash: string; image?: Buffer } {
  const st = statSync(kernel);
  const memo = readMemo(stateDir);
  const seen = memo[kernel];
  if (seen && seen.size === st.size && seen.mtimeMs === st.mtimeMs && seen.ino === st.ino) return { hash: seen.hash };
  // a kernel is read whole (its extraction needs it); a disk image in chunks, and not kept
  const image = st.size <= WHOLE_MAX ? readFileSync(kernel) : undefined;
  const hash = (image ? createHash('sha256').update(image) : hashInChunks(kernel)).digest('hex').slice(0, 20);
  memo[kernel] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, hash };
  // written whole, then renamed: a reader sees the old memo or the new one
  const tmp = `${memoFile(stateDir)}.${process.pid}`;
  try {
    writeFileSync(tmp, JSON.stringify(memo));
    renameSync(tmp, memoFile(stateDir));
  } catch {
    rmSync(tmp, { force: true }); // no cache dir yet: the next extraction makes it
  }
  return { hash, image };
}

const WHOLE_MAX = 64 * 2 ** 20;

function hashInChunks(path: string) {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(4 * 2 ** 20);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h;
}

/** Marks a cached kernel as used now. */
function touch(path: string): void {
  const now = new Date();
  utimesSync(path, now, now);
}

/** The cache's kernels, least recently used first. */
export function listKernels(stateDir: string): CachedKernel[] {
  const dir = kernelCacheDir(stateDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => /^[0-9a-f]{20}\.(vmlinux|cpio)$/.test(n))
    .flatMap((n) => {
      try {
        const st = statSync(join(dir, n));
        const kind = n.endsWith('.cpio') ? ('initrd' as const) : ('kernel' as const);
        return [{ path: join(dir, n), kind, hash: n.slice(0, 20), bytes: st.size, lastUsed: st.mtime }];
      } catch {
        return []; // evicted by another process while listing
      }
    })
    .sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
}

/**
 * What to evict so the cache fits `maxBytes`: least recently used first, never a kernel in
 * `inUse` (a record names it) or used since `now - graceMs`. Pure: the caller removes them.
 */
export function toEvict(
  kernels: CachedKernel[],
  maxBytes: number,
  inUse: ReadonlySet<string>,
  now: number,
  graceMs = GRACE_MS,
): CachedKernel[] {
  let total = kernels.reduce((n, k) => n + k.bytes, 0);
  const out: CachedKernel[] = [];
  for (const k of kernels) {
    if (total <= maxBytes) break;
    if (inUse.has(k.path) || now - k.lastUsed.getTime() < graceMs) continue;
    out.push(k);
    total -= k.bytes;
  }
  return out;
}

/** Evicts down to `maxBytes` (see toEvict); `graceMs` 0 with `maxBytes` 0: every kernel no record names. */
export function pruneKernels(
  stateDir: string,
  maxBytes: number,
  inUse: Iterable<string | undefined>,
  graceMs = GRACE_MS,
): CachedKernel[] {
  const used = new Set([...inUse].filter((p): p is string => p !== undefined));
  const gone = toEvict(listKernels(stateDir), maxBytes, used, Date.now(), graceMs);
  for (const k of gone) rmSync(k.path, { force: true });
  return gone;
}

/** What the cache may hold, and what it must keep: the files the state's records boot. */
export interface KernelCacheUse {
  maxMiB?: number;
  inUse: () => Iterable<string | undefined>;
}

/** The cache's files a VM record boots (a record names them; they are never evicted). */
export const bootedFiles = (records: { kernel?: string | undefined; initrd?: string | undefined }[]) =>
  records.flatMap((r) => [r.kernel, r.initrd]);

/**
 * The cache's file `name`, made by `make` on first use; or why it cannot be, as `make` said and
 * as remembered in `marker` (so the source is not read again). `make` writes a temporary file,
 * renamed into place: another process sees all or nothing. Concurrent calls in this process
 * share one make (20 creates at once took 2.5 GiB of memory and 20 decompressors otherwise);
 * after a make, older files go until the cache fits its bound.
 */
export async function cacheFile(
  stateDir: string,
  name: string,
  marker: string,
  cache: KernelCacheUse,
  make: (tmp: string, dir: string) => Promise<string | undefined>,
): Promise<{ path: string } | { reason: string }> {
  const dir = kernelCacheDir(stateDir);
  const target = join(dir, name);
  if (existsSync(target)) {
    try {
      touch(target);
      return { path: target };
    } catch {
      // evicted since: made again below
    }
  }
  try {
    return { reason: readFileSync(join(dir, marker), 'utf8') };
  } catch {
    // not known to be unsuitable
  }
  let pending = making.get(target);
  if (!pending) {
    pending = makeFile(dir, name, marker, make)
      .then((made) => {
        // the new one was just used: it stays; older ones go down to the bound
        if ('path' in made) pruneKernels(stateDir, (cache.maxMiB ?? KERNEL_CACHE_MIB) * 2 ** 20, cache.inUse());
        return made;
      })
      .finally(() => making.delete(target));
    making.set(target, pending);
  }
  return pending;
}

const making = new Map<string, Promise<{ path: string } | { reason: string }>>();

async function makeFile(
  dir: string,
  name: string,
  marker: string,
  make: (tmp: string, dir: string) => Promise<string | undefined>,
): Promise<{ path: string } | { reason: string }> {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}`);
  try {
    const reason = await make(tmp, dir);
    if (reason !== undefined) {
      writeFileSync(join(dir, marker), reason);
      return { reason };
    }
    chmodSync(tmp, 0o644); // QEMU's user reads it (the umask may have taken bits)
    renameSync(tmp, join(dir, name));
    return { path: join(dir, name) };
  } finally {
    rmSync(tmp, { force: true });
  }
}
