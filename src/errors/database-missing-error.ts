import { redactUrl } from '../log.js';

/** The server answered, but the database DATABASE_URL names does not exist on it. */
export class DatabaseMissingError extends Error {
  constructor(readonly url: string) {
    super(
      `The database ${databaseName(url)} does not exist on the PostgreSQL server at ${redactUrl(url)}.\n` +
        'Create it and its tables with `npm run migrate` (`npm start` does this too), or point DATABASE_URL at an existing database.',
    );
    this.name = 'DatabaseMissingError';
  }
}

const databaseName = (url: string) => {
  try {
    return `"${decodeURIComponent(new URL(url).pathname.slice(1))}"`;
  } catch {
    return '(unparseable url)';
  }
};
