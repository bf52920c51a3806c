// Main-thread side of the libvirt event loop thread (event-worker.js). One thread per process:
// started by the first connection, subscription or console, it runs libvirt's loop while any is
// open and waits, paused in Node's own loop, while none is — starting it is a worker thread
// booting (~40-60 ms here, against ~2 ms for a connection's open), and a program that creates a
// VM, checks it and destroys it opens a connection per call. Events arrive as messages and are
// delivered to listeners on the main thread.
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { native, toLibvirtError, type OpError } from './native.js';
import { VirtwireError } from '../errors/virtwire-error.js';

export type DomainEventType =
  | 'defined'
  | 'undefined'
  | 'started'
  | 'suspended'
  | 'resumed'
  | 'stopped'
  | 'shutdown'
  | 'pmsuspended'
  | 'crashed'
  | 'rebooted';

export interface DomainEvent {
  type: DomainEventType;
  /** libvirt's virDomainEventType and its detail number */
  event: number;
  detail: number;
  name: string;
  uuid: string;
}

const EVENT_NAMES: DomainEventType[] = [
  'defined',
  'undefined',
  'started',
  'suspended',
  'resumed',
  'stopped',
  'shutdown',
  'pmsuspended',
  'crashed',
];
const VIR_DOMAIN_EVENT_STOPPED = 5;
/** the worker posts libvirt's REBOOT event (an event id of its own) as this */
const REBOOTED = -1;
const VIR_DOMAIN_EVENT_STOPPED_CRASHED = 2;

function eventType(event: number, detail: number): DomainEventType {
  if (event === REBOOTED) return 'rebooted';
  // a crash is reported as STOPPED with detail CRASHED by most drivers
  if (event === VIR_DOMAIN_EVENT_STOPPED && detail === VIR_DOMAIN_EVENT_STOPPED_CRASHED) return 'crashed';
  return EVENT_NAMES[event] ?? 'stopped';
}

type Listener = (e: DomainEvent) => void;

/** Where a console's bytes go, and its end (with libvirt's error, if it broke). */
interface ConsoleSink {
  data(chunk: Buffer): void;
  closed(error?: OpError): void;
}

type Reply = { type: string; key?: number; ok?: boolean; error?: OpError; [k: string]: unknown };
const WORKER_URL = new URL('./event-worker.js', import.meta.url);

/**
 * The loop thread and what it serves. There is one per process, kept with the libvirt binding
 * (see `loop`): libvirt's default event loop is process-wide, and where one process evaluates
 * this module more than once (jest gives every test file its own copy), two threads running it
 * would dispatch each other's callbacks — a koffi callback run on a thread that is not its own
 * waits for its own thread, which may itself sit in the poll. So nothing here builds an error
 * class (they belong to the module copy that throws them: see `eventLoop`).
 */
class LoopThread {
  private worker: Worker | undefined;
  private port: MessagePort | undefined;
  private timer = -1;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  /** whether the thread was last told to run libvirt's loop (not to pause) */
  private running = false;
  private readonly listeners = new Map<number, Listener>();
  private readonly consoles = new Map<number, ConsoleSink>();
  private readonly waiters = new Map<string, (msg: Reply) => void>();
  private nextKey = 1;
  /** open connections: the loop must run while any is open (see hold) */
  private holds = 0;

  /**
   * Keeps the loop running for an open connection. With the default event implementation
   * registered, a connection tells libvirtd it answers keepalive probes; libvirtd sends one every
   * 5 s and closes a connection that left 5 unanswered ("connection closed due to keepalive
   * timeout", then `Cannot write data: Broken pipe` on the next call). The answers are sent by
   * whoever runs the loop — so it runs whenever a connection is open, not only for events.
   */
  async hold(): Promise<void> {
    this.holds++;
    await this.run();
  }

  async release(): Promise<void> {
    this.holds = Math.max(0, this.holds - 1);
    await this.pauseIfIdle();
  }

  /** The key of the new subscription, or undefined where libvirt refused it. */
  async subscribe(conn: bigint, listener: Listener): Promise<number | undefined> {
    await this.run();
    const key = this.nextKey++;
    this.listeners.set(key, listener);
    const { ok } = await this.request('registered', key, { type: 'register', conn, key });
    if (ok) return key;
    this.listeners.delete(key);
    await this.pauseIfIdle();
    return undefined;
  }

  async unsubscribe(key: number): Promise<void> {
    if (!this.listeners.has(key) || !this.worker) return;
    await this.request('deregistered', key, { type: 'deregister', key });
    this.listeners.delete(key);
    await this.pauseIfIdle();
  }

  /**
   * A guest's console as a non-blocking libvirt stream driven by the loop thread; its bytes go
   * to `sink`. The key to write to and close it with, or libvirt's error.
   */
  async openConsole(
    conn: bigint,
    dom: bigint,
    dev: string | undefined,
    sink: ConsoleSink,
  ): Promise<{ key: number } | { error: OpError }> {
    await this.run();
    const key = this.nextKey++;
    this.consoles.set(key, sink);
    const reply = await this.request('console-opened', key, { type: 'console-open', conn, dom, dev, key });
    if (reply.ok) return { key };
    this.consoles.delete(key);
    await this.pauseIfIdle();
    return {
      error: reply.error ?? { code: -1, domain: 0, message: 'the console did not open', func: 'virDomainOpenConsole' },
    };
  }

  writeConsole(key: number, data: Buffer): void {
    if (this.consoles.has(key)) this.send({ type: 'console-write', key, data });
  }

  async closeConsole(key: number): Promise<void> {
    if (!this.consoles.has(key) || !this.worker) return;
    await this.request('console-closed', key, { type: 'console-close', key });
  }

  /** the loop thread's id while there is one (for tests: the same thread serves connection after connection) */
  get threadId(): number | undefined {
    return this.worker?.threadId;
  }

  /** Ends the thread if nothing needs it (Libvirt.shutdown: a tidy end, no thread left). */
  async shutdown(): Promise<void> {
    if (this.idle() && this.worker) await this.stop();
  }

  private idle(): boolean {
    return this.listeners.size === 0 && this.consoles.size === 0 && this.holds === 0;
  }

  /** Starts the thread if there is none, and has it run libvirt's loop. */
  private async run(): Promise<void> {
    await this.stopping;
    await this.start();
    if (this.running) return;
    this.running = true;
    this.send({ type: 'run' });
  }

  /**
   * Nothing to serve: the thread leaves libvirt's poll and waits in Node's loop for the next
   * `run`. A thread in libvirt's poll cannot be ended by Node, so a program ending then would
   * hang; one waiting in Node's loop ends with it. Awaited until the thread has taken the pause.
   */
  private async pauseIfIdle(): Promise<void> {
    if (!this.idle() || !this.running || !this.worker) return;
    this.running = false;
    await this.request('paused', this.nextKey++, { type: 'pause' });
  }

  /**
   * A program ending with the loop running (a connection left open), by its own end or
   * process.exit(): Node joins the loop thread as the process ends and cannot interrupt libvirt's
   * poll, where the thread sits — the exit hung. Told to stop (synchronously: exit handlers cannot
   * wait), it leaves the poll. (Under jest, whose `process` is its own object, this never fires.)
   */
  private readonly onExit = () => {
    if (this.worker && this.port) this.send({ type: 'stop' });
  };

  private start(): Promise<void> {
    if (this.worker) return this.starting ?? Promise.resolve();
    process.once('exit', this.onExit);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(WORKER_URL, { workerData: { port: port2 }, transferList: [port2] });
    // Listeners and open connections do not keep the process alive, like an EventEmitter; the
    // caller's own work does. But a caller awaiting the loop (its start, a reply, its stop) must
    // be kept alive until the answer comes: an unref'd worker would let the process exit mid-await
    // (exit code 13, "unfinished top-level await", in a CLI whose only work is that await).
    this.awaiting++;
    this.starting = new Promise<void>((resolve, reject) => {
      this.worker!.once('error', reject);
      this.waiters.set('ready', () => resolve());
    }).finally(() => this.settle());
    this.worker.on('message', (msg) => this.onMessage(msg));
    return this.starting;
  }

  private onMessage(msg: Reply & { timer?: number }): void {
    if (msg.type === 'console-data') {
      this.consoles.get(msg.key!)?.data(Buffer.from(msg.data as Uint8Array));
      return;
    }
    if (msg.type === 'console-closed') {
      const sink = this.consoles.get(msg.key!);
      this.consoles.delete(msg.key!);
      sink?.closed(msg.error);
      void this.pauseIfIdle();
    }
    if (msg.type === 'event') {
      const listener = this.listeners.get(msg.key!);
      listener?.({
        type: eventType(msg.event as number, msg.detail as number),
        event: msg.event as number,
        detail: msg.detail as number,
        name: msg.name as string,
        uuid: msg.uuid as string,
      });
      return;
    }
    if (msg.type === 'ready') this.timer = msg.timer!;
    const id = msg.key === undefined ? msg.type : `${msg.type}:${msg.key}`;
    const waiter = this.waiters.get(id);
    this.waiters.delete(id);
    waiter?.(msg);
  }

  private request(reply: string, key: number, message: object): Promise<Reply> {
    this.awaiting++;
    this.worker?.ref();
    return new Promise<Reply>((resolve) => {
      this.waiters.set(`${reply}:${key}`, resolve);
      this.send({ ...message, key });
    }).finally(() => this.settle());
  }

  /** replies (or the start) being awaited: the worker is ref'd while there are any */
  private awaiting = 0;

  private settle(): void {
    if (--this.awaiting === 0) this.worker?.unref();
  }

  /** Queue a message and wake the loop thread out of its poll (if it is there) by arming its timer. */
  private send(message: object): void {
    this.port!.postMessage(message);
    native().fn.virEventUpdateTimeout!(this.timer, 0);
  }

  private stop(): Promise<void> {
    const worker = this.worker!;
    worker.ref(); // until it has exited (see start)
    this.running = false;
    this.stopping = new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      this.send({ type: 'stop' });
    }).then(() => {
      process.off('exit', this.onExit);
      this.port?.close();
      this.worker = undefined;
      this.port = undefined;
      this.starting = undefined;
      this.stopping = undefined;
    });
    return this.stopping;
  }
}

/** The process's loop thread, kept with the binding (which one process shares: see ffi.js). */
const loop = (): LoopThread => (native().process.loop ??= new LoopThread()) as LoopThread;

/** The loop thread as this module copy's callers see it: failures thrown as its own errors. */
export const eventLoop = {
  hold: (): Promise<void> => loop().hold(),
  release: (): Promise<void> => loop().release(),
  async subscribe(conn: bigint, listener: Listener): Promise<number> {
    const key = await loop().subscribe(conn, listener);
    if (key === undefined) throw new VirtwireError('LIBVIRT', 'virConnectDomainEventRegisterAny failed');
    return key;
  },
  unsubscribe: (key: number): Promise<void> => loop().unsubscribe(key),
  async openConsole(conn: bigint, dom: bigint, dev: string | undefined, sink: ConsoleSink): Promise<number> {
    const opened = await loop().openConsole(conn, dom, dev, sink);
    if ('error' in opened) throw toLibvirtError(opened.error);
    return opened.key;
  },
  writeConsole: (key: number, data: Buffer): void => loop().writeConsole(key, data),
  closeConsole: (key: number): Promise<void> => loop().closeConsole(key),
  shutdown: (): Promise<void> => loop().shutdown(),
  threadId: (): number | undefined => loop().threadId,
};
