// Packet captures for isolation tests: an attack is proven sent (captured where it leaves the
// attacker) before it is asserted not delivered (not captured where the target would get it).
// A "not delivered" check waits on a barrier, not a sleep: a legitimate packet sent after the
// attack along the same path, captured at the target — had the attack got through, it would have
// arrived first.
import { execa, type ResultPromise } from 'execa';
import { waitFor } from './wait.js';

export class Capture {
  readonly lines: string[] = [];
  private constructor(
    private readonly proc: ResultPromise,
    readonly label: string,
  ) {}

  /**
   * tcpdump on `dev` in namespace `netns` ('': the machine's own; `-Q in`: what the device
   * received, i.e. what its far end sent; `out`: what it sent on), one line per packet with
   * link-level headers; resolves once it listens.
   */
  static async start(netns: string, dev: string, direction: 'in' | 'out', filter: string): Promise<Capture> {
    const tcpdump = ['tcpdump', '-i', dev, '-Q', direction, '-n', '-e', '-l', '-U', filter];
    const argv = netns ? ['ip', 'netns', 'exec', netns, ...tcpdump] : tcpdump;
    const proc = execa(argv[0]!, argv.slice(1), { reject: false, buffer: false });
    const c = new Capture(proc, `${netns}/${dev} ${direction}: ${filter}`);
    proc.stdout!.on('data', (d: Buffer) => c.lines.push(...d.toString().split('\n').filter(Boolean)));
    let said = '';
    proc.stderr!.on('data', (d: Buffer) => (said += d.toString()));
    await waitFor(`tcpdump (${c.label}) to listen`, 10_000, () => {
      if (proc.exitCode !== null) throw new Error(`tcpdump (${c.label}) exited: ${said}`);
      return said.includes('listening on');
    });
    return c;
  }

  count(match: RegExp = /./): number {
    return this.lines.filter((l) => match.test(l)).length;
  }

  /** Resolves once `match` has been captured `n` times. */
  async saw(what: string, match: RegExp = /./, n = 1, timeoutMs = 10_000): Promise<void> {
    await waitFor(`${what} (${this.label}); captured: ${this.lines.slice(-5).join(' | ')}`, timeoutMs, () => {
      return this.count(match) >= n;
    });
  }

  async stop(): Promise<void> {
    this.proc.kill('SIGTERM');
    await this.proc;
  }
}
