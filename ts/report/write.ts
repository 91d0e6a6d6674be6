// Writes a report directory: report.json, report.md, report.html (self-contained, no script, no
// network) and report.png (the main figure). Everything is rendered before the first file is
// written, and each file is replaced atomically.
import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import writeFileAtomic from 'write-file-atomic';
import {
  classLabels,
  confusionSvg,
  lossCurvesSvg,
  recallBarsSvg,
  recallVsCountSvg,
  uniqueNames,
  type ChartOptions,
} from './charts';
import {
  reportMeta,
  reportSections,
  runShots,
  validateReport,
  type RunShots,
  type Section,
  type Table,
} from './tables';
import type { Report } from './types';
import { makeDir } from '../train/run-lock';

export const REPORT_FILES = Object.freeze({
  json: 'report.json',
  md: 'report.md',
  html: 'report.html',
  png: 'report.png',
});

export interface ReportPaths {
  json: string;
  md: string;
  html: string;
  png: string;
}

/** What report.json holds: the Report itself plus each run's shot split, in run order. */
export interface ReportJson extends Report {
  shots: RunShots[];
}

export interface Figure {
  id: string;
  title: string;
  caption: string;
  svg: string;
}

export interface WriteReportOptions extends ChartOptions {
  /**
   * runs (index or name) whose confusion matrix is drawn; by default every run when there are at
   * most four, else the last one
   */
  confusionRuns?: (number | string)[];
  /** least width of report.png in pixels (default 1000; a wider main figure keeps its size) */
  pngWidth?: number;
}

export function reportJson(report: Report, shots: RunShots[] = runShots(report)): ReportJson {
  return { ...report, shots };
}

// ---------------------------------------------------------------------------------------------
// Figures

function confusionIndices(report: Report, chosen?: (number | string)[]): number[] {
  if (chosen === undefined) {
    const n = report.runs.length;
    return n <= 4 ? report.runs.map((_, i) => i) : [n - 1];
  }
  const indices = chosen.map((which) => {
    const i = typeof which === 'number' ? which : report.runs.findIndex((r) => r.name === which);
    if (!Number.isInteger(i) || i < 0 || i >= report.runs.length) {
      throw new RangeError(`report: no run ${JSON.stringify(which)} to draw a confusion matrix of`);
    }
    return i;
  });
  return [...new Set(indices)];
}

/** Whether the main figure is the loss curves (a single run with epochs) or the recall bars. */
function curvesFirst(report: Report): boolean {
  return report.runs.length === 1 && report.runs[0].history.length > 0;
}

/** Every figure of the report, the main one (the one report.png shows) first. */
export async function renderFigures(
  report: Report,
  options: WriteReportOptions = {},
): Promise<Figure[]> {
  validateReport(report);
  const chart: ChartOptions = { onWarning: options.onWarning };
  const names = uniqueNames(report.runs.map((r) => r.name));
  const labels = classLabels(report.classNames, report.runs[0].eval);
  const focus =
    report.focusClass === undefined
      ? ''
      : ` The shaded class, ${labels[report.focusClass]}, is the focus class.`;
  const hasEpochs = report.runs.some((r) => r.history.length > 0);

  const [recall, curves, vsCount, ...confusions] = await Promise.all([
    recallBarsSvg(report.runs, report.classNames, report.focusClass, chart),
    hasEpochs ? lossCurvesSvg(report.runs, chart) : Promise.resolve(undefined),
    recallVsCountSvg(report.runs, report.classNames, report.focusClass, chart),
    ...confusionIndices(report, options.confusionRuns).map((i) =>
      confusionSvg(
        report.runs[i].eval,
        report.classNames,
        `Confusion matrix: ${names[i]}`,
        chart,
      ).then((svg) => ({ i, svg })),
    ),
  ]);
  const recallFigure: Figure = {
    id: 'fig-recall',
    title: 'Per-class test recall',
    caption: `Test recall of each class, one bar per run.${focus}`,
    svg: recall,
  };
  const curvesFigure: Figure | undefined =
    curves === undefined
      ? undefined
      : {
          id: 'fig-curves',
          title: 'Loss and accuracy by epoch',
          caption:
            'Training loss (left); test accuracy, solid, and training accuracy, dashed (right).',
          svg: curves,
        };
  const figures: Figure[] =
    curvesFirst(report) && curvesFigure
      ? [curvesFigure, recallFigure]
      : [recallFigure, ...(curvesFigure ? [curvesFigure] : [])];
  figures.push({
    id: 'fig-recall-vs-count',
    title: 'Recall against training images',
    caption:
      'Test recall of each class against its number of training images (log scale); a class with none is drawn at 1.',
    svg: vsCount,
  });
  for (const { i, svg } of confusions) {
    figures.push({
      id: `fig-confusion-${i}`,
      title: `Confusion matrix: ${names[i]}`,
      caption:
        'Rows are true classes, columns predictions; colour is the share of the row, text the count.',
      svg,
    });
  }
  return figures;
}

/**
 * Renders an SVG document to PNG at least `width` pixels wide. A narrower figure is rasterised at
 * a higher density (librsvg draws the vectors at that scale: nothing is upscaled); a wider one
 * keeps its own size, so that its text never shrinks below the size it was laid out at.
 */
export async function svgToPng(svg: string, width = 1000): Promise<Buffer> {
  const input = Buffer.from(svg);
  // at sharp's default 72 dpi one SVG unit is one pixel
  const natural = (await sharp(input).metadata()).width;
  const scale = natural !== undefined && natural > 0 ? Math.max(1, width / natural) : 1;
  return sharp(input, { density: 72 * scale })
    .png({ compressionLevel: 9 })
    .toBuffer();
}

// ---------------------------------------------------------------------------------------------
// Markdown

/**
 * Escapes text for a Markdown paragraph or table cell: no markup, no column breaks, and no HTML
 * (`&`, `<` and `>` as entities, which every renderer shows as text; a backslash before `<` is
 * not honoured by all of them).
 */
export function escapeMarkdown(text: string): string {
  return text
    .replace(/[&<>]/g, (ch) => (ch === '&' ? '&amp;' : ch === '<' ? '&lt;' : '&gt;'))
    .replace(/[\\`*_[\]|]/g, (ch) => `\\${ch}`)
    .replace(/^#/, '\\#')
    .replace(/\r?\n/g, ' ');
}

function markdownTable(table: Table): string[] {
  const cell = (text: string, strong: boolean) => {
    const t = escapeMarkdown(text);
    return strong && t !== '' ? `**${t}**` : t;
  };
  const strong = new Set(table.strong ?? []);
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [
    ...(table.caption ? [`**${escapeMarkdown(table.caption)}**`, ''] : []),
    line(table.header.map((h) => cell(h, false))),
    line(table.align.map((a) => (a === 'right' ? '---:' : '---'))),
    ...table.rows.map((row, i) => line(row.map((c) => cell(c, strong.has(i))))),
  ];
}

export function reportMarkdown(
  report: Report,
  sections: Section[] = reportSections(report),
): string {
  validateReport(report);
  const out: string[] = [
    `# ${escapeMarkdown(report.title)}`,
    '',
    reportMeta(report).map(escapeMarkdown).join(' · '),
    '',
  ];
  const main = curvesFirst(report) ? 'Loss and accuracy by epoch' : 'Per-class test recall';
  for (const s of sections) {
    out.push(`## ${escapeMarkdown(s.heading)}`, '');
    for (const p of s.paragraphs ?? []) out.push(escapeMarkdown(p), '');
    if (s.list) {
      for (const item of s.list) out.push(`- ${escapeMarkdown(item)}`);
      out.push('');
    }
    for (const t of s.tables ?? []) out.push(...markdownTable(t), '');
    if (s.id === 'runs') out.push(`![${main}](${REPORT_FILES.png})`, '');
  }
  return out.join('\n').replace(/\n+$/, '\n');
}

// ---------------------------------------------------------------------------------------------
// HTML

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/**
 * Prepares a standalone SVG document for inlining in HTML: the namespace declarations go (the
 * HTML parser puts <svg> in the SVG namespace itself) and every id is prefixed, so that the clip
 * paths and gradients of two figures cannot collide.
 */
export function inlineSvg(svg: string, prefix: string): string {
  const ids = new Set(Array.from(svg.matchAll(/\sid="([^"]+)"/g), (m) => m[1]));
  const local = (id: string) => (ids.has(id) ? `${prefix}-${id}` : id);
  return svg
    .replace(/^<\?xml[^>]*>\s*/, '')
    .replace(/\s+xmlns(?::\w+)?="[^"]*"/g, '')
    .replace(/(\sid=")([^"]+)"/g, (_, head: string, id: string) => `${head}${local(id)}"`)
    .replace(/url\(#([^)]+)\)/g, (_, id: string) => `url(#${local(id)})`)
    .replace(/(href=")#([^"]+)"/g, (_, head: string, id: string) => `${head}#${local(id)}"`);
}

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f7f9; color: #1f2328;
  font: 15px/1.5 "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif; }
main { max-width: 1160px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.2em; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e4e6ea; }
.meta { color: #59636e; margin: 0 0 16px; }
ul.findings li { margin: 4px 0; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.92em; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e6ea; vertical-align: top; }
th { background: #f0f2f5; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td:first-child { white-space: nowrap; }
tr.focus td { background: #fef3c7; font-weight: bold; }
figure { margin: 16px 0 24px; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #59636e; font-size: 0.9em; margin-top: 4px; }
details summary { cursor: pointer; color: #0b5cad; margin: 8px 0; }
.table-wrap { overflow-x: auto; }
`;

function htmlTable(table: Table): string {
  const strong = new Set(table.strong ?? []);
  const cls = (i: number) => (table.align[i] === 'right' ? ' class="num"' : '');
  return [
    '<div class="table-wrap"><table>',
    table.caption ? `<caption>${escapeHtml(table.caption)}</caption>` : '',
    `<thead><tr>${table.header.map((h, i) => `<th${cls(i)}>${escapeHtml(h)}</th>`).join('')}</tr></thead>`,
    '<tbody>',
    ...table.rows.map(
      (row, r) =>
        `<tr${strong.has(r) ? ' class="focus"' : ''}>${row
          .map((c, i) => `<td${cls(i)}>${escapeHtml(c)}</td>`)
          .join('')}</tr>`,
    ),
    '</tbody></table></div>',
  ].join('\n');
}

function htmlFigure(f: Figure): string {
  return [
    `<figure id="${escapeHtml(f.id)}">`,
    inlineSvg(f.svg, f.id),
    `<figcaption><strong>${escapeHtml(f.title)}.</strong> ${escapeHtml(f.caption)}</figcaption>`,
    '</figure>',
  ].join('\n');
}

function htmlSection(s: Section): string {
  const body = [
    ...(s.paragraphs ?? []).map((p) => `<p>${escapeHtml(p)}</p>`),
    ...(s.list
      ? [
          `<ul class="${escapeHtml(s.id)}">${s.list.map((i) => `<li>${escapeHtml(i)}</li>`).join('\n')}</ul>`,
        ]
      : []),
    ...(s.tables ?? []).map(htmlTable),
  ].join('\n');
  return [
    `<section id="${escapeHtml(s.id)}">`,
    `<h2>${escapeHtml(s.heading)}</h2>`,
    s.collapsible ? `<details><summary>show</summary>\n${body}\n</details>` : body,
    '</section>',
  ].join('\n');
}

/** A self-contained page: inline CSS and SVG, no script, no font or image to fetch. */
export function reportHtml(
  report: Report,
  figures: Figure[],
  sections: Section[] = reportSections(report),
): string {
  validateReport(report);
  const byId = new Map(sections.map((s) => [s.id, s]));
  const confusions = figures.filter((f) => f.id.startsWith('fig-confusion-'));
  const others = figures.filter((f) => !f.id.startsWith('fig-confusion-'));
  const parts: string[] = [];
  const section = (id: string) => {
    const s = byId.get(id);
    if (s) parts.push(htmlSection(s));
  };
  section('findings');
  section('runs');
  parts.push(
    `<section id="figures"><h2>Figures</h2>\n${others.map(htmlFigure).join('\n')}\n</section>`,
  );
  section('groups');
  section('per-class');
  section('shots');
  if (confusions.length > 0) {
    parts.push(
      `<section id="confusion"><h2>Confusion matrices</h2>\n${confusions.map(htmlFigure).join('\n')}\n</section>`,
    );
  }
  section('history');
  for (const s of sections) {
    if (!['findings', 'runs', 'groups', 'per-class', 'shots', 'history'].includes(s.id))
      parts.push(htmlSection(s));
  }
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="generator" content="torchfocal">',
    `<title>${escapeHtml(report.title)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    '<main>',
    '<header>',
    `<h1>${escapeHtml(report.title)}</h1>`,
    `<p class="meta">${reportMeta(report).map(escapeHtml).join(' · ')}</p>`,
    '</header>',
    ...parts,
    '</main>',
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

/**
 * Writes report.json, report.md, report.html and report.png into `dir` (created if missing) and
 * returns their paths. Nothing is written unless every part rendered; each file is replaced
 * atomically, so a reader never sees a half-written one.
 */
export async function writeReport(
  dir: string,
  report: Report,
  options: WriteReportOptions = {},
): Promise<ReportPaths> {
  validateReport(report);
  const shots = runShots(report);
  const sections = reportSections(report, shots);
  const figures = await renderFigures(report, options);
  const json = `${JSON.stringify(reportJson(report, shots), null, 2)}\n`;
  const md = reportMarkdown(report, sections);
  const html = reportHtml(report, figures, sections);
  const png = await svgToPng(figures[0].svg, options.pngWidth ?? 1000);

  await makeDir(dir); // bounded: Node's recursive mkdir spins on /proc/x/y
  const paths: ReportPaths = {
    json: path.join(dir, REPORT_FILES.json),
    md: path.join(dir, REPORT_FILES.md),
    html: path.join(dir, REPORT_FILES.html),
    png: path.join(dir, REPORT_FILES.png),
  };
  await Promise.all([
    writeFileAtomic(paths.json, json),
    writeFileAtomic(paths.md, md),
    writeFileAtomic(paths.html, html),
    writeFileAtomic(paths.png, png),
  ]);
  return paths;
}
