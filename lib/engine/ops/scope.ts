// What every engine operation starts from: the call's scope (URI, state, hosts) with the
// defaults from the state module, its state store (its snapshot loaded), and the host contexts of
// that scope.
import type { HostTarget } from '../../../types/vm.js';
import type { EngineDeps } from '../deps.js';
import { Problems, checkLibvirtUri, checkStateUrl, validateHosts } from '../../spec/index.js';
import { HostResolver, type Scope } from '../hosts.js';
import { DEFAULT_STATE_DIR, DEFAULT_URI } from '../state/paths.js';
import type { StateStore } from '../state/store.js';

export interface ScopeOptions {
  uri?: string;
  stateDir?: string;
  /** a PostgreSQL URL holding the records and locks (see VmOptions.state) */
  state?: string;
  hosts?: HostTarget[];
}

export interface Bound {
  scope: Scope;
  state: StateStore;
  hosts: HostResolver;
}

/** The scope of one call; a bad hosts list or state URL is a SpecError before anything is contacted. */
export async function bind(deps: EngineDeps, options: ScopeOptions = {}): Promise<Bound> {
  const p = new Problems();
  if (options.uri !== undefined) checkLibvirtUri(p, 'uri', options.uri);
  if (options.state !== undefined) checkStateUrl(p, 'state', options.state);
  p.throwIfAny('options');
  const scope: Scope = {
    uri: options.uri ?? DEFAULT_URI,
    stateDir: options.stateDir ?? DEFAULT_STATE_DIR,
    hosts: validateHosts(options.hosts),
  };
  const state = deps.state(scope.stateDir, options.state);
  await state.load();
  return { scope, state, hosts: new HostResolver(deps, scope) };
}

/** The scope of `options` for the calls an operation makes in turn (the same state, URI and hosts). */
export function passOn(options: ScopeOptions, stateDir: string): ScopeOptions {
  return {
    ...(options.uri ? { uri: options.uri } : {}),
    stateDir,
    ...(options.state ? { state: options.state } : {}),
    ...(options.hosts ? { hosts: options.hosts } : {}),
  };
}
