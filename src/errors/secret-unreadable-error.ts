/** Where a sealed value cannot be opened: wrong or unknown key, or a tampered value. */
export class SecretUnreadableError extends Error {
  constructor(reason: string) {
    super(`A stored secret cannot be opened: ${reason}`);
    this.name = 'SecretUnreadableError';
  }
}
