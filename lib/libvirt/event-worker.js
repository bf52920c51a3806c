// Drives libvirt's default event loop (virEventRunDefaultImpl) on its own thread and forwards
// domain lifecycle events, and the bytes of guests' consoles (non-blocking libvirt streams whose
// callbacks this loop runs), to the main thread.
//
// The lifecycle callback is registered from this isolate, and libvirt invokes it on this thread
// (the one running the loop), so it runs synchronously here and just posts a message.
// The main thread talks to us over `port`; since this thread is usually blocked inside
// virEventRunDefaultImpl, the main thread wakes it by arming our timer with
// virEventUpdateTimeout(timer, 0) — a thread-safe libvirt call that interrupts the poll.
import { workerData, parentPort, receiveMessageOnPort } from 'node:worker_threads';
import { libvirt, lastError } from './ffi.js';

const { koffi, fn, lifecycleProto, rebootProto, timeoutProto, streamProto } = libvirt();
const { port } = workerData;
const VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0;
const VIR_DOMAIN_EVENT_ID_REBOOT = 1;
/** what a reboot is posted as (libvirt reports it as an event of its own, not a lifecycle one) */
const REBOOTED = -1;
const registrations = new Map(); // key -> { conn, callbackIds }
const consoles = new Map(); // key -> { st, pending: Buffer[] }
/** told to run libvirt's loop (a connection, subscription or console is open) */
let running = false;
/** told to end: the thread leaves the loop and its port, and exits */
let stopped = false;

const VIR_STREAM_NONBLOCK = 1;
const VIR_DOMAIN_CONSOLE_FORCE = 1;
const READABLE = 1;
const WRITABLE = 2;
const ERROR = 4;
const HANGUP = 8;
const CHUNK = 64 * 1024;

function closeConsole(key, error) {
  const c = consoles.get(key);
  if (!c) return;
  consoles.delete(key);
  fn.virStreamEventRemoveCallback(c.st);
  if (error) fn.virStreamAbort(c.st);
  else fn.virStreamFinish(c.st);
  fn.virStreamFree(c.st);
  parentPort.postMessage({ type: 'console-closed', key, ...(error ? { error } : {}) });
}

/** Sends what is pending; on EAGAIN keeps the rest and asks to be called when writable. */
function flush(key) {
  const c = consoles.get(key);
  while (c && c.pending.length > 0) {
    const data = c.pending[0];
    const n = fn.virStreamSend(c.st, data, data.length);
    if (n === -2) break;
    if (n < 0) return closeConsole(key, lastError('virStreamSend'));
    if (n < data.length) c.pending[0] = data.subarray(n);
    else c.pending.shift();
  }
  if (c) fn.virStreamEventUpdateCallback(c.st, READABLE | ERROR | HANGUP | (c.pending.length > 0 ? WRITABLE : 0));
}

const onStream = koffi.register((_st, events, opaque) => {
  const key = Number(opaque);
  const c = consoles.get(key);
  if (!c) return;
  if (events & READABLE) {
    for (;;) {
      const buf = Buffer.alloc(CHUNK);
      const n = fn.virStreamRecv(c.st, buf, CHUNK);
      if (n === -2) break; // nothing more for now
      if (n === 0) return closeConsole(key); // the guest's end closed
      if (n < 0) return closeConsole(key, lastError('virStreamRecv'));
      parentPort.postMessage({ type: 'console-data', key, data: buf.subarray(0, n) });
    }
  }
  if (events & WRITABLE) flush(key);
  if (events & (ERROR | HANGUP))
    closeConsole(key, events & ERROR ? { code: -1, message: 'console stream error', func: 'virStream' } : undefined);
}, koffi.pointer(streamProto));

function openConsole(msg) {
  const st = fn.virStreamNew(msg.conn, VIR_STREAM_NONBLOCK);
  if (!st) return lastError('virStreamNew');
  if (fn.virDomainOpenConsole(msg.dom, msg.dev ?? null, st, VIR_DOMAIN_CONSOLE_FORCE) < 0) {
    const e = lastError('virDomainOpenConsole');
    fn.virStreamFree(st);
    return e;
  }
  if (fn.virStreamEventAddCallback(st, READABLE | ERROR | HANGUP, onStream, BigInt(msg.key), null) < 0) {
    const e = lastError('virStreamEventAddCallback');
    fn.virStreamAbort(st);
    fn.virStreamFree(st);
    return e;
  }
  consoles.set(msg.key, { st, pending: [] });
  return undefined;
}

const lifecycle = koffi.register((_conn, dom, event, detail, opaque) => {
  const key = Number(opaque);
  const buf = Buffer.alloc(37);
  fn.virDomainGetUUIDString(dom, buf);
  parentPort.postMessage({
    type: 'event',
    key,
    name: fn.virDomainGetName(dom),
    uuid: buf.toString('utf8', 0, 36),
    event,
    detail,
  });
  return 0;
}, koffi.pointer(lifecycleProto));

const rebooted = koffi.register((_conn, dom, opaque) => {
  const buf = Buffer.alloc(37);
  fn.virDomainGetUUIDString(dom, buf);
  parentPort.postMessage({
    type: 'event',
    key: Number(opaque),
    name: fn.virDomainGetName(dom),
    uuid: buf.toString('utf8', 0, 36),
    event: REBOOTED,
    detail: 0,
  });
}, koffi.pointer(rebootProto));

function handle(msg) {
  if (msg.type === 'register') {
    const lifecycleId = fn.virConnectDomainEventRegisterAny(
      msg.conn,
      null,
      VIR_DOMAIN_EVENT_ID_LIFECYCLE,
      lifecycle,
      BigInt(msg.key),
      null,
    );
    const rebootId =
      lifecycleId < 0
        ? -1
        : fn.virConnectDomainEventRegisterAny(
            msg.conn,
            null,
            VIR_DOMAIN_EVENT_ID_REBOOT,
            rebooted,
            BigInt(msg.key),
            null,
          );
    if (lifecycleId >= 0 && rebootId < 0) fn.virConnectDomainEventDeregisterAny(msg.conn, lifecycleId);
    const ok = lifecycleId >= 0 && rebootId >= 0;
    if (ok) registrations.set(msg.key, { conn: msg.conn, callbackIds: [lifecycleId, rebootId] });
    parentPort.postMessage({ type: 'registered', key: msg.key, ok });
  } else if (msg.type === 'deregister') {
    const reg = registrations.get(msg.key);
    for (const id of reg?.callbackIds ?? []) fn.virConnectDomainEventDeregisterAny(reg.conn, id);
    registrations.delete(msg.key);
    parentPort.postMessage({ type: 'deregistered', key: msg.key });
  } else if (msg.type === 'console-open') {
    const error = openConsole(msg);
    parentPort.postMessage({ type: 'console-opened', key: msg.key, ok: !error, ...(error ? { error } : {}) });
  } else if (msg.type === 'console-write') {
    consoles.get(msg.key)?.pending.push(Buffer.from(msg.data));
    flush(msg.key);
  } else if (msg.type === 'console-close') {
    closeConsole(msg.key);
  } else if (msg.type === 'run') {
    running = true;
  } else if (msg.type === 'pause') {
    running = false;
    parentPort.postMessage({ type: 'paused', key: msg.key });
  } else if (msg.type === 'stop') {
    for (const key of [...consoles.keys()]) closeConsole(key);
    running = false;
    stopped = true;
  }
}

const wake = koffi.register((timer) => {
  fn.virEventUpdateTimeout(timer, -1);
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) handle(m.message);
}, koffi.pointer(timeoutProto));

const timer = fn.virEventAddTimeout(-1, wake, null, null);

/**
 * Runs libvirt's loop while told to. Paused (nothing to serve), this thread waits in Node's own
 * loop for the next message on the port instead of in libvirt's poll: Node cannot end a thread in
 * libvirt's poll, so a program ending then would hang; one waiting in Node's loop ends with it.
 * Whichever way a message arrives (read by `wake` while running, or delivered here while
 * paused), what it asked for is done once it has been handled.
 */
function serve() {
  while (running && !stopped) {
    if (fn.virEventRunDefaultImpl() < 0) running = false;
  }
  if (stopped) finish();
}

function finish() {
  port.off('message', onMessage);
  port.close();
  fn.virEventRemoveTimeout(timer);
  koffi.unregister(lifecycle);
  koffi.unregister(rebooted);
  koffi.unregister(onStream);
  koffi.unregister(wake);
}

/** a message that arrives while paused (while running, `wake` reads them) */
function onMessage(msg) {
  handle(msg);
  serve();
}

port.on('message', onMessage);
parentPort.postMessage({ type: 'ready', timer });
