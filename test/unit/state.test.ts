// The state backends' pure parts: what a record claims, state URLs (checked, passwords hidden),
// a spec file's `state:`, and the store chosen for a location.
import { claimsOf } from '../../lib/engine/state/claims.js';
import { openState } from '../../lib/engine/state/open.js';
import { DirStateStore } from '../../lib/engine/state/dir-store.js';
import { PgStateStore } from '../../lib/engine/state/pg-store.js';
import { allocate } from '../../lib/engine/allocate.js';
import { parseSpecText } from '../../lib/engine/spec-file.js';
import { Problems, checkStateUrl, redactUrl, redactUrls, validateVm } from '../../lib/spec/index.js';
import { SpecError } from '../../lib/errors/index.js';

const vm = (name: string, segment: object) =>
  allocate(
    validateVm({
      name,
      memoryMiB: 64,
      boot: { kernel: '/k' },
      nics: [{ network: { tenant: 'acme', cidr: '10.9.0.0/24', segment } }],
    }),
    [],
  );

describe('claims', () => {
  test("a VM's address, MAC and tap are its own; a tenant's VNI is the tenant's", () => {
    const v = vm('a', { type: 'vxlan', uplink: 'lo' });
    const claims = claimsOf({ vm: v, accel: 'tcg', createdAt: 'now' });
    expect(claims).toEqual([
      { kind: 'ip', key: 'acme/10.9.0.2', owner: 'a' },
      { kind: 'mac', key: v.nics[0]!.mac, owner: 'a' },
      { kind: 'tap', key: v.nics[0]!.tap, owner: 'a' },
      { kind: 'vni', key: '4096', owner: 'tenant:acme' },
    ]);
    // no segment: nothing the tenant shares is claimed
    expect(claimsOf({ vm: vm('b', { type: 'none' }), accel: 'tcg', createdAt: 'now' }).map((c) => c.kind)).toEqual([
      'ip',
      'mac',
      'tap',
    ]);
  });
});

describe('state URLs', () => {
  test('a PostgreSQL URL with a database passes; anything else is a problem naming the path', () => {
    const p = new Problems();
    expect(checkStateUrl(p, 'state', 'postgresql://u@h:5432/db')).toBe(true);
    expect(checkStateUrl(p, 'state', 'postgres://h/db')).toBe(true);
    expect(checkStateUrl(p, 'state', 'mysql://h/db')).toBe(false);
    expect(checkStateUrl(p, 'x', 'postgresql://u:secret@h:5432')).toBe(false);
    expect(p.list.map((q) => q.path)).toEqual(['state', 'x']);
    expect(p.list[1]!.message).toContain('names no database');
    expect(p.list[1]!.message).not.toContain('secret');
  });

  test('passwords are hidden in URLs and in command lines', () => {
    expect(redactUrl('postgresql://op:s3cret@db:5432/vw')).toBe('postgresql://op:***@db:5432/vw');
    expect(redactUrls('virtwire --state postgresql://op:s3cret@db/vw apply')).toBe(
      'virtwire --state postgresql://op:***@db/vw apply',
    );
  });

  test('a URL opens the database store (files still in the state dir); anything else the directory', () => {
    const pg = openState('/var/lib/x', 'postgresql://op:pw@db/vw');
    expect(pg).toBeInstanceOf(PgStateStore);
    expect([pg.dir, pg.where]).toEqual(['/var/lib/x', 'postgresql://op:***@db/vw']);
    expect(openState('/var/lib/x')).toBeInstanceOf(DirStateStore);
  });

  test("a spec file's state: is kept when valid, a problem with its line when not", () => {
    expect(parseSpecText('state: postgresql://h/vw\nnetworks: []\nvms: []\n').state).toBe('postgresql://h/vw');
    try {
      parseSpecText('state: /var/lib/virtwire\nvms: []\n', 't.yaml');
      throw new Error('accepted');
    } catch (e) {
      expect(e).toBeInstanceOf(SpecError);
      expect((e as SpecError).problems[0]).toMatchObject({ path: 'state', line: 1 });
    }
  });
});
