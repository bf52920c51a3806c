// A worker thread that runs blocking libvirt operations synchronously, one at a time, so the
// main event loop never waits on the daemon. Each operation reads libvirt's thread-local error
// on this same thread (see ffi.js). Messages: { id, op, args } -> { id, result }.
import { parentPort } from 'node:worker_threads';
import { runOp } from './ffi.js';

parentPort.on('message', ({ id, op, args }) => {
  let result;
  try {
    result = runOp(op, args);
  } catch (err) {
    result = { ok: false, error: { code: -1, domain: 0, message: String(err?.message ?? err), func: op } };
  }
  parentPort.postMessage({ id, result });
});
