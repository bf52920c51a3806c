// Drives libvirt's default event loop (virEventRunDefaultImpl) on its own thread and forwards
// domain lifecycle events to the main thread.
//
// The lifecycle callback is registered from this isolate, and libvirt invokes it on this thread
// (the one running the loop), so it runs synchronously here and just posts a message.
// The main thread talks to us over `port`; since this thread is usually blocked inside
// virEventRunDefaultImpl, the main thread wakes it by arming our timer with
// virEventUpdateTimeout(timer, 0) — a thread-safe libvirt call that interrupts the poll.
import { workerData, parentPort, receiveMessageOnPort } from 'node:worker_threads';
import { libvirt } from './ffi.js';

const { koffi, fn, lifecycleProto, timeoutProto } = libvirt();
const { port } = workerData;
const VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0;
const registrations = new Map(); // key -> { conn, callbackId }
let running = true;

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

function handle(msg) {
  if (msg.type === 'register') {
    const callbackId = fn.virConnectDomainEventRegisterAny(
      msg.conn,
      null,
      VIR_DOMAIN_EVENT_ID_LIFECYCLE,
      lifecycle,
      BigInt(msg.key),
      null,
    );
    if (callbackId >= 0) registrations.set(msg.key, { conn: msg.conn, callbackId });
    parentPort.postMessage({ type: 'registered', key: msg.key, ok: callbackId >= 0 });
  } else if (msg.type === 'deregister') {
    const reg = registrations.get(msg.key);
    if (reg) fn.virConnectDomainEventDeregisterAny(reg.conn, reg.callbackId);
    registrations.delete(msg.key);
    parentPort.postMessage({ type: 'deregistered', key: msg.key });
  } else if (msg.type === 'stop') {
    running = false;
  }
}

const wake = koffi.register((timer) => {
  fn.virEventUpdateTimeout(timer, -1);
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) handle(m.message);
}, koffi.pointer(timeoutProto));

const timer = fn.virEventAddTimeout(-1, wake, null, null);
parentPort.postMessage({ type: 'ready', timer });
while (running) {
  if (fn.virEventRunDefaultImpl() < 0) break;
}
fn.virEventRemoveTimeout(timer);
koffi.unregister(lifecycle);
koffi.unregister(wake);
parentPort.postMessage({ type: 'stopped' });
