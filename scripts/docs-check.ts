/**
 * `npm run docs:check`: runs every shell example of README.md and docs/*.md against a real
 * instance, in the order a reader pastes them, and fails when a command errors or its output
 * contradicts the outcome the page shows after it.
 *
 * Each page gets a fresh instance of its own (`scripts/start.ts`: web and every worker in one
 * process, like `npm start`) on a scratch database, a spare port, a private queue prefix and its
 * own media directory, all removed afterwards; README.md runs first, then docs/*.md in name
 * order, so a new guide is picked up by itself. The page's commands run one after the other in
 * one bash session (variables carry over) in a scratch working directory, with `KEY` set to an
 * admin key of that instance, the instance's settings exported (so `npm run keys`, `reconcile`
 * and `replay` see the same database), `localhost:3000` pointed at the instance's port, the
 * ports a page gives the processes it starts itself (`examplePorts`) moved to spare ones, `npm`
 * and `npx` run in the repository and `node` able to `require` the project's packages. When the
 * page starts the platform with settings (`SUPPLIER_ALLOW_PRIVATE_TARGETS=true npm start`, in a
 * no-check block), its instance gets them too.
 *
 * The convention for examples (see scripts/docs-check-blocks.ts for the details):
 * - ```sh blocks run; ```sh no-check blocks are shown only (the page says why).
 * - After a command, full-line comments that look like an outcome are checked:
 *   `# HTTP/1.1 202 Accepted` / `# 202` (status of its curl), `# {"state":"completed",…}` (a JSON
 *   fragment; `…` and `<word>` stand for anything), `# location: /api/jobs/…` (a header with
 *   curl -i), `# exit 1` (exit code; default 0), `# streams` (stopped after a few seconds).
 *   Other comments are prose.
 * - Any curl answer of 400 or more fails unless the page shows that status.
 * - A GET whose output does not match yet is polled for up to 20 s (jobs finish
 *   asynchronously), as a reader would look again.
 *
 * Usage: npm run docs:check [-- README.md docs/inventory.md]   (default: every page)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../src/config.js';
import { deleteScratchKeys, dropScratchDatabase, freePort } from './bench/scratch.js';
import {
  contradictions,
  type DocCommand,
  examplePorts,
  extractBlocks,
  type PortMap,
  startSettings,
  toPagePorts,
  toRunPorts,
} from './docs-check-blocks.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const commandTimeoutMs = 120_000;
const streamMs = 3000;
/**
 * How long a GET that does not match yet is looked at again. It returns as soon as the state
 * shows; the bound is for a loaded machine, where a scheduler run or a retry may come late.
 */
const pollMs = 20_000;

async function spareExamplePorts(instancePort: number): Promise<PortMap> {
  const map: PortMap = new Map([[3000, instancePort]]);
  for (const port of examplePorts) map.set(port, await freePort());
  return map;
}

interface Outcome {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  statuses: number[];
  timedOut: boolean;
}

/** Every page, README first: a guide added to docs/ is checked without being listed anywhere. */
async function pages(requested: string[]): Promise<string[]> {
  if (requested.length > 0) return requested;
  const docs = (await readdir(path.join(repoRoot, 'docs'))).filter((f) => f.endsWith('.md')).sort();
  return ['README.md', ...docs.map((f) => `docs/${f}`)];
}

interface Instance {
  env: Record<string, string>;
  port: number;
  key: string;
  stop(): Promise<void>;
}

async function startInstance(scratch: string, settings: Record<string, string>): Promise<Instance> {
  const id = randomBytes(4).toString('hex');
  const base = parseConfig(process.env);
  const databaseUrl = new URL(base.DATABASE_URL);
  databaseUrl.pathname = `/stockflow_docs_${id}`;
  const port = await freePort();
  const env: Record<string, string> = {
    DATABASE_URL: databaseUrl.toString(),
    REDIS_URL: base.REDIS_URL,
    QUEUE_PREFIX: `docs-${id}`,
    HOST: '127.0.0.1',
    PORT: String(port),
    MEDIA_DIR: path.join(scratch, 'media'),
    // info: the line `npm start` logs once its workers run is what a reader waits for (below).
    LOG_LEVEL: 'info',
    LOG_PRETTY: 'false',
    // What the page tells the reader to start with (`SUPPLIER_ALLOW_PRIVATE_TARGETS=true npm start`).
    ...settings,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const cleanup = async () => {
    await dropScratchDatabase(env.DATABASE_URL!).catch(() => undefined);
    await deleteScratchKeys(env.REDIS_URL!, env.QUEUE_PREFIX!).catch(() => undefined);
  };
  try {
    const key = await waitForKey(child, () => output);
    await waitForPort(port, child);
    await waitForRunning(child, () => output);
    return {
      env,
      port,
      key,
      async stop() {
        await stopChild(child);
        await cleanup();
      },
    };
  } catch (error) {
    await stopChild(child);
    await cleanup();
    throw error;
  }
}

async function waitForKey(child: ChildProcess, output: () => string): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const key = /^\s+(sf_[A-Za-z0-9_-]+)\s*$/m.exec(output())?.[1];
    if (key) return key;
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the instance did not start:\n${output().slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The web port answers before the workers run (and queue their start-up work, such as warming
 * the cache); a reader starts pasting once `npm start` says it is running, a moment after it
 * printed the key, and so does the check (a second: the start-up jobs queued by then have run).
 */
async function waitForRunning(child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!output().includes('Stockflow is running')) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`the instance never said it was running:\n${output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 1000));
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const up = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) return;
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`the instance never listened on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/**
 * One bash session for a page: commands arrive as files to `source` (so assignments persist);
 * each answers with its exit code on a marker line. `curl` reports every HTTP status it received
 * on stderr, which is how a status is checked without changing what the command prints.
 */
class Session {
  private readonly child: ChildProcess;
  private buffer = { stdout: '', stderr: '' };
  private n = 0;

  constructor(
    private readonly dir: string,
    env: Record<string, string>,
  ) {
    this.child = spawn('bash', ['--noprofile', '--norc'], {
      cwd: dir,
      env: {
        ...process.env,
        ...env,
        NODE_PATH: path.join(repoRoot, 'node_modules'),
        REPO: repoRoot,
        PATH: `${path.join(repoRoot, 'node_modules/.bin')}:${process.env.PATH}`,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (c: Buffer) => {
      this.buffer.stdout += c.toString();
    });
    this.child.stderr!.on('data', (c: Buffer) => {
      this.buffer.stderr += c.toString();
    });
    this.child.stdin!.write(
      [
        // Every assignment is exported: a stream's time-limited subshell sees the page's variables.
        'set -a',
        // Headers go to a file of their own (-D), so a page's own -w / -o / -i are untouched.
        'curl() { local h; h=$(mktemp); command curl -D "$h" "$@"; local rc=$?;',
        '  sed -n \'s/^HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/<<http-status \\1>>/p\' "$h" >&2; rm -f "$h"; return $rc; }',
        `npm() { (cd "$REPO" && command npm "$@"); }`,
        `npx() { (cd "$REPO" && command npx "$@"); }`,
        '',
      ].join('\n'),
    );
  }

  async run(command: DocCommand, ports: PortMap): Promise<Outcome> {
    const text = toRunPorts(command.text, ports);
    const file = path.join(this.dir, `.command-${++this.n}.sh`);
    await writeFile(file, `${text}\n`);
    const marker = `<<done ${this.n} `;
    this.buffer = { stdout: '', stderr: '' };
    // A stream runs in a subshell with a time limit (timeout's 124: stopped as planned).
    const line = command.expect.stream
      ? `timeout ${streamMs / 1000} bash -c "$(declare -f curl); source ${file}"`
      : `source ${file}`;
    this.child.stdin!.write(`${line} </dev/null; echo "${marker}$?>>"; echo "${marker}>>" >&2\n`);
    const deadline = Date.now() + commandTimeoutMs;
    while (!(this.buffer.stdout.includes(marker) && this.buffer.stderr.includes(marker))) {
      if (Date.now() > deadline || this.child.exitCode !== null) {
        return {
          exitCode: null,
          stdout: this.buffer.stdout,
          stderr: this.buffer.stderr,
          statuses: [],
          timedOut: true,
        };
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const stdout = toPagePorts(this.buffer.stdout.slice(0, this.buffer.stdout.indexOf(marker)), ports);
    const code = Number(new RegExp(`${marker}(\\d+)>>`).exec(this.buffer.stdout)?.[1]);
    const rawErr = this.buffer.stderr.slice(0, this.buffer.stderr.indexOf(marker));
    const statuses = [...rawErr.matchAll(/<<http-status (\d{3})>>/g)].map((m) => Number(m[1]));
    const stderr = rawErr.replace(/\n?<<http-status \d{3}>>\n?/g, '');
    const timedOut = command.expect.stream && code === 124;
    return { exitCode: timedOut ? command.expect.exitCode : code, stdout, stderr, statuses, timedOut };
  }

  close(): void {
    this.child.stdin!.end('exit\n');
  }
}

const isGet = (text: string) =>
  /^\s*curl\b/.test(text) && !/\s(-X|--request|-d|--data\S*|-F|--form)\b/.test(text);

async function checkPage(page: string): Promise<{ passed: number; failed: number }> {
  const markdown = await readFile(path.join(repoRoot, page), 'utf8');
  const blocks = extractBlocks(markdown);
  const commands = blocks.flatMap((b) => b.commands);
  console.log(`\n${page}: ${commands.length} command(s) in ${blocks.length} block(s)`);
  if (commands.length === 0) return { passed: 0, failed: 0 };
  const scratch = await mkdtemp(path.join(tmpdir(), 'stockflow-docs-'));
  await mkdir(path.join(scratch, 'work'));
  const instance = await startInstance(scratch, startSettings(markdown));
  const session = new Session(path.join(scratch, 'work'), { ...instance.env, KEY: instance.key });
  const ports = await spareExamplePorts(instance.port);
  let passed = 0;
  let failed = 0;
  try {
    for (const command of commands) {
      let outcome = await session.run(command, ports);
      let problems = contradictions(command.expect, outcome);
      // A GET is a look at something that may still be on its way: look again for a while.
      const until = Date.now() + pollMs;
      while (problems.length > 0 && isGet(command.text) && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 250));
        outcome = await session.run(command, ports);
        problems = contradictions(command.expect, outcome);
      }
      const first = command.text.split('\n')[0]!.slice(0, 110);
      if (problems.length === 0) {
        passed++;
        console.log(`  ok    ${page}:${command.line}  ${first}`);
        continue;
      }
      failed++;
      console.log(`  FAIL  ${page}:${command.line}  ${first}`);
      for (const problem of problems) console.log(`          ${problem}`);
      console.log(`          stdout: ${outcome.stdout.trim().slice(0, 600) || '(empty)'}`);
      if (outcome.stderr.trim()) console.log(`          stderr: ${outcome.stderr.trim().slice(0, 600)}`);
      if (outcome.timedOut && !command.expect.stream) break;
    }
  } finally {
    session.close();
    await instance.stop();
    await rm(scratch, { recursive: true, force: true });
  }
  return { passed, failed };
}

/**
 * The pages start from `npm start`, which builds dist/ first: `npm run web`, `worker`, `keys`,
 * `reconcile` and `replay` in an example run that build, so the check makes it once too.
 */
async function build(): Promise<void> {
  const child = spawn('npm', ['run', '-s', 'build'], {
    cwd: repoRoot,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`npm run build failed (exit ${code})`);
}

async function main(): Promise<void> {
  let passed = 0;
  let failed = 0;
  await build();
  for (const page of await pages(process.argv.slice(2))) {
    const result = await checkPage(page);
    passed += result.passed;
    failed += result.failed;
  }
  console.log(`\ndocs:check: ${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((error: unknown) => {
  console.error(`docs:check could not run: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(2);
});
