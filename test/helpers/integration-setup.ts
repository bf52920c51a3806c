// Integration tests drive real daemons and guests; on this machine libvirtd alone takes 4-8 s
// for some calls (it probes QEMU), and guests boot under TCG.
import { jest } from '@jest/globals';
import { TEST_RANGES, assertRangesFree } from './ranges.js';

jest.setTimeout(180_000);

// A host whose own routes, addresses, resolver or registries sit in a range the tests use would
// lose them while a test runs (and the test would prove nothing): every file fails up front,
// naming the range and what holds it, instead.
beforeAll(() => assertRangesFree(TEST_RANGES));
