import { describe, expect, it } from 'vitest';
import {
  contradictions,
  extractBlocks,
  matchesFragment,
  startSettings,
  toPagePorts,
  toRunPorts,
} from '../../scripts/docs-check-blocks.js';

const page = [
  'Text.',
  '```sh',
  '# prose before a command',
  "curl -si localhost:3000/x -H 'a: b' \\",
  '  -d \'{"a":1}\'',
  '# HTTP/1.1 202 Accepted',
  '# location: /api/jobs/products-…',
  '# {"id":"products-…","state":"waiting"}   <- a note',
  '',
  'KEY=sf_…   # the reader fills this in',
  'curl -s localhost:3000/y -d \'{"lines":[',
  '  {"a":1}]}\'',
  '# 409 {"code":"insufficient_stock",…,"lines":[',
  '#   {"index":0,…}]}',
  'npm run reconcile   # prose on the same line',
  '# exit 1',
  '# and this is prose',
  'for SKU in A B; do',
  '  echo "$SKU"',
  'done',
  'sign() {  # a function',
  '  printf \'%s\' "$1"',
  '}',
  '```',
  '```sh no-check',
  'npm run bench',
  '```',
  '```js',
  'not shell',
  '```',
].join('\n');

describe('docs:check reading a page', () => {
  const blocks = extractBlocks(page);

  it('takes sh blocks only, splits commands (continuations, open quotes) and skips placeholders', () => {
    expect(blocks).toHaveLength(1);
    const commands = blocks[0]!.commands;
    expect(commands.map((c) => c.line)).toEqual([4, 11, 15, 18, 21]);
    expect(commands[1]!.text).toContain('{"a":1}]}');
    expect(commands[3]!.text.split('\n')).toHaveLength(3);
    expect(commands[4]!.text.endsWith('}')).toBe(true);
  });

  it('reads the outcome after each command', () => {
    const [first, second, third] = blocks[0]!.commands;
    expect(first!.expect).toEqual({
      status: 202,
      exitCode: 0,
      headers: ['location: /api/jobs/products-…'],
      fragments: ['{"id":"products-…","state":"waiting"}'],
      stream: false,
    });
    expect(second!.expect.status).toBe(409);
    expect(second!.expect.fragments).toEqual(['{"code":"insufficient_stock",…,"lines":[{"index":0,…}]}']);
    expect(third!.expect).toMatchObject({ exitCode: 1, fragments: [] });
  });

  it('matches fragments with wildcards, in order, ignoring whitespace', () => {
    expect(
      matchesFragment('{"id": "products-12ab", "state":"waiting"}', '{"id":"products-…","state":"waiting"}'),
    ).toBe(true);
    expect(matchesFragment('{"state":"waiting","id":"x"}', '{"id":"…","state":"waiting"}')).toBe(false);
    expect(matchesFragment('{"id":"9f1c"}', '{"id":"<uuid>"}')).toBe(true);
  });

  it('fails an error status the page does not show, and a wrong exit code', () => {
    const expect202 = blocks[0]!.commands[0]!.expect;
    expect(contradictions(expect202, { exitCode: 0, stdout: '', statuses: [404], timedOut: false })).toEqual(
      expect.arrayContaining(['HTTP 404, the page shows 202', 'HTTP 404 (an error the page does not show)']),
    );
    const exit1 = blocks[0]!.commands[2]!.expect;
    expect(contradictions(exit1, { exitCode: 1, stdout: '', statuses: [], timedOut: false })).toEqual([]);
    expect(contradictions(exit1, { exitCode: 0, stdout: '', statuses: [], timedOut: false })).toEqual([
      'exit code 0, expected 1',
    ]);
  });

  it('starts the instance with the settings the page starts npm start with', () => {
    const settings = startSettings(
      [
        '```sh no-check',
        'SUPPLIER_ALLOW_PRIVATE_TARGETS=true A_B=1 npm start   # terminal 2',
        '```',
        'X=1 npm start',
      ].join('\n'),
    );
    expect(settings).toEqual({ SUPPLIER_ALLOW_PRIVATE_TARGETS: 'true', A_B: '1' });
    expect(startSettings(page)).toEqual({});
  });
});

describe('example ports', () => {
  const ports = new Map([
    [3000, 41000],
    [3001, 41001],
    [4010, 41010],
  ]);

  it('moves every form of a page port to the run port', () => {
    const text =
      'INBOUND_WEBHOOK_SECRET="$S" PORT=3001 npm run web &\n' +
      'npx tsx scripts/mock-supplier.ts --port 4010 &\n' +
      'curl -s localhost:3001/readyz http://127.0.0.1:4010/x localhost:3000/y -d \'{"q":30010}\'';
    expect(toRunPorts(text, ports)).toBe(
      'INBOUND_WEBHOOK_SECRET="$S" PORT=41001 npm run web &\n' +
        'npx tsx scripts/mock-supplier.ts --port 41010 &\n' +
        'curl -s 127.0.0.1:41001/readyz http://127.0.0.1:41010/x 127.0.0.1:41000/y -d \'{"q":30010}\'',
    );
  });

  it('shows what a command printed with the page ports, and leaves the instance port alone', () => {
    expect(toPagePorts('{"apiUrl":"http://127.0.0.1:41010/po","n":410100,"self":":41000"}', ports)).toBe(
      '{"apiUrl":"http://127.0.0.1:4010/po","n":410100,"self":":41000"}',
    );
  });
});
