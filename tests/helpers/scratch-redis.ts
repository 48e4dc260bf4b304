import { type ChildProcess, spawn } from 'node:child_process';
import { waitForOutput } from './context.js';

/**
 * A redis-server of the test file's own on 127.0.0.1:`port` that keeps nothing (no RDB, no AOF):
 * a test that stops Redis stops only its own. Resolves once it accepts connections.
 */
export async function startScratchRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout.on('data', () => undefined);
  await waitForOutput(child, /Ready to accept connections/);
  return child;
}
