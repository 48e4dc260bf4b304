/**
 * Reads until `ok` holds, every `pauseMs`, for at most `timeoutMs`; fails naming `what` and the
 * last value read. A read that throws counts as not yet (a service coming back, say).
 */
export async function until<T>(
  what: string,
  read: () => T | Promise<T>,
  ok: (value: T) => boolean,
  timeoutMs = 20_000,
  pauseMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let value: T | undefined;
    try {
      value = await read();
      if (ok(value)) return value;
    } catch {}
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(value)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}
