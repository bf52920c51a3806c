// Integration tests drive real daemons and guests; on this machine libvirtd alone takes 4-8 s
// for some calls (it probes QEMU), and guests boot under TCG.
import { jest } from '@jest/globals';

jest.setTimeout(180_000);
