// The commands over spec files alone — no host, no state, no libvirt: `validate` (every problem
// with its line, or Terraform-style JSON diagnostics) and `fmt` (canonical YAML; -check exits 3
// when a file is not, -diff shows how).
import { writeFileSync } from 'node:fs';
import { createTwoFilesPatch } from 'diff';
import { loadSpecFile, formatSpecText, readSpecText, SpecError, VirtwireError } from '../../lib/index.js';
import type { Ctx } from './program.js';
import { FORMAT_VERSION } from './formats.js';

/** Exit code of `fmt -check` when a file is not canonical (Terraform's). */
const EXIT_NOT_FORMATTED = 3;

export function validateCommand(ctx: Ctx, flags: { file?: string; json?: boolean }): number {
  if (!flags.file) throw new VirtwireError('SPEC_INVALID', 'a spec file is required: -f spec.yaml');
  let problems: SpecError['problems'] = [];
  let overlaps: string[] = [];
  try {
    overlaps = loadSpecFile(flags.file).overlaps ?? [];
  } catch (e) {
    if (!(e instanceof SpecError)) throw e;
    problems = e.problems;
  }
  if (flags.json) {
    const diagnostics = problems.map((p) => ({
      severity: 'error',
      summary: p.message,
      detail: `${p.path}: ${p.message}`,
      path: p.path,
      range: { filename: p.file ?? flags.file, start: { line: p.line ?? 1 } },
    }));
    const doc = {
      format_version: FORMAT_VERSION,
      valid: problems.length === 0,
      error_count: problems.length,
      // what virtwire does about tenants that overlap: valid, but worth knowing (Terraform's
      // diagnostics have errors and warnings only)
      warning_count: overlaps.length,
      diagnostics: [
        ...diagnostics,
        ...overlaps.map((note) => ({
          severity: 'warning',
          summary: note,
          detail: note,
          path: 'networks',
          range: { filename: flags.file, start: { line: 1 } },
        })),
      ],
    };
    console.log(JSON.stringify(doc, null, 2));
    return problems.length === 0 ? 0 : 1;
  }
  if (problems.length) throw new SpecError(problems, 'spec file');
  ctx.ui.out(ctx.ui.paint('Success! The spec file is valid.', 'green'));
  for (const note of overlaps) ctx.ui.out(`Note: ${note}`);
  return 0;
}

export function fmtCommand(
  ctx: Ctx,
  files: string[],
  flags: { check?: boolean; diff?: boolean; write?: boolean },
): number {
  if (files.length === 0)
    throw new VirtwireError('SPEC_INVALID', 'name the spec files to format: virtwire fmt spec.yaml ...');
  // every file read and formatted first: a syntax error in one writes none
  const results = files.map((file) => {
    const text = readSpecText(file);
    return { file, text, formatted: formatSpecText(text, file) };
  });
  const changed = results.filter((r) => r.formatted !== r.text);
  for (const r of changed) {
    ctx.ui.out(r.file);
    if (flags.diff) process.stdout.write(createTwoFilesPatch(`old/${r.file}`, `new/${r.file}`, r.text, r.formatted));
    if (!flags.check && flags.write !== false) writeFileSync(r.file, r.formatted);
  }
  return flags.check && changed.length > 0 ? EXIT_NOT_FORMATTED : 0;
}
