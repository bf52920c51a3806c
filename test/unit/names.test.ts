import {
  bridgeName,
  tapName,
  vlanDeviceName,
  vxlanDeviceName,
  ifbName,
  stableUuid,
  deriveMac,
  parseMac,
} from '../../lib/spec/index.js';

describe('device names', () => {
  test('fit IFNAMSIZ, are deterministic and distinct', () => {
    const longest = 'a'.repeat(31);
    const names = [
      bridgeName(longest),
      tapName(longest, 15),
      vxlanDeviceName(longest, 16777215),
      ifbName(tapName(longest, 0)),
      vlanDeviceName('enp0s31f6abcdef', 4094),
    ];
    for (const n of names) expect(n.length).toBeLessThanOrEqual(15);
    expect(tapName('web', 0)).toBe(tapName('web', 0));
    expect(tapName('web', 0)).not.toBe(tapName('web', 1));
    // same readable prefix, different identity: the hash keeps them apart
    expect(bridgeName('customer-alpha')).not.toBe(bridgeName('customer-alpine'));
  });

  test('a thousand taps get a thousand names', () => {
    const set = new Set<string>();
    for (let vm = 0; vm < 100; vm++) for (let i = 0; i < 10; i++) set.add(tapName(`tenant-vm-${vm}`, i));
    expect(set.size).toBe(1000);
  });

  test('VLAN devices keep the eth0.<vid> convention while it fits', () => {
    expect(vlanDeviceName('eth0', 10)).toBe('eth0.10');
    expect(vlanDeviceName('enp0s31f6abcdef', 10)).toMatch(/^vwv/);
  });

  test('stable UUID and MAC from the name', () => {
    expect(stableUuid('web')).toBe(stableUuid('web'));
    expect(stableUuid('web')).not.toBe(stableUuid('web2'));
    expect(deriveMac('web\u00000')).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    expect(parseMac('52:54:00:AB:cd:EF')).toEqual({ mac: '52:54:00:ab:cd:ef' });
    expect(parseMac('33:33:00:00:00:01')).toHaveProperty('error');
  });
});
