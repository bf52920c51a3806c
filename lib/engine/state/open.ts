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

/** Opens the state `where` names and its snapshot, runs `fn` on it, and lets its connections go. */
export async function withState<T>(where: StateWhere | undefined, fn: (state: StateStore) => Promise<T>): Promise<T> {
  const w = typeof where === 'string' ? { stateDir: where } : (where ?? {});
  const state = openState(w.stateDir ?? DEFAULT_STATE_DIR, w.state);
  await state.load();
  return fn(state);
}
