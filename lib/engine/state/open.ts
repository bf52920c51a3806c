// The one place a state store is chosen: a PostgreSQL URL opens the database state, anything else
// is this machine's state directory (the default).
import { DirStateStore } from './dir-store.js';
import { isDatabaseUrl } from '../../spec/index.js';
import { PgStateStore } from './pg-store.js';
import type { StateStore } from './store.js';
import { DEFAULT_STATE_DIR } from './paths.js';

/** `state`: a PostgreSQL URL (records there, files in `stateDir`); absent: the directory `stateDir`. */
export function openState(stateDir: string, state?: string): StateStore {
  return state !== undefined && isDatabaseUrl(state) ? new PgStateStore(state, stateDir) : new DirStateStore(stateDir);
}

/**
 * Where a state is, for the calls below: a state dir, or `{ stateDir, state }` where `state` is a
 * PostgreSQL URL holding the records (per-host files stay in `stateDir`).
 */
export type StateWhere = string | { stateDir?: string; state?: string };

/**
 * The store `where` names, its snapshot not yet read: for what reads under the lock (which loads
 * it) or only the locks.
 */
export function openWhere(where: StateWhere | undefined): StateStore {
  const w = typeof where === 'string' ? { stateDir: where } : (where ?? {});
  return openState(w.stateDir ?? DEFAULT_STATE_DIR, w.state);
}

/** Opens the state `where` names and reads its snapshot, then runs `fn` on it. */
export async function withState<T>(where: StateWhere | undefined, fn: (state: StateStore) => Promise<T>): Promise<T> {
  const state = openWhere(where);
  await state.load();
  return fn(state);
}
