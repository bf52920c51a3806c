// Many VMs in one call, for callers that have them together: every spec validated first (one
// SpecError naming every problem, paths prefixed by the spec's index, nothing created), then all
// created at once — their host-plane work joins in group commits — and all or nothing: if one
// fails, the others are destroyed and the first failure is thrown.
import { passOn } from './scope.js';
import { DEFAULT_STATE_DIR } from '../state/paths.js';
import type { VmSpec } from '../../../types/spec.js';
import type { CreatedVm, CreateVmsOptions, ProgressEvent } from '../../../types/vm.js';
import { SpecError, type SpecProblem } from '../../errors/index.js';
import { validateVm } from '../../spec/index.js';
import type { EngineDeps } from '../deps.js';
import { createVm } from './create.js';
import { destroyVm } from './destroy.js';

export async function createVms(
  deps: EngineDeps,
  specs: VmSpec[],
  options: CreateVmsOptions = {},
): Promise<CreatedVm[]> {
  const problems: SpecProblem[] = [];
  const names = new Map<string, number>();
  specs.forEach((spec, i) => {
    try {
      const vm = validateVm(spec);
      const first = names.get(vm.name);
      if (first !== undefined) problems.push({ path: `[${i}].name`, message: `${vm.name} is also [${first}]'s name` });
      else names.set(vm.name, i);
    } catch (e) {
      if (!(e instanceof SpecError)) throw e;
      problems.push(...e.problems.map((p) => ({ ...p, path: `[${i}].${p.path}` })));
    }
  });
  if (problems.length) throw new SpecError(problems, 'VM specs');

  const { onProgress, ...rest } = options;
  const results = await Promise.allSettled(
    specs.map((spec) =>
      createVm(deps, spec, {
        ...rest,
        ...(onProgress ? { onProgress: (e: ProgressEvent) => onProgress({ ...e, name: spec.name }) } : {}),
      }),
    ),
  );
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!failed) return results.map((r) => (r as PromiseFulfilledResult<CreatedVm>).value);
  for (const r of results)
    if (r.status === 'fulfilled')
      await destroyVm(deps, r.value.name, passOn(options, options.stateDir ?? DEFAULT_STATE_DIR)).catch(
        () => undefined,
      );
  throw failed.reason;
}
