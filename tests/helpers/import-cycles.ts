import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The import graph of a folder's TypeScript files and its cycles. Every kind of import counts,
 * type-only ones too (they still tie two modules together): `import … from`, `export … from` and
 * `import('…')`, with relative specifiers resolved as Node resolves them (`.js` → `.ts`, folders
 * to their `index.ts`).
 */
export type ImportGraph = Map<string, string[]>;

/** The graph of every `.ts` file under `dir` (relative to `root`), keyed by repository path. */
export function importGraph(root: string, dir: string): ImportGraph {
  const files: string[] = [];
  const walk = (relative: string) => {
    for (const entry of readdirSync(path.join(root, relative), { withFileTypes: true })) {
      const child = path.posix.join(relative, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) files.push(child);
    }
  };
  walk(dir);
  const known = new Set(files);
  const resolve = (from: string, specifier: string) => {
    if (!specifier.startsWith('.')) return undefined;
    const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
    return [base, base.replace(/\.js$/, '.ts'), `${base}.ts`, `${base}/index.ts`].find((c) => known.has(c));
  };
  const specifiers = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  return new Map(
    files.map((file) => {
      const text = readFileSync(path.join(root, file), 'utf8');
      const targets = [...text.matchAll(specifiers)].flatMap((m) => resolve(file, (m[1] ?? m[2])!) ?? []);
      return [file, [...new Set(targets)].filter((target) => target !== file)];
    }),
  );
}

/**
 * The import cycles of `graph`: its strongly connected components of more than one file
 * (Tarjan), each sorted, so a knot of several cycles is reported once.
 */
export function importCycles(graph: ImportGraph): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (file: string) => {
    index.set(file, next);
    low.set(file, next);
    next += 1;
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file)!, low.get(target)!));
      } else if (onStack.has(target)) low.set(file, Math.min(low.get(file)!, index.get(target)!));
    }
    if (low.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    if (component.length > 1) cycles.push(component.sort());
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  return cycles;
}
