// Decompressing what a direct boot loads — a bzImage's payload, an initrd's archive — on the
// host, natively and once, instead of in the guest under TCG on every boot. gzip with Node's
// zlib; xz, zstd and lz4 with their Debian tools (xz-utils, zstd, lz4): both npm xz decoders
// tried (@napi-rs/lzma, xz-decompress) refuse the x86 BCJ filter the kernel's xz stream uses.
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { CommandRunner } from '../../host/index.js';
import type { PayloadFormat } from './bzimage.js';

/**
 * What may follow the compressed data: 'ignore' (a kernel payload: one stream, cut to its
 * length) or 'zeros' (an initrd: only padding may follow — any other data would be archives the
 * guest's kernel unpacks too, which a decompressor reading one stream would drop unseen).
 */
export type Trailing = 'ignore' | 'zeros';

const TOOLS: Partial<Record<PayloadFormat, (file: string, trailing: Trailing) => string[]>> = {
  // without --single-stream, xz reads every stream and its padding and fails on anything else
  xz: (f, t) => ['xz', '-dc', ...(t === 'ignore' ? ['--single-stream'] : []), '--', f],
  // zstd reads every frame and fails on anything else
  zstd: (f) => ['zstd', '-dcq', '--', f],
  lz4: (f) => ['lz4', '-dcq', f],
};

/** The formats unpackTo reads with `trailing` (lz4's tool cannot tell us what it left unread). */
export function unpacks(format: PayloadFormat, trailing: Trailing): boolean {
  if (format === 'gzip') return true;
  return TOOLS[format] !== undefined && (trailing === 'ignore' || format !== 'lz4');
}

/**
 * Writes `data` decompressed to `out`; false when it is in a format we do not read, the tool is
 * missing, the stream is damaged, or (with 'zeros') something other than padding follows it.
 * `dir` holds the tool's input for the moment it runs.
 */
export async function unpackTo(
  runner: CommandRunner,
  dir: string,
  format: PayloadFormat,
  data: Buffer,
  out: string,
  trailing: Trailing,
  step: string,
): Promise<boolean> {
  if (!unpacks(format, trailing)) return false;
  if (format === 'gzip') {
    try {
      // every member; engine.bytesWritten is how much of the input that took
      const { buffer, engine } = gunzipSync(data, { info: true }) as unknown as {
        buffer: Buffer;
        engine: { bytesWritten: number };
      };
      if (trailing === 'zeros' && data.subarray(engine.bytesWritten).some((b) => b !== 0)) return false;
      writeFileSync(out, buffer);
      return true;
    } catch {
      return false;
    }
  }
  const input = join(dir, `.unpack.${process.pid}.${randomBytes(4).toString('hex')}`);
  try {
    writeFileSync(input, data, { mode: 0o600 });
    const r = await runner
      .run(TOOLS[format]!(input, trailing), { stdoutFile: out, allowFailure: true, step: `${step}: ${format} -d` })
      .catch(() => undefined);
    return r?.exitCode === 0;
  } finally {
    rmSync(input, { force: true });
  }
}
