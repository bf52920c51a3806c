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

/** An IPv4 address as a pattern in tcpdump's lines. */
export const esc = (ip: string) => ip.replaceAll('.', '\\.');

/**
 * Where a probe is captured: a device in a namespace ('': the machine's own), a tcpdump filter,
 * and which way (default: what the sender's port receives, what the target's port sends on; a
 * bridge device's `in` is what reached the host itself, past the bridge's hooks).
 */
interface Tap {
  netns: string;
  dev: string;
  filter: string;
  direction?: 'in' | 'out';
}

interface Probe<T> {
  /** where the attempt leaves the sender (captured as the device receives it) */
  from: Tap;
  /** where it would reach the target (captured as the device sends it on) */
  to: Tap;
  /** sends the attack; its result is handed back (e.g. whether a ping was answered) */
  attempt: () => Promise<T>;
  /** the attempt, as captured leaving the sender */
  sent: RegExp;
  /** a legitimate packet sent after the attempt along the same path to the target */
  barrier: () => Promise<unknown>;
  /** the barrier, as captured at the target */
  arrived: RegExp;
  /** the attempt, as it would be captured at the target; default `sent` */
  delivered?: RegExp;
}

/**
 * Every isolation check's shape: the attempt is captured leaving the sender, then a barrier sent
 * after it is captured at the target (had the attempt got through, it would have arrived first),
 * and only then is what arrived of the attempt counted. Waits on captures, never on time.
 */
export async function probe<T>(p: Probe<T>): Promise<{ result: T; sent: number; delivered: number }> {
  const left = await Capture.start(p.from.netns, p.from.dev, p.from.direction ?? 'in', p.from.filter);
  const got = await Capture.start(p.to.netns, p.to.dev, p.to.direction ?? 'out', p.to.filter);
  try {
    const result = await p.attempt();
    await left.saw('the attempt leaving the sender', p.sent);
    await p.barrier();
    await got.saw('the barrier at the target', p.arrived);
    return { result, sent: left.count(p.sent), delivered: got.count(p.delivered ?? p.sent) };
  } finally {
    await left.stop();
    await got.stop();
  }
}
