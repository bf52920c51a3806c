import { validateVm, validateNetwork } from '../../lib/spec/index.js';
import { SpecError } from '../../lib/errors/index.js';
import { isVirtwireError } from '../../lib/errors/index.js';

const net = { tenant: 'acme', cidr: '10.10.0.0/24' };
const good = { name: 'web-1', boot: { kernel: '/boot/vmlinuz' }, nics: [{ network: net }] };

function problemsOf(spec: unknown): Record<string, string> {
  try {
    validateVm(spec);
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    expect(isVirtwireError(e, 'SPEC_INVALID')).toBe(true);
    return Object.fromEntries((e as SpecError).problems.map((p) => [p.path, p.message]));
  }
  throw new Error('expected a SpecError');
}

describe('VM spec validation', () => {
  test('a minimal spec resolves with defaults', () => {
    const vm = validateVm(good);
    expect(vm).toMatchObject({ name: 'web-1', vcpus: 1, memoryMiB: 256, accel: 'auto' });
    expect(vm.nics[0]!.network).toMatchObject({
      gateway: '10.10.0.1',
      dhcpRange: ['10.10.0.2', '10.10.0.254'],
      nat: true,
      netmask: '255.255.255.0',
    });
    expect(vm.nics[0]!.mac).toMatch(/^52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/);
    expect(vm.nics[0]!.tap.length).toBeLessThanOrEqual(15);
    expect(vm.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  test('every problem is reported at once, each with its path', () => {
    const problems = problemsOf({
      name: 'Web_1',
      vcpus: 0,
      memoryMiB: 32,
      accel: 'xen',
      boot: { kernel: 'relative/vmlinuz', cmdline: 'console=ttyS0\ninit=/evil' },
      serialLog: '/var/log/a\u0000b',
      extra: 1,
      nics: [
        { network: { tenant: 'acme', cidr: '10.10.0.0/33' } },
        {
          network: { tenant: 'b', cidr: '10.20.0.0/24', segment: { type: 'vlan', id: 4095, uplink: 'eth0/x' } },
          mac: '01:00:5e:00:00:01',
        },
        {
          network: {
            tenant: 'c',
            cidr: '10.30.0.0/24',
            segment: { type: 'vxlan', vni: 16777216, uplink: 'a-very-long-interface-name' },
          },
          qos: { egressKbps: 0, ingressKbps: -5, packetsPerSecond: 50 },
        },
      ],
    });
    expect(Object.keys(problems).sort()).toEqual(
      [
        'boot.cmdline',
        'extra',
        'memoryMiB',
        'name',
        'accel',
        'boot.kernel',
        'serialLog',
        'vcpus',
        'nics[0].network.cidr',
        'nics[1].mac',
        'nics[1].network.segment.id',
        'nics[1].network.segment.uplink',
        'nics[2].network.segment.uplink',
        'nics[2].network.segment.vni',
        'nics[2].qos.egressKbps',
        'nics[2].qos.ingressKbps',
        'nics[2].qos.packetsPerSecond',
      ].sort(),
    );
    expect(problems['nics[0].network.cidr']).toMatch(/not an IPv4 CIDR/);
    expect(problems['nics[1].mac']).toMatch(/multicast/);
    expect(problems['nics[1].network.segment.id']).toMatch(/1\.\.4094/);
    expect(problems['nics[2].network.segment.vni']).toMatch(/1\.\.16777215/);
    expect(problems['nics[2].network.segment.uplink']).toMatch(/15 bytes/);
    expect(problems['boot.cmdline']).toMatch(/control character/);
    expect(problems['boot.kernel']).toMatch(/absolute/);
    expect(problems['nics[2].qos.packetsPerSecond']).toMatch(/100\.\.1000000/);
  });

  test("a NIC's address outside its subnet is reported even when the network has other problems", () => {
    const problems = problemsOf({
      ...good,
      nics: [
        {
          network: { tenant: 'Bad_Tenant', cidr: '10.10.0.0/24', segment: { type: 'vlan', uplink: 'eth0', id: 0 } },
          ip: '10.99.0.5',
        },
        { network: { tenant: 'ops', cidr: '10.20.0.0/24', nat: 'yes' }, ip: '10.20.0.1' },
      ],
    });
    expect(problems).toEqual({
      'nics[0].network.tenant': expect.stringMatching(/must match/),
      'nics[0].network.segment.id': expect.stringMatching(/out of range/),
      'nics[0].ip': '10.99.0.5 is outside 10.10.0.0/24',
      'nics[1].network.nat': 'must be true or false',
      'nics[1].ip': '10.20.0.1 is the gateway of 10.20.0.0/24',
    });
  });

  test('the SpecError message lists every path', () => {
    try {
      validateVm({ name: '1bad', boot: {}, nics: [] });
      throw new Error('no error');
    } catch (e) {
      const msg = (e as Error).message;
      expect(msg).toContain('name:');
      expect(msg).toContain('boot:');
      expect(msg).toContain('nics:');
      expect(msg).toMatch(/3 problems/);
    }
  });

  test.each([
    ['network address', '10.10.0.0', /network or broadcast/],
    ['broadcast', '10.10.0.255', /network or broadcast/],
    ['gateway', '10.10.0.1', /gateway/],
    ['outside the subnet', '10.11.0.5', /outside 10\.10\.0\.0\/24/],
    ['not an address', '10.10.0.256', /not an IPv4/],
    ['leading zero', '10.10.0.05', /not an IPv4/],
  ])('ip rejected: %s', (_what, ip, message) => {
    expect(problemsOf({ ...good, nics: [{ network: net, ip }] })['nics[0].ip']).toMatch(message);
  });

  test('duplicate MAC and IP across NICs', () => {
    const problems = problemsOf({
      ...good,
      nics: [
        { network: net, mac: '52:54:00:aa:bb:cc', ip: '10.10.0.10' },
        { network: net, mac: '52:54:00:AA:BB:CC', ip: '10.10.0.10' },
      ],
    });
    expect(problems['nics[1].mac']).toMatch(/already used by nics\[0\]/);
    expect(problems['nics[1].ip']).toMatch(/already used by nics\[0\]/);
  });

  test('one tenant cannot be two different networks in one VM', () => {
    const problems = problemsOf({
      ...good,
      nics: [{ network: net }, { network: { tenant: 'acme', cidr: '10.99.0.0/24' } }],
    });
    expect(problems['nics[1].network']).toMatch(/defined differently at nics\[0\]\.network/);
  });

  test.each([
    ['newline', 'a\nb'],
    ['angle bracket', '</cmdline><evil/>'],
    ['double quote', 'x"y'],
    ['single quote', "x'y"],
  ])('strings that could inject into XML or config are refused: %s', (_what, value) => {
    expect(problemsOf({ ...good, boot: { kernel: '/k', cmdline: value } })['boot.cmdline']).toMatch(
      /control character, quote or angle bracket/,
    );
    expect(problemsOf({ ...good, serialLog: `/var/log/${value}` })['serialLog']).toBeDefined();
  });

  test('cloud-init meta-data values are checked; user-data may be multi-line', () => {
    const problems = problemsOf({
      ...good,
      cloudInit: { userData: '#cloud-config\nruncmd: []\n', metaData: { 'local-hostname': 'a\nb', 'bad key': 'x' } },
    });
    expect(Object.keys(problems).sort()).toEqual(['cloudInit.metaData.bad key', 'cloudInit.metaData.local-hostname']);
  });

  test('boot needs exactly one of kernel or image', () => {
    expect(problemsOf({ ...good, boot: { kernel: '/k', image: '/i' } })['boot']).toMatch(/not both/);
    expect(problemsOf({ ...good, boot: { image: '/i', sizeGiB: 0 } })['boot.sizeGiB']).toMatch(/range/);
  });

  test('input that is not even an object is a SpecError, not a TypeError', () => {
    expect(problemsOf(null)).toEqual({ '(root)': 'must be an object' });
    expect(problemsOf({ ...good, nics: [42] })['nics[0]']).toMatch(/object/);
  });
});

describe('network spec validation', () => {
  test('defaults: gateway first host, range the rest', () => {
    expect(validateNetwork({ tenant: 'a', cidr: '192.168.50.0/29' })).toMatchObject({
      gateway: '192.168.50.1',
      dhcpRange: ['192.168.50.2', '192.168.50.6'],
      broadcast: '192.168.50.7',
      bridge: expect.stringMatching(/^vwba-[0-9a-f]{6}$/),
    });
  });

  test('a gateway at the top of the subnet puts the default range below it', () => {
    expect(validateNetwork({ tenant: 'a', cidr: '10.0.0.0/24', gateway: '10.0.0.254' }).dhcpRange).toEqual([
      '10.0.0.1',
      '10.0.0.253',
    ]);
  });

  test('host bits, reversed range, gateway inside the range, bad group', () => {
    const p = (spec: unknown) => {
      try {
        validateNetwork(spec);
      } catch (e) {
        return Object.fromEntries((e as SpecError).problems.map((x) => [x.path, x.message]));
      }
      return {};
    };
    expect(p({ tenant: 'a', cidr: '10.0.0.5/24' })['cidr']).toMatch(/did you mean 10\.0\.0\.0\/24/);
    expect(p({ tenant: 'a', cidr: '10.0.0.0/24', dhcpRange: ['10.0.0.100', '10.0.0.50'] })['dhcpRange']).toMatch(
      /after/,
    );
    expect(p({ tenant: 'a', cidr: '10.0.0.0/24', dhcpRange: ['10.0.0.1', '10.0.0.50'] })['dhcpRange']).toMatch(
      /gateway/,
    );
    expect(
      p({ tenant: 'a', cidr: '10.0.0.0/24', segment: { type: 'vxlan', vni: 5000, uplink: 'eth0', group: '10.0.0.1' } })[
        'segment.group'
      ],
    ).toMatch(/multicast/);
    expect(p({ tenant: 'a', cidr: '10.0.0.0/24', segment: { type: 'gre' } })['segment.type']).toMatch(
      /none, vlan, vxlan/,
    );
    expect(p({ tenant: 'a', cidr: '10.0.0.0/24', uplink: 'eth 0' })['uplink']).toMatch(/not a valid interface name/);
  });
});
