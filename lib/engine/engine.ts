// The engine: one set of collaborators (deps.ts), resolved by the composition root
// (container.ts), and the operations (operations.ts) bound to them.
import { inject, injectable } from 'tsyringe';
import { Collaborators, type EngineDeps } from './deps.js';
import { bindOperations, type Operations } from './operations.js';

@injectable()
export class Engine {
  readonly ops: Operations;

  constructor(@inject(Collaborators) readonly deps: EngineDeps) {
    this.ops = bindOperations(deps);
  }
}
