/**
 * How `npm run docs:check` reads a guide: its shell examples, split into commands, each with the
 * outcome the guide shows after it. The convention (also at the top of scripts/docs-check.ts and
 * in README's Development section):
 *
 * - Every ```sh block of README.md and docs/*.md is run, in the order of the page. A block opens
 *   with ```sh no-check to be shown but not run (say why in the text: it starts the platform
 *   itself, or runs for minutes).
 * - A command is a line and its `\` continuations. Comment lines before it are prose.
 * - Full-line comments right after a command (no blank line between) that look like an outcome
 *   are its expected outcome; any other comment is prose:
 *     `# HTTP/1.1 202 Accepted` or `# 202` …    the HTTP status of the command's (last) curl
 *     `# {"state":"completed",…}`, `# [ … ]`     a fragment of the output (`# 201 {…}`: both)
 *     `# location: /api/jobs/products-…`        a header line (with `curl -i`)
 *     `# exit 1`                                the command's exit code (default: 0)
 *     `# streams; the first frames:` + fragments  a stream: stopped after a few seconds, then checked
 *   In fragments `…` or `...` stand for anything, and so does `<word>` (`<uuid>`); whitespace is
 *   ignored; a trailing `<- note` is a note. Lines indented further (`#   {…}`) continue the one
 *   before.
 * - A curl that gets a status of 400 or more fails the check unless the outcome shows that status.
 * - `VAR=…` where the value holds a placeholder (`KEY=sf_…`) is the reader's to fill in: skipped.
 * - `A=1 B=2 npm start` in a ```sh no-check block: the page's instance starts with those settings.
 */

import { spawnSync } from 'node:child_process';

export interface Expectation {
  status?: number;
  exitCode: number;
  fragments: string[];
  headers: string[];
  stream: boolean;
}

export interface DocCommand {
  /** 1-based line in the page where the command starts. */
  line: number;
  text: string;
  expect: Expectation;
}

export interface DocBlock {
  line: number;
  commands: DocCommand[];
}

const outcomePattern =
  /^(HTTP\/\d(?:\.\d)? \d{3}\b|\d{3}\b|[[{]|[A-Za-z][A-Za-z0-9-]*: |exit \d+$|streams\b)/;
const placeholderAssignment = /^[A-Z_][A-Z0-9_]*=\S*(…|\.\.\.|<[^>]+>)/;

/** The ```sh blocks of a page that are to be run, each split into commands with their outcomes. */
export function extractBlocks(markdown: string): DocBlock[] {
  const lines = markdown.split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\S*)\s*(.*)$/.exec(lines[i]!);
    if (!fence) continue;
    const start = i;
    let end = i + 1;
    while (end < lines.length && !lines[end]!.startsWith('```')) end++;
    if ((fence[1] === 'sh' || fence[1] === 'bash') && !/\bno-check\b/.test(fence[2] ?? '')) {
      blocks.push({ line: start + 1, commands: splitCommands(lines.slice(start + 1, end), start + 2) });
    }
    i = end;
  }
  return blocks;
}

/** The settings a page starts the platform with: `VAR=value … npm start` lines of its sh blocks. */
export function startSettings(markdown: string): Record<string, string> {
  const settings: Record<string, string> = {};
  let inSh = false;
  for (const line of markdown.split('\n')) {
    const fence = /^```(\S*)/.exec(line);
    if (fence) {
      inSh = !inSh && (fence[1] === 'sh' || fence[1] === 'bash');
      continue;
    }
    const start = inSh ? /^\s*((?:[A-Z_][A-Z0-9_]*=[^\s'"`$]+\s+)+)npm start\s*(#.*)?$/.exec(line) : null;
    if (!start) continue;
    for (const [, name, value] of start[1]!.matchAll(/([A-Z_][A-Z0-9_]*)=(\S+)/g)) settings[name!] = value!;
  }
  return settings;
}

function splitCommands(lines: string[], firstLine: number): DocCommand[] {
  const commands: DocCommand[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === '' || line.trimStart().startsWith('#')) {
      i++;
      continue;
    }
    const start = i;
    const parts = [line];
    // A command goes on after a trailing backslash, while a quote is open and while a compound
    // command (`for … done`, `f() { … }`, `if … fi`) is unfinished.
    while (
      (parts[parts.length - 1]!.endsWith('\\') ||
        openQuote(parts.join('\n')) ||
        unfinished(parts.join('\n'))) &&
      i + 1 < lines.length
    ) {
      parts.push(lines[++i]!);
    }
    i++;
    const outcome: string[] = [];
    while (i < lines.length && lines[i]!.trimStart().startsWith('#')) outcome.push(lines[i++]!);
    const text = parts.join('\n');
    if (placeholderAssignment.test(text.trim())) continue;
    commands.push({ line: firstLine + start, text, expect: parseOutcome(outcome) });
  }
  return commands;
}

/**
 * Whether bash reads the text as the start of a command that goes on (a loop without its `done`,
 * a function without its `}`): `bash -n` then reports an unexpected end of file.
 */
function unfinished(text: string): boolean {
  if (!/\b(for|while|until|if|case|select|function)\b|[{(]\s*$|\(\)/.test(text)) return false;
  const check = spawnSync('bash', ['-n'], { input: `${text}\n`, encoding: 'utf8' });
  return check.status !== 0 && /unexpected end of file/.test(check.stderr);
}

/** Whether shell text ends inside a '…' or "…" string. */
function openQuote(text: string): boolean {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
    } else if (c === '\\') i++;
    else if (quote === '"') {
      if (c === '"') quote = undefined;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) {
      // A comment runs to the end of its line.
      const end = text.indexOf('\n', i);
      if (end < 0) break;
      i = end;
    }
  }
  return quote !== undefined;
}

/** The expected outcome from the comment lines after a command (continuation lines joined). */
export function parseOutcome(comments: string[]): Expectation {
  const expectation: Expectation = { exitCode: 0, fragments: [], headers: [], stream: false };
  const entries: string[] = [];
  let continuing = false;
  for (const comment of comments) {
    const body = comment.trimStart().replace(/^#/, '');
    const text = body.trim();
    const indented = /^\s{2,}/.test(body);
    if (continuing && indented && entries.length > 0) entries[entries.length - 1] += text;
    else if (outcomePattern.test(text)) {
      entries.push(text);
      continuing = true;
    } else continuing = false;
  }
  for (const raw of entries) {
    let entry = raw.replace(/\s+<-.*$/, '').trim();
    if (/^streams\b/.test(entry)) {
      expectation.stream = true;
      continue;
    }
    const exit = /^exit (\d+)$/.exec(entry);
    if (exit) {
      expectation.exitCode = Number(exit[1]);
      continue;
    }
    const status = /^(?:HTTP\/\d(?:\.\d)? )?(\d{3})\b(.*)$/.exec(entry);
    if (status) {
      expectation.status = Number(status[1]);
      entry = entry.startsWith('HTTP/') ? '' : status[2]!.trim();
      if (!entry) continue;
    }
    if (/^[A-Za-z][A-Za-z0-9-]*: /.test(entry)) expectation.headers.push(entry);
    else expectation.fragments.push(entry);
  }
  return expectation;
}

const wildcard = /…|\.\.\.|<[A-Za-z][\w-]*>/;

/** Whether `output` holds the fragment: its literal pieces (between wildcards) in order, whitespace ignored. */
export function matchesFragment(output: string, fragment: string): boolean {
  const squeeze = (s: string) => s.replace(/\s+/g, '');
  const haystack = squeeze(output);
  let at = 0;
  for (const piece of squeeze(fragment).split(new RegExp(wildcard.source, 'g'))) {
    if (!piece) continue;
    const found = haystack.indexOf(piece, at);
    if (found < 0) return false;
    at = found + piece.length;
  }
  return true;
}

/** Whether a header line such as `location: /api/jobs/products-…` is in a `curl -i` output. */
export function matchesHeader(output: string, header: string): boolean {
  const [name, ...rest] = header.split(':');
  const value = rest.join(':').trim();
  return output
    .split(/\r?\n/)
    .some(
      (line) =>
        line.toLowerCase().startsWith(`${name!.toLowerCase()}:`) &&
        matchesFragment(line.slice(name!.length + 1), value),
    );
}

/** What is wrong with a command's result against its expectation (empty: nothing). */
export function contradictions(
  expect: Expectation,
  result: { exitCode: number | null; stdout: string; statuses: number[]; timedOut: boolean },
): string[] {
  const problems: string[] = [];
  const exitOk = expect.stream
    ? result.timedOut || result.exitCode === expect.exitCode
    : result.exitCode === expect.exitCode;
  if (!exitOk) {
    problems.push(
      result.timedOut
        ? 'did not finish in time'
        : `exit code ${result.exitCode}, expected ${expect.exitCode}`,
    );
  }
  const last = result.statuses[result.statuses.length - 1];
  if (expect.status !== undefined && last !== expect.status)
    problems.push(`HTTP ${last ?? 'none'}, the page shows ${expect.status}`);
  const failed = result.statuses.filter((s) => s >= 400 && s !== expect.status);
  if (failed.length > 0) problems.push(`HTTP ${failed.join(', ')} (an error the page does not show)`);
  for (const fragment of expect.fragments)
    if (!matchesFragment(result.stdout, fragment)) problems.push(`output lacks ${fragment}`);
  for (const header of expect.headers)
    if (!matchesHeader(result.stdout, header)) problems.push(`no header ${header}`);
  return problems;
}

/**
 * The fixed ports the pages give the processes they start themselves: a second web process
 * (docs/orders.md, :3001) and the mock supplier (docs/reordering.md, :4010). Each page run moves
 * them to spare ports, in the commands and back in what they print, so the reader sees the
 * page's numbers and two checks on one machine never collide.
 */
export const examplePorts = [3001, 4010];

/** Page port → the spare port this page run uses instead (3000 is the instance's). */
export type PortMap = Map<number, number>;

/** `localhost:3001`, `127.0.0.1:4010`, `PORT=3001`, `--port 4010`: the page's ports, as the run's. */
export function toRunPorts(text: string, ports: PortMap): string {
  let out = text;
  for (const [page, run] of ports) {
    out = out
      .replace(new RegExp(`(localhost|127\\.0\\.0\\.1):${page}\\b`, 'g'), `127.0.0.1:${run}`)
      .replace(new RegExp(`(\\bPORT=|--port[ =])${page}\\b`, 'g'), `$1${run}`);
  }
  return out;
}

/** What a command printed, with the run's example ports named as the page names them. */
export function toPagePorts(text: string, ports: PortMap): string {
  let out = text;
  for (const [page, run] of ports) {
    if (page === 3000) continue;
    out = out.replace(new RegExp(`:${run}\\b`, 'g'), `:${page}`);
  }
  return out;
}
