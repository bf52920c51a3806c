// The parts of an initrd as the kernel reads them (init/initramfs.c): cpio archives in the
// "newc" format, each ending with a TRAILER!!! entry, uncompressed (an early microcode archive,
// say) or compressed, with zero bytes as padding between them.

import { compressionOf, type PayloadFormat } from './bzimage.js';

export interface InitrdLayout {
  /** the uncompressed archives at its start, as they are */
  archives: Buffer[];
  /** the compressed data after them, to its end (absent: the initrd is not compressed) */
  compressed?: { format: PayloadFormat; data: Buffer };
}

const HEADER = 110; // "070701" or "070702", then 13 fields of 8 hex digits
const TRAILER = 'TRAILER!!!';
const align4 = (n: number) => (n + 3) & ~3;

/** Whether a newc cpio header starts at `at`. */
const isCpio = (buf: Buffer, at: number) => {
  const magic = buf.toString('latin1', at, at + 6);
  return magic === '070701' || magic === '070702';
};

/**
 * Where the newc archive starting at `at` ends (after its trailer entry and that entry's
 * padding); undefined when it is cut short or a header is not one.
 */
function cpioEnd(buf: Buffer, at: number): number | undefined {
  let pos = at;
  for (;;) {
    if (pos + HEADER > buf.length || !isCpio(buf, pos)) return undefined;
    const field = (i: number) => Number.parseInt(buf.toString('latin1', pos + 6 + 8 * i, pos + 14 + 8 * i), 16);
    const fileSize = field(6);
    const nameSize = field(11);
    if (!Number.isFinite(fileSize) || !Number.isFinite(nameSize) || nameSize < 1) return undefined;
    const name = buf.toString('latin1', pos + HEADER, pos + HEADER + nameSize - 1);
    const dataEnd = align4(pos + HEADER + nameSize) + fileSize;
    if (dataEnd > buf.length) return undefined;
    if (name === TRAILER) return Math.min(align4(dataEnd), buf.length);
    pos = align4(dataEnd);
  }
}

/** Skips the zero bytes from `at`. */
function skipZeros(buf: Buffer, at: number): number {
  let pos = at;
  while (pos < buf.length && buf[pos] === 0) pos++;
  return pos;
}

/**
 * How `buf` is laid out: its uncompressed archives, then its compressed part; undefined when it
 * holds something else (a damaged archive, an unknown compression, an archive after the
 * compressed part we could not place).
 */
export function initrdLayout(buf: Buffer): InitrdLayout | undefined {
  const archives: Buffer[] = [];
  let pos = skipZeros(buf, 0);
  while (pos < buf.length) {
    if (isCpio(buf, pos)) {
      const end = cpioEnd(buf, pos);
      if (end === undefined) return undefined;
      archives.push(buf.subarray(pos, end));
      pos = skipZeros(buf, end);
      continue;
    }
    const format = compressionOf(buf.subarray(pos));
    return format ? { archives, compressed: { format, data: buf.subarray(pos) } } : undefined;
  }
  return archives.length ? { archives } : undefined;
}

/** Whether `buf` is whole uncompressed archives (and padding) only: what a decompressed part must be. */
export function isWholeCpio(buf: Buffer): boolean {
  let pos = skipZeros(buf, 0);
  if (pos >= buf.length) return false;
  while (pos < buf.length) {
    const end = cpioEnd(buf, pos);
    if (end === undefined) return false;
    pos = skipZeros(buf, end);
  }
  return true;
}
