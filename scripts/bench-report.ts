import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { benchDir, benchOutDir, readResults } from './bench/results.js';
import { renderHtml, renderMarkdown, sectionsOf } from './bench/results-page.js';

/**
 * `npm run bench:report`: renders bench/results.md and bench/results.html from the result files of
 * bench/out (each benchmark writes its own; `npm run bench` runs them all, then this). Re-renders
 * from whatever files exist; the benchmarks without one are listed as missing.
 */
const results = readResults(benchOutDir);
const { sections, missing } = sectionsOf(results);
console.log(`bench report: ${sections.map((s) => s.id).join(', ') || 'no results'} from ${benchOutDir}`);
if (missing.length) console.log(`no result file yet for: ${missing.join(', ')}`);
const now = new Date();
const md = path.join(benchDir, 'results.md');
const html = path.join(benchDir, 'results.html');
writeFileSync(md, renderMarkdown(results, now));
writeFileSync(html, renderHtml(results, now));
console.log(`wrote ${path.relative(process.cwd(), md)} and ${path.relative(process.cwd(), html)}`);
