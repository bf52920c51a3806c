// A guest's serial console as a Node Duplex: bytes the guest writes arrive as 'data', bytes
// written to it go to the guest. Underneath, a non-blocking libvirt stream opened with
// virDomainOpenConsole and driven by the binding's event-loop thread (event-worker.js).
import { Duplex } from 'node:stream';
import { VirtwireError } from '../errors/virtwire-error.js';
import { toLibvirtError } from './native.js';
import { eventLoop } from './event-loop.js';

export class ConsoleStream extends Duplex {
  private key: number | undefined;

  /** `owner` is kept referenced while the stream is open (its handle must not be freed under it). */
  private constructor(readonly owner: unknown) {
    super();
  }

  static async open(conn: bigint, dom: bigint, dev: string | undefined, owner: unknown): Promise<ConsoleStream> {
    const stream = new ConsoleStream(owner);
    stream.key = await eventLoop.openConsole(conn, dom, dev, {
      data: (chunk) => stream.push(chunk),
      closed: (error) => {
        stream.key = undefined;
        if (error) stream.destroy(toLibvirtError(error));
        else stream.push(null);
      },
    });
    return stream;
  }

  override _read(): void {
    // bytes are pushed as the loop thread receives them
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.key === undefined) return done(new VirtwireError('CLOSED', 'the console is closed'));
    eventLoop.writeConsole(this.key, chunk);
    done();
  }

  override _final(done: (error?: Error | null) => void): void {
    this.close().then(() => done(), done);
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.close().then(() => done(error), done);
  }

  private async close(): Promise<void> {
    const key = this.key;
    this.key = undefined;
    if (key !== undefined) await eventLoop.closeConsole(key);
  }
}
