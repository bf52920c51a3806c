// The CLI's spec file: YAML or JSON with the library's own types. `networks:` is a list of
// NetworkSpec; `vms:` a list of VmSpec whose NICs may name their network by tenant. Every
// problem — YAML syntax, unknown keys, types, validation, duplicates, overlapping subnets — is
// reported together, each with its line in the file.
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import { SpecError, type SpecProblem } from '../errors/index.js';
import { Problems, resolveSpecDocument, type SpecFile } from '../spec/index.js';

export type { SpecFile };

export function loadSpecFile(file: string): SpecFile {
  return parseSpecText(readSpecText(file), file);
}

/** A spec file's text, or a SpecError naming the file when it cannot be read. */
export function readSpecText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new SpecError(
      [{ path: '(file)', message: `cannot read ${file}: ${(cause as Error).message}`, file }],
      'spec file',
    );
  }
}

export function parseSpecText(text: string, file = 'spec.yaml'): SpecFile {
  const { doc, lines } = parseYaml(text, file);
  const input = doc.toJS() as unknown;
  const p = new Problems();
  const result = resolveSpecDocument(p, input);
  if (!p.empty)
    throw new SpecError(
      p.list.map((problem) => locate(problem, doc, lines, file)),
      'spec file',
    );
  return result!;
}

/**
 * A spec file's canonical text (`virtwire fmt`): two-space indents, lists indented under their
 * key, no line folding, one space inside flow braces; comments, key order and the choice of
 * block or flow style are the author's and stay. Formatting it again changes nothing.
 */
export function formatSpecText(text: string, file = 'spec.yaml'): string {
  const { doc } = parseYaml(text, file);
  return doc.toString({ indent: 2, indentSeq: true, lineWidth: 0, flowCollectionPadding: true });
}

/** The YAML document, or a SpecError naming each syntax error's line. */
function parseYaml(text: string, file: string): { doc: Document; lines: LineCounter } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new SpecError(
      doc.errors.map((e) => ({
        path: '(syntax)',
        message: e.message.split('\n')[0]!,
        file,
        line: lines.linePos(e.pos[0]).line,
      })),
      'spec file',
    );
  }
  return { doc, lines };
}

/** `vms[0].nics[1].qos` -> ['vms', 0, 'nics', 1, 'qos'] */
function pathKeys(path: string): (string | number)[] {
  const keys: (string | number)[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) keys.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return keys;
}

/** The problem with its file and the line of the nearest node its path reaches. */
function locate(problem: SpecProblem, doc: Document, lines: LineCounter, file: string): SpecProblem {
  const keys = pathKeys(problem.path);
  for (let n = keys.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(keys.slice(0, n), true);
    if (isNode(node) && node.range) return { ...problem, file, line: lines.linePos(node.range[0]).line };
  }
  return { ...problem, file };
}
