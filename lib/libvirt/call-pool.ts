// A small pool of worker threads for libvirt calls that may block. The pool keeps its own
// unbounded FIFO, so callers can fire any number of calls at once (there is no fixed cap like
// koffi's max_async_calls to trip over), and each worker runs one call at a time.
// Idle workers are unref'd: an idle pool never keeps the process alive.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { OpResult } from './native.js';
import { VirtwireError } from '../errors/virtwire-error.js';

interface Job {
  op: string;
  args: unknown[];
  resolve: (r: OpResult<any>) => void;
  reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  busy: Job | undefined;
  ids: number;
}

const WORKER_URL = new URL('./call-worker.js', import.meta.url);

export class CallPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private closed = false;

  constructor(private readonly size = Math.max(2, Math.min(8, availableParallelism() * 2))) {}

  call<T>(op: string, args: unknown[]): Promise<OpResult<T>> {
    if (this.closed) return Promise.reject(new VirtwireError('CLOSED', 'the libvirt call pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ op, args, resolve, reject });
      this.pump();
    });
  }

  /** How many calls are waiting for a worker (for tests and diagnostics). */
  get queued(): number {
    return this.queue.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    // calls already running finish (terminating a worker mid-call would abandon libvirt memory
    // and reject a caller that may not be listening); queued ones are refused
    for (const job of this.queue.splice(0)) job.reject(new VirtwireError('CLOSED', 'the libvirt call pool is closed'));
    await Promise.all(
      this.slots
        .filter((s) => s.busy)
        .map((s) => new Promise<void>((resolve) => s.worker.once('message', () => resolve()))),
    );
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => !s.busy) ?? this.spawn();
      if (!slot) return;
      const job = this.queue.shift()!;
      slot.busy = job;
      slot.worker.ref();
      slot.worker.postMessage({ id: ++slot.ids, op: job.op, args: job.args });
    }
  }

  private spawn(): Slot | undefined {
    if (this.slots.length >= this.size) return undefined;
    // A worker holds one call's arguments and result at a time: a small young generation keeps
    // each worker's heap (and so the process's RSS) from growing to V8's default 16-32 MiB.
    const worker = new Worker(WORKER_URL, { resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    const slot: Slot = { worker, busy: undefined, ids: 0 };
    slot.worker.on('message', ({ result }: { result: OpResult<any> }) => {
      const job = slot.busy!;
      slot.busy = undefined;
      slot.worker.unref();
      job.resolve(result);
      this.pump();
    });
    slot.worker.on('error', (err) => this.retire(slot, err));
    slot.worker.on('exit', (code) =>
      this.retire(slot, new VirtwireError('INTERNAL', `a libvirt worker thread exited with code ${code}`)),
    );
    this.slots.push(slot);
    return slot;
  }

  private retire(slot: Slot, err: unknown): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    slot.busy?.reject(err);
    slot.busy = undefined;
    if (!this.closed) this.pump();
  }
}
