// A VM's serial console as a Duplex: libvirt's console stream on the VM's host, the connection
// kept open for as long as the stream is, and closed with it.
import type { Duplex } from 'node:stream';
import type { VmOptions } from '../../../types/vm.js';
import type { EngineDeps } from '../deps.js';
import { locate } from './locate.js';
import { VirtwireError } from '../../errors/index.js';

export async function openConsole(deps: EngineDeps, name: string, options: VmOptions = {}): Promise<Duplex> {
  const at = await locate(deps, name, options);
  const hv = await deps.connect(at.host.uri);
  try {
    const dom = await hv.lookupDomain(name);
    if (!dom) throw new VirtwireError('NOT_FOUND', `VM ${name} has no domain`);
    const stream = await dom.openConsole();
    stream.once('close', () => {
      dom.free();
      // nobody awaits this close (Libvirt.shutdown does, if it comes first); a connection that
      // fails to close after its stream ended leaves nothing to undo
      hv.close().catch(() => undefined);
    });
    return stream;
  } catch (e) {
    await hv.close();
    throw e;
  }
}
