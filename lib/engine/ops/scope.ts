// What every engine operation starts from: the call's scope (URI, state dir, hosts) with the
// defaults from the state module, its state store, and the host contexts of that scope.
import type { HostTarget } from '../../../types/vm.js';
import type { EngineDeps } from '../deps.js';
import { Problems, checkLibvirtUri, validateHosts } from '../../spec/index.js';
import { HostResolver, type Scope } from '../hosts.js';
import { DEFAULT_STATE_DIR, DEFAULT_URI } from '../state/paths.js';
import type { StateStore } from '../state/store.js';

export interface ScopeOptions {
  uri?: string;
  stateDir?: string;
  hosts?: HostTarget[];
}

export interface Bound {
  scope: Scope;
  state: StateStore;
  hosts: HostResolver;
}

/** The scope of one call; a bad hosts list is a SpecError before anything is contacted. */
export function bind(deps: EngineDeps, options: ScopeOptions = {}): Bound {
  const p = new Problems();
  if (options.uri !== undefined) checkLibvirtUri(p, 'uri', options.uri);
  p.throwIfAny('options');
  const scope: Scope = {
    uri: options.uri ?? DEFAULT_URI,
    stateDir: options.stateDir ?? DEFAULT_STATE_DIR,
    hosts: validateHosts(options.hosts),
  };
  return { scope, state: deps.state(scope.stateDir), hosts: new HostResolver(deps, scope) };
}
