import { readFileSync } from 'node:fs';
import { parseDomainXml, domainToXml, effectiveAccel, unmodelledDevices } from '../../lib/xml/index.js';
import { renderDomainXml } from '../../lib/engine/index.js';
import { SpecError } from '../../lib/errors/index.js';

const fixture = readFileSync(new URL('../fixtures/qemu-dumpxml.xml', import.meta.url), 'utf8');
const spec = {
  name: 'web-1',
  boot: { kernel: '/boot/vmlinuz', initrd: '/boot/initrd.img', cmdline: 'console=ttyS0 quiet' },
  nics: [
    { network: { tenant: 'acme', cidr: '10.10.0.0/24' } },
    { network: { tenant: 'globex', cidr: '10.20.0.0/24' } },
  ],
};

describe('renderDomainXml', () => {
  test('is deterministic', () => {
    expect(renderDomainXml(spec)).toBe(renderDomainXml(structuredClone(spec)));
  });

  test('accel decides domain type and cpu mode', () => {
    const tcg = parseDomainXml(renderDomainXml(spec));
    expect(tcg.type).toBe('qemu');
    expect(tcg.cpu).toMatchObject({ mode: 'custom', model: { value: 'qemu64' } });
    const kvm = parseDomainXml(renderDomainXml(spec, { kvmUsable: true }));
    expect(kvm.type).toBe('kvm');
    expect(kvm.cpu?.mode).toBe('host-passthrough');
    // forcing tcg wins over a usable kvm; forcing kvm wins over an unusable one
    expect(parseDomainXml(renderDomainXml({ ...spec, accel: 'tcg' }, { kvmUsable: true })).type).toBe('qemu');
    expect(effectiveAccel('kvm', false)).toBe('kvm');
  });

  test('one ethernet interface per NIC on a virtwire-owned tap, in order', () => {
    const model = parseDomainXml(renderDomainXml(spec));
    expect(model.devices.interfaces).toHaveLength(2);
    for (const nic of model.devices.interfaces) {
      expect(nic).toMatchObject({ type: 'ethernet', model: 'virtio', target: { managed: 'no' } });
      expect(nic.target!.dev.length).toBeLessThanOrEqual(15);
    }
    expect(model.devices.interfaces[0]!.target!.dev).not.toBe(model.devices.interfaces[1]!.target!.dev);
  });

  test('disk boot gets a qcow2 overlay under the state dir and a cdrom seed with cloud-init', () => {
    const model = parseDomainXml(
      renderDomainXml(
        { ...spec, boot: { image: '/img/base.qcow2' }, cloudInit: { userData: '#cloud-config\n' } },
        { stateDir: '/srv/vw' },
      ),
    );
    expect(model.os.boot).toEqual(['hd']);
    expect(model.os.kernel).toBeUndefined();
    expect(model.devices.disks).toEqual([
      expect.objectContaining({
        device: 'disk',
        driver: { name: 'qemu', type: 'qcow2' },
        source: { file: '/srv/vw/vms/web-1/disk.qcow2' },
      }),
      expect.objectContaining({ device: 'cdrom', readonly: true, source: { file: '/srv/vw/vms/web-1/seed.iso' } }),
    ]);
    // the serial port is a pty (openConsole) logged to the state dir
    expect(model.devices.serials[0]).toEqual({
      type: 'pty',
      log: { file: '/srv/vw/vms/web-1/serial.log', append: 'on' },
      target: { port: 0 },
    });
  });

  test('invalid specs never reach XML', () => {
    expect(() => renderDomainXml({ ...spec, boot: { kernel: '/k', cmdline: '</cmdline>' } })).toThrow(SpecError);
  });

  test('text is escaped by the builder, not spliced', () => {
    const xml = renderDomainXml({ ...spec, boot: { kernel: '/k', cmdline: 'a&b' } });
    expect(xml).toContain('<cmdline>a&amp;b</cmdline>');
    expect(parseDomainXml(xml).os.cmdline).toBe('a&b');
  });
});

describe('parseDomainXml', () => {
  test('render -> parse -> render is stable', () => {
    const xml = renderDomainXml({ ...spec, boot: { image: '/img/base.qcow2' }, cloudInit: { userData: 'x' } });
    expect(domainToXml(parseDomainXml(xml))).toBe(xml);
  });

  test('reads what virsh dumpxml prints (machine expanded, addresses, controllers, inputs)', () => {
    const model = parseDomainXml(fixture);
    expect(model).toMatchObject({
      type: 'qemu',
      name: 'fixture-vm',
      vcpu: 2,
      memoryKiB: 524288,
      metadata: { 'managed-by': 'virtwire' },
    });
    expect(model.os.type.machine).toBe('pc-i440fx-7.2');
    expect(model.devices.interfaces.map((i) => i.mac)).toEqual(['52:54:00:1f:92:1f', '52:54:00:12:34:56']);
    expect(model.devices.disks.map((d) => d.target.dev)).toEqual(['vda', 'hdc']);
    expect(model.devices.serials[0]!.target).toEqual({ type: 'isa-serial', port: 0 });
    // dumpxml -> parse -> render -> parse keeps the model
    expect(parseDomainXml(domainToXml(model))).toEqual(model);
  });

  test('what import cannot keep: every device outside the model, none that libvirt adds by itself', () => {
    // the boot disk is adopted; PS/2 inputs, the silent audio backend, controllers are libvirt's own
    expect(unmodelledDevices(fixture)).toEqual(['disk file cdrom hdc (/var/lib/virtwire/vms/fixture-vm/seed.iso)']);
    const more = fixture
      .replace("<audio id='1' type='none'/>", "<graphics type='vnc' port='-1'/><sound model='ich9'/>")
      .replace('<os>', "<os firmware='efi'>");
    expect(unmodelledDevices(more)).toEqual([
      'firmware efi (virtwire boots with SeaBIOS)',
      'disk file cdrom hdc (/var/lib/virtwire/vms/fixture-vm/seed.iso)',
      'graphics vnc',
      'sound ich9',
    ]);
  });

  test('units other than KiB are converted', () => {
    const xml = renderDomainXml(spec).replace('<memory unit="KiB">262144</memory>', '<memory unit="MiB">256</memory>');
    expect(parseDomainXml(xml).memoryKiB).toBe(262144);
  });

  test('bad documents are SpecErrors naming the problem', () => {
    expect(() => parseDomainXml('<domain')).toThrow(/not well-formed/);
    expect(() => parseDomainXml('<network/>')).toThrow(/not <domain>/);
    expect(() => parseDomainXml('<domain type="xen"><name>a</name></domain>')).toThrow(/not kvm or qemu/);
  });
});
