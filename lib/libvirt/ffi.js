// libvirt.so through koffi: the C declarations and the small "operations" built on them.
//
// Plain JavaScript on purpose: the same module runs on the main thread (cheap synchronous calls)
// and inside the worker threads that make blocking calls (lib/libvirt/call-worker.js), which
// load files from disk without a TypeScript transform.
//
// Why operations and not bare functions: libvirt keeps its last error per *thread*
// (virGetLastError). An operation makes the call and, on failure, reads the error on the same
// thread before returning, so the error always belongs to the call that failed. It also owns
// the C memory: strings and arrays libvirt mallocs are decoded to JS and freed here.
import koffi from 'koffi';

/**
 * @typedef {{ code: number, domain: number, message: string, func: string }} OpError
 * @typedef {{ ok: true, value: any } | { ok: false, error: OpError }} OpResult
 */

// koffi's type registry belongs to the isolate, not to this module instance: where one isolate
// evaluates this module twice (jest gives every test file its own module registry), the second
// evaluation must reuse the declarations ('Duplicate type name' otherwise). So the binding is
// kept on the koffi module object, which the isolate shares.
const BOUND = Symbol.for('virtwire.libvirt.ffi');

/** Loads libvirt.so.0 and declares what virtwire uses; once per thread (isolate). */
export function libvirt() {
  return (koffi[BOUND] ??= bind());
}

function bind() {
  const lib = koffi.load('libvirt.so.0');
  const libc = koffi.load('libc.so.6');
  const virError = koffi.struct('virError', {
    code: 'int',
    domain: 'int',
    message: 'char *',
    level: 'int',
    conn: 'void *',
    dom: 'void *',
    str1: 'char *',
    str2: 'char *',
    str3: 'char *',
    int1: 'int',
    int2: 'int',
    net: 'void *',
  });
  const lifecycleProto = koffi.proto('int vwLifecycleCb(void *conn, void *dom, int event, int detail, void *opaque)');
  const rebootProto = koffi.proto('void vwRebootCb(void *conn, void *dom, void *opaque)');
  const timeoutProto = koffi.proto('void vwTimeoutCb(int timer, void *opaque)');
  const errorFuncProto = koffi.proto('void vwErrorFunc(void *userData, void *error)');
  const streamProto = koffi.proto('void vwStreamCb(void *stream, int events, void *opaque)');
  const decls = [
    'int virInitialize()',
    'int virGetVersion(_Out_ unsigned long *libVer, const char *type, _Out_ unsigned long *typeVer)',
    'void *virGetLastError()',
    'void virResetLastError()',
    'void virSetErrorFunc(void *userData, vwErrorFunc *handler)',
    'int virEventRegisterDefaultImpl()',
    'int virEventRunDefaultImpl()',
    'int virEventAddTimeout(int frequency, vwTimeoutCb *cb, void *opaque, void *ff)',
    'void virEventUpdateTimeout(int timer, int frequency)',
    'int virEventRemoveTimeout(int timer)',
    'void *virConnectOpen(const char *name)',
    'int virConnectClose(void *conn)',
    'int virConnectIsAlive(void *conn)',
    'int virConnectGetVersion(void *conn, _Out_ unsigned long *hvVer)',
    'int virConnectGetLibVersion(void *conn, _Out_ unsigned long *libVer)',
    'void *virConnectGetCapabilities(void *conn)',
    'void *virConnectGetDomainCapabilities(void *conn, const char *emulatorbin, const char *arch, const char *machine, const char *virttype, unsigned int flags)',
    'void *virConnectGetHostname(void *conn)',
    'void *virConnectGetURI(void *conn)',
    'int virNodeGetInfo(void *conn, void *info)',
    'unsigned long long virNodeGetFreeMemory(void *conn)',
    'void *virDomainDefineXML(void *conn, const char *xml)',
    'void *virDomainCreateXML(void *conn, const char *xml, unsigned int flags)',
    'void *virDomainLookupByName(void *conn, const char *name)',
    'void *virDomainLookupByUUIDString(void *conn, const char *uuid)',
    'int virConnectListAllDomains(void *conn, _Out_ void **domains, unsigned int flags)',
    'int virDomainCreate(void *dom)',
    'int virDomainShutdown(void *dom)',
    'int virDomainDestroy(void *dom)',
    'int virDomainUndefineFlags(void *dom, unsigned int flags)',
    'int virDomainRename(void *dom, const char *new_name, unsigned int flags)',
    'int virDomainGetState(void *dom, _Out_ int *state, _Out_ int *reason, unsigned int flags)',
    'void *virDomainGetXMLDesc(void *dom, unsigned int flags)',
    'int virDomainIsActive(void *dom)',
    'int virDomainIsPersistent(void *dom)',
    'const char *virDomainGetName(void *dom)',
    'int virDomainGetUUIDString(void *dom, void *buf)',
    'unsigned int virDomainGetID(void *dom)',
    'int virDomainFree(void *dom)',
    'int virConnectDomainEventRegisterAny(void *conn, void *dom, int eventID, void *cb, void *opaque, void *freecb)',
    'int virConnectDomainEventDeregisterAny(void *conn, int callbackID)',
    'void *virNetworkDefineXML(void *conn, const char *xml)',
    'void *virNetworkCreateXML(void *conn, const char *xml)',
    'void *virNetworkLookupByName(void *conn, const char *name)',
    'int virConnectListAllNetworks(void *conn, _Out_ void **nets, unsigned int flags)',
    'int virNetworkCreate(void *net)',
    'int virNetworkDestroy(void *net)',
    'int virNetworkUndefine(void *net)',
    'void *virNetworkGetXMLDesc(void *net, unsigned int flags)',
    'const char *virNetworkGetName(void *net)',
    'int virNetworkGetUUIDString(void *net, void *buf)',
    'int virNetworkIsActive(void *net)',
    'int virNetworkIsPersistent(void *net)',
    'int virNetworkFree(void *net)',
    'int virDomainReboot(void *dom, unsigned int flags)',
    'int virDomainReset(void *dom, unsigned int flags)',
    'int virDomainAttachDeviceFlags(void *dom, const char *xml, unsigned int flags)',
    'int virDomainDetachDeviceFlags(void *dom, const char *xml, unsigned int flags)',
    'int virDomainSetMemoryFlags(void *dom, unsigned long memory, unsigned int flags)',
    'void *virDomainSnapshotCreateXML(void *dom, const char *xml, unsigned int flags)',
    'void *virDomainSnapshotLookupByName(void *dom, const char *name, unsigned int flags)',
    'int virDomainRevertToSnapshot(void *snap, unsigned int flags)',
    'int virDomainSnapshotDelete(void *snap, unsigned int flags)',
    'int virDomainListAllSnapshots(void *dom, _Out_ void **snaps, unsigned int flags)',
    'const char *virDomainSnapshotGetName(void *snap)',
    'void *virDomainSnapshotGetXMLDesc(void *snap, unsigned int flags)',
    'int virDomainSnapshotFree(void *snap)',
    'void *virStreamNew(void *conn, unsigned int flags)',
    'int virDomainOpenConsole(void *dom, const char *devname, void *st, unsigned int flags)',
    'int virStreamEventAddCallback(void *st, int events, vwStreamCb *cb, void *opaque, void *ff)',
    'int virStreamEventUpdateCallback(void *st, int events)',
    'int virStreamEventRemoveCallback(void *st)',
    'int virStreamRecv(void *st, void *data, size_t nbytes)',
    'int virStreamSend(void *st, const void *data, size_t nbytes)',
    'int virStreamFinish(void *st)',
    'int virStreamAbort(void *st)',
    'int virStreamFree(void *st)',
  ];
  const fn = {};
  for (const decl of decls) {
    const name = /([A-Za-z0-9_]+)\(/.exec(decl)[1];
    fn[name] = lib.func(decl);
  }
  fn.free = libc.func('void free(void *ptr)');
  // `process` records the once-per-process libvirt set-up (lib/libvirt/native.ts), shared for the same reason
  return { koffi, fn, virError, lifecycleProto, rebootProto, timeoutProto, errorFuncProto, streamProto, process: {} };
}

/** Reads this thread's last libvirt error (must run on the thread that made the failing call). */
export function lastError(func) {
  const { koffi, fn, virError } = libvirt();
  const ptr = fn.virGetLastError();
  if (!ptr) return { code: -1, domain: 0, message: 'libvirt reported failure without an error', func };
  const e = koffi.decode(ptr, virError);
  const error = { code: e.code, domain: e.domain, message: e.message ?? '', func };
  fn.virResetLastError();
  return error;
}

const ok = (value) => ({ ok: true, value });
const fail = (func) => ({ ok: false, error: lastError(func) });

/** A libvirt-malloc'd C string: decoded, then freed. */
function takeString(ptr) {
  const { koffi, fn } = libvirt();
  try {
    return koffi.decode.string(ptr);
  } finally {
    fn.free(ptr);
  }
}

/** Calls a function returning a pointer; null means failure. */
function ptrCall(name, ...args) {
  const value = libvirt().fn[name](...args);
  return value ? ok(value) : fail(name);
}

/** Calls a function returning int; -1 means failure. */
function intCall(name, ...args) {
  const value = libvirt().fn[name](...args);
  return value < 0 ? fail(name) : ok(value);
}

function stringCall(name, ...args) {
  const value = libvirt().fn[name](...args);
  return value ? ok(takeString(value)) : fail(name);
}

function uuidOf(getter, handle) {
  // VIR_UUID_STRING_BUFLEN = 37: the caller provides the buffer.
  const buf = Buffer.alloc(37);
  libvirt().fn[getter](handle, buf);
  return buf.toString('utf8', 0, 36);
}

function domainSummary(dom) {
  const { fn } = libvirt();
  const state = [0];
  const reason = [0];
  fn.virDomainGetState(dom, state, reason, 0);
  const id = fn.virDomainGetID(dom);
  return {
    name: fn.virDomainGetName(dom),
    uuid: uuidOf('virDomainGetUUIDString', dom),
    id: id === 0xffffffff ? -1 : id,
    state: state[0],
  };
}

/** Looks a snapshot up by name, runs `fn` on it, frees it. */
function withSnapshot(dom, name, fn) {
  const r = ptrCall('virDomainSnapshotLookupByName', dom, name, 0);
  if (!r.ok) return r;
  try {
    return fn(r.value);
  } finally {
    libvirt().fn.virDomainSnapshotFree(r.value);
  }
}

/** Decodes a malloc'd array of handles, summarises each, frees each handle and the array. */
function takeHandleArray(arrayPtr, count, summarise, freeName) {
  const { koffi, fn } = libvirt();
  if (!arrayPtr) return [];
  try {
    const handles = count > 0 ? koffi.decode(arrayPtr, 'void *', count) : [];
    return handles.map((h) => {
      try {
        return summarise(h);
      } finally {
        fn[freeName](h);
      }
    });
  } finally {
    fn.free(arrayPtr);
  }
}

/**
 * The operations, by name. Each takes plain values (pointers are BigInt) and returns an
 * OpResult with plain, structured-cloneable values, so it can run on any thread.
 */
const ops = {
  open: (uri) => ptrCall('virConnectOpen', uri),
  close: (conn) => intCall('virConnectClose', conn),
  isAlive: (conn) => intCall('virConnectIsAlive', conn),
  version: (conn) => {
    const v = [0];
    const r = intCall('virConnectGetVersion', conn, v);
    return r.ok ? ok(Number(v[0])) : r;
  },
  libVersion: (conn) => {
    const v = [0];
    const r = intCall('virConnectGetLibVersion', conn, v);
    return r.ok ? ok(Number(v[0])) : r;
  },
  capabilities: (conn) => stringCall('virConnectGetCapabilities', conn),
  domainCapabilities: (conn, emulator, arch, machine, virttype) =>
    stringCall('virConnectGetDomainCapabilities', conn, emulator, arch, machine, virttype, 0),
  hostname: (conn) => stringCall('virConnectGetHostname', conn),
  uri: (conn) => stringCall('virConnectGetURI', conn),
  freeMemory: (conn) => {
    const v = libvirt().fn.virNodeGetFreeMemory(conn);
    return v === 0 || v === 0n ? fail('virNodeGetFreeMemory') : ok(Number(v));
  },

  defineDomain: (conn, xml) => ptrCall('virDomainDefineXML', conn, xml),
  createDomain: (conn, xml, flags) => ptrCall('virDomainCreateXML', conn, xml, flags),
  lookupDomain: (conn, name) => ptrCall('virDomainLookupByName', conn, name),
  lookupDomainByUuid: (conn, uuid) => ptrCall('virDomainLookupByUUIDString', conn, uuid),
  listDomains: (conn, flags) => {
    const out = [null];
    const n = libvirt().fn.virConnectListAllDomains(conn, out, flags);
    if (n < 0) return fail('virConnectListAllDomains');
    return ok(takeHandleArray(out[0], n, domainSummary, 'virDomainFree'));
  },
  domainStart: (dom) => intCall('virDomainCreate', dom),
  domainShutdown: (dom) => intCall('virDomainShutdown', dom),
  domainDestroy: (dom) => intCall('virDomainDestroy', dom),
  domainUndefine: (dom, flags) => intCall('virDomainUndefineFlags', dom, flags),
  domainRename: (dom, name) => intCall('virDomainRename', dom, name, 0),
  domainState: (dom) => {
    const state = [0];
    const reason = [0];
    const r = intCall('virDomainGetState', dom, state, reason, 0);
    return r.ok ? ok({ state: state[0], reason: reason[0] }) : r;
  },
  domainXml: (dom, flags) => stringCall('virDomainGetXMLDesc', dom, flags),
  domainIsActive: (dom) => intCall('virDomainIsActive', dom),
  domainIsPersistent: (dom) => intCall('virDomainIsPersistent', dom),
  domainInfo: (dom) => ok(domainSummary(dom)),
  domainFree: (dom) => intCall('virDomainFree', dom),
  domainReboot: (dom, flags) => intCall('virDomainReboot', dom, flags),
  domainReset: (dom) => intCall('virDomainReset', dom, 0),
  domainAttach: (dom, xml, flags) => intCall('virDomainAttachDeviceFlags', dom, xml, flags),
  domainDetach: (dom, xml, flags) => intCall('virDomainDetachDeviceFlags', dom, xml, flags),
  domainSetMemory: (dom, kib, flags) => intCall('virDomainSetMemoryFlags', dom, kib, flags),

  // snapshots by name: each operation looks its snapshot up and frees it before returning
  snapshotCreate: (dom, xml, flags) => {
    const r = ptrCall('virDomainSnapshotCreateXML', dom, xml, flags);
    if (!r.ok) return r;
    const { fn } = libvirt();
    const name = fn.virDomainSnapshotGetName(r.value);
    fn.virDomainSnapshotFree(r.value);
    return ok(name);
  },
  snapshotRevert: (dom, name, flags) =>
    withSnapshot(dom, name, (snap) => intCall('virDomainRevertToSnapshot', snap, flags)),
  snapshotDelete: (dom, name, flags) =>
    withSnapshot(dom, name, (snap) => intCall('virDomainSnapshotDelete', snap, flags)),
  snapshotXml: (dom, name) => withSnapshot(dom, name, (snap) => stringCall('virDomainSnapshotGetXMLDesc', snap, 0)),
  snapshotList: (dom) => {
    const out = [null];
    const n = libvirt().fn.virDomainListAllSnapshots(dom, out, 0);
    if (n < 0) return fail('virDomainListAllSnapshots');
    const { fn } = libvirt();
    return ok(
      takeHandleArray(
        out[0],
        n,
        (s) => ({ name: fn.virDomainSnapshotGetName(s), xml: takeString(fn.virDomainSnapshotGetXMLDesc(s, 0)) }),
        'virDomainSnapshotFree',
      ),
    );
  },

  defineNetwork: (conn, xml) => ptrCall('virNetworkDefineXML', conn, xml),
  createNetwork: (conn, xml) => ptrCall('virNetworkCreateXML', conn, xml),
  lookupNetwork: (conn, name) => ptrCall('virNetworkLookupByName', conn, name),
  listNetworks: (conn, flags) => {
    const out = [null];
    const n = libvirt().fn.virConnectListAllNetworks(conn, out, flags);
    if (n < 0) return fail('virConnectListAllNetworks');
    const { fn } = libvirt();
    return ok(
      takeHandleArray(
        out[0],
        n,
        (h) => ({
          name: fn.virNetworkGetName(h),
          uuid: uuidOf('virNetworkGetUUIDString', h),
          active: fn.virNetworkIsActive(h) === 1,
          persistent: fn.virNetworkIsPersistent(h) === 1,
        }),
        'virNetworkFree',
      ),
    );
  },
  networkStart: (net) => intCall('virNetworkCreate', net),
  networkDestroy: (net) => intCall('virNetworkDestroy', net),
  networkUndefine: (net) => intCall('virNetworkUndefine', net),
  networkXml: (net, flags) => stringCall('virNetworkGetXMLDesc', net, flags),
  networkIsActive: (net) => intCall('virNetworkIsActive', net),
  networkName: (net) => ok(libvirt().fn.virNetworkGetName(net)),
  networkFree: (net) => intCall('virNetworkFree', net),
};

/** Runs an operation, turning a thrown JS error (bad argument types) into a failed result too. */
export function runOp(name, args) {
  const op = ops[name];
  if (!op) return { ok: false, error: { code: -1, domain: 0, message: `unknown operation ${name}`, func: name } };
  return op(...args);
}
