// Reading an x86 bzImage (the Linux boot protocol's setup header) for what QEMU can boot faster:
// the compressed payload inside it, and whether that payload — an ELF vmlinux — carries a PVH
// entry note, which QEMU boots directly (no real-mode setup, no self-decompression).

/** Compression of a bzImage payload, by its magic bytes (what the kernel's build can use). */
export type PayloadFormat = 'gzip' | 'xz' | 'zstd' | 'lz4' | 'lzma' | 'bzip2' | 'lzo';

export interface BzImagePayload {
  format: PayloadFormat;
  /** the compressed bytes (for xz, gzip, zstd, lz4 a single stream; the size trailer is cut) */
  data: Buffer;
}

const MAGICS: [PayloadFormat, number[]][] = [
  ['gzip', [0x1f, 0x8b]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['lz4', [0x02, 0x21, 0x4c, 0x18]],
  ['lzma', [0x5d, 0x00, 0x00]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['lzo', [0x89, 0x4c, 0x5a]],
];

/** The compression `data` starts with, by its magic bytes; undefined for none we know. */
export function compressionOf(data: Buffer): PayloadFormat | undefined {
  return MAGICS.find(([, m]) => m.every((b, i) => data[i] === b))?.[0];
}

/**
 * The compressed kernel inside a bzImage, or undefined when `image` is not one (an ELF, a raw
 * binary) or its boot protocol predates payload fields (2.08).
 */
export function bzImagePayload(image: Buffer): BzImagePayload | undefined {
  if (image.length < 0x250 || image.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
  if (image.readUInt16LE(0x206) < 0x208) return undefined;
  const setupSectors = image[0x1f1] || 4; // 0 means 4 (boot protocol)
  const offset = (setupSectors + 1) * 512 + image.readUInt32LE(0x248);
  const length = image.readUInt32LE(0x24c);
  if (length === 0 || offset + length > image.length) return undefined;
  const data = image.subarray(offset, offset + length);
  const format = compressionOf(data);
  // the build appends the decompressed size (4 bytes, little-endian) after the stream
  return format ? { format, data: data.subarray(0, length - 4) } : undefined;
}

/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit entry point QEMU's PVH boot jumps to. */
const PVH_NOTE = 18;

/** Reads `length` bytes at `offset` of an ELF (fewer at its end): a buffer's or a file's. */
export type ElfReader = (offset: number, length: number) => Buffer;

/** Whether `elf` is a 64-bit little-endian ELF with a PVH entry note ("Xen", type 18). */
export function hasPvhNote(elf: Buffer): boolean {
  return readsPvhNote((offset, length) => elf.subarray(offset, offset + length));
}

/**
 * The same, reading only the ELF header, the program headers and the note segments (a few KiB
 * of a 60 MiB vmlinux).
 */
export function readsPvhNote(read: ElfReader): boolean {
  const head = read(0, 64);
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return false;
  const phentsize = head.readUInt16LE(0x36);
  const table = read(Number(head.readBigUInt64LE(0x20)), phentsize * head.readUInt16LE(0x38));
  for (let ph = 0; ph + 56 <= table.length; ph += phentsize) {
    if (table.readUInt32LE(ph) !== 4) continue; // PT_NOTE
    const notes = read(Number(table.readBigUInt64LE(ph + 8)), Number(table.readBigUInt64LE(ph + 32)));
    for (let o = 0; o + 12 <= notes.length;) {
      const nameSize = notes.readUInt32LE(o);
      const descSize = notes.readUInt32LE(o + 4);
      const type = notes.readUInt32LE(o + 8);
      if (type === PVH_NOTE && notes.toString('latin1', o + 12, o + 12 + nameSize) === 'Xen\0') return true;
      o += 12 + align4(nameSize) + align4(descSize);
    }
  }
  return false;
}

const align4 = (n: number) => (n + 3) & ~3;
