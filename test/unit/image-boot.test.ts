// What a disk image's GRUB config boots, read as GRUB would (its default first entry), and the
// configs the direct boot refuses (falling back to the firmware, with the reason).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageBootOf, parseGrubConfig, statSize } from '../../lib/engine/kernel/image-boot.js';
import { RecordingRunner } from '../helpers/recording-runner.js';

const DEBIAN = `if [ "\${next_entry}" ] ; then
   set default="\${next_entry}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="0"
fi
if [ x"\${feature_menuentry_id}" = xy ]; then
  menuentry_id_option="--id"
fi
### BEGIN /etc/grub.d/10_linux ###
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-5b9b' {
	load_video
	insmod ext2
	search --no-floppy --fs-uuid --set=root 5b9bbf33-2830-44af-8d12-ab484f341cbe
	echo	'Loading Linux 6.1.0-57-amd64 ...'
	linux	/boot/vmlinuz-6.1.0-57-amd64 root=UUID=5b9bbf33-2830-44af-8d12-ab484f341cbe ro console=tty0 console=ttyS0,115200n8 consoleblank=0 
	echo	'Loading initial ramdisk ...'
	initrd	/boot/initrd.img-6.1.0-57-amd64
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-5b9b' {
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-56-amd64' {
		linux	/boot/vmlinuz-6.1.0-56-amd64 root=UUID=5b9b ro single
	}
}
`;

describe("a disk image's GRUB config", () => {
  test("the default first entry: its kernel, its arguments as given (GRUB's variables dropped), its initrd", () => {
    expect(parseGrubConfig(DEBIAN)).toEqual({
      kernel: '/boot/vmlinuz-6.1.0-57-amd64',
      args: 'root=UUID=5b9bbf33-2830-44af-8d12-ab484f341cbe ro console=tty0 console=ttyS0,115200n8 consoleblank=0',
      initrd: '/boot/initrd.img-6.1.0-57-amd64',
    });
    const ubuntu = DEBIAN.replace('consoleblank=0 ', 'quiet splash $vt_handoff').replace('\tlinux\t', '\tlinux\t');
    expect(parseGrubConfig(ubuntu)).toMatchObject({ args: expect.stringMatching(/quiet splash$/) });
  });

  test('what GRUB would not boot first, or what cannot be booted the same way, is refused with why', () => {
    // a one-time entry waiting in grubenv (grub-reboot), or another default
    expect(parseGrubConfig(DEBIAN, '# GRUB Environment Block\nnext_entry=1>2\n')).toEqual({
      reason: 'its GRUB environment boots entry "1>2" once (grub-reboot)',
    });
    expect(parseGrubConfig(DEBIAN, '# GRUB Environment Block\nnext_entry=\n#####')).toMatchObject({
      initrd: expect.any(String),
    });
    expect(parseGrubConfig(DEBIAN.replace('set default="0"', 'set default="${saved_entry}"'))).toEqual({
      reason: expect.stringMatching(/boots entry "\$\{saved_entry\}" by default, not the first/),
    });
    expect(parseGrubConfig('set timeout=5\n')).toEqual({ reason: 'its GRUB config has no menuentry' });
    expect(
      parseGrubConfig(DEBIAN.replace('initrd.img-6.1.0-57-amd64', 'intel-ucode.img /boot/initrd.img-6.1.0-57-amd64')),
    ).toEqual({ reason: expect.stringMatching(/loads 2 initrds/) });
    expect(parseGrubConfig(DEBIAN.replace(/\tlinux\t.*\n/, ''))).toEqual({
      reason: "its GRUB config's first entry has no linux line",
    });
  });
});

describe("reading a disk image's boot files on a host that cannot", () => {
  test('no FUSE export (the daemon fails): the firmware boots it, the reason says so, and nothing is remembered', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vwib-'));
    try {
      const image = join(dir, 'disk.qcow2');
      writeFileSync(image, 'not really a disk');
      const runner = new RecordingRunner([
        { match: (a) => a[0] === 'qemu-img', stdout: '{"format":"qcow2"}' },
        { match: (a) => a[0] === 'qemu-storage-daemon', stdout: '', exitCode: 1 },
      ]);
      const first = await imageBootOf(runner, join(dir, 'state'), image);
      expect(first).toEqual({ reason: expect.stringMatching(/^its disk could not be read here \(/) });
      await imageBootOf(runner, join(dir, 'state'), image);
      expect(runner.calls.filter((c) => c.argv[0] === 'qemu-storage-daemon')).toHaveLength(2);
      // the export is asked for read-only, in JSON (a path with a comma needs no escaping)
      const argv = runner.calls.find((c) => c.argv[0] === 'qemu-storage-daemon')!.argv;
      expect(JSON.parse(argv[2]!)).toMatchObject({ 'read-only': true, file: { driver: 'file', filename: image } });
      expect(JSON.parse(argv[4]!)).toMatchObject({ type: 'fuse', writable: false });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a boot file's size, as debugfs's stat gives it (a guest's own disk may name a huge one)", () => {
  test('read from the stat text; none when the file is not there', () => {
    const stat = `Inode: 22662   Type: regular    Mode:  0600   Flags: 0x80000
Generation: 282459718    Version: 0x00000000:00000003
User:     0   Group:     0   Project:     0   Size: 38123456
File ACL: 0`;
    expect(statSize(stat)).toBe(38123456);
    expect(statSize('/boot/vmlinuz: File not found by ext2_lookup')).toBeUndefined();
  });
});
