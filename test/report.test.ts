import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import {
  confusionSvg,
  lossCurvesSvg,
  recallBarsSvg,
  recallVsCountSvg,
  renderFigures,
  shotSplit,
  writeReport,
  type Report,
  type ReportRun,
} from '../ts/report/index';
import type { Evaluation } from '../ts/train/evaluation';
import type { EpochResult } from '../ts/train/trainer';

// ---------------------------------------------------------------------------------------------
// A synthetic report: 3 runs × 10 classes, 40 test images per class, hand-made recalls (multiples
// of 1/40, so that every count is whole and every mean exact).

const CLASS_NAMES = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship & <boat>',
  'truck',
];
const FOCUS = 3;
const SUPPORT = 40;
const BALANCED_COUNTS = [500, 500, 500, 500, 500, 500, 500, 500, 500, 500];
// many-shot (> 100): 0, 1, 2, 9; medium (20..100): 4, 5, 6; few (< 20): 3, 7, 8
const LONG_TAIL_COUNTS = [500, 150, 101, 5, 100, 60, 20, 19, 0, 300];

const RECALLS: Record<string, number[]> = {
  'balanced-ce': [0.95, 0.975, 0.9, 0.85, 0.925, 0.875, 0.95, 0.925, 0.975, 0.95],
  'imbalanced-ce': [0.95, 0.975, 0.9, 0, 0.75, 0.5, 0.625, 0.25, 0, 0.95],
  'imbalanced-focal': [0.9, 0.95, 0.875, 0.75, 0.8, 0.625, 0.75, 0.5, 0.125, 0.925],
};

/** An evaluation whose true class t is right recall[t] × 40 times, else taken for t + 1. */
function evaluationOf(recalls: number[]): Evaluation {
  const k = recalls.length;
  const confusion = recalls.map((r, t) => {
    const row = new Array<number>(k).fill(0);
    const right = Math.round(r * SUPPORT);
    row[t] = right;
    row[(t + 1) % k] += SUPPORT - right;
    return row;
  });
  const colSum = (j: number) => confusion.reduce((a, row) => a + row[j], 0);
  const perClass = recalls.map((_, c) => {
    const recall = confusion[c][c] / SUPPORT;
    const precision = colSum(c) === 0 ? 0 : confusion[c][c] / colSum(c);
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { class: c, name: CLASS_NAMES[c], support: SUPPORT, recall, precision, f1 };
  });
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    accuracy: confusion.reduce((a, row, t) => a + row[t], 0) / (SUPPORT * k),
    balancedAccuracy: mean(perClass.map((p) => p.recall)),
    macroF1: mean(perClass.map((p) => p.f1)),
    perClass,
    confusion,
  };
}

function historyOf(losses: number[], testAccs: number[]): EpochResult[] {
  return losses.map((loss, epoch) => ({
    epoch,
    loss,
    trainAcc: Math.min(0.999, testAccs[epoch] + 0.01),
    testAcc: testAccs[epoch],
    seconds: 2.5 + epoch * 0.1,
    steps: 40,
  }));
}

function syntheticReport(): Report {
  const run = (
    name: string,
    counts: number[],
    losses: number[],
    accs: number[],
    seconds: number,
  ): ReportRun => ({
    name,
    history: historyOf(losses, accs),
    eval: evaluationOf(RECALLS[name]),
    trainCounts: counts,
    trainSeconds: seconds,
    seed: 1,
    options: { loss: name.endsWith('focal') ? 'focal' : 'ce' },
  });
  return {
    title: 'Starving "cat": cross-entropy vs focal loss',
    kind: 'experiment',
    createdAt: '2025-01-02T03:04:05.000Z',
    dataset: 'synthetic-10',
    classNames: CLASS_NAMES,
    focusClass: FOCUS,
    runs: [
      run(
        'balanced-ce',
        BALANCED_COUNTS,
        [1.4, 0.6, 0.4, 0.3, 0.25],
        [0.8, 0.86, 0.9, 0.91, 0.925],
        12.5,
      ),
      run(
        'imbalanced-ce',
        LONG_TAIL_COUNTS,
        [1.3, 0.55, 0.38, 0.29, 0.22],
        [0.6, 0.65, 0.67, 0.68, 0.69],
        75,
      ),
      run(
        'imbalanced-focal',
        LONG_TAIL_COUNTS,
        [0.9, 0.35, 0.2, 0.15, 0.12],
        [0.62, 0.66, 0.7, 0.71, 0.72],
        3725,
      ),
    ],
    findings: [
      'Focal loss raised the recall of cat from 0.000 to 0.750.',
      'Cross-entropy on the cut data loses the few-shot classes.',
    ],
    groups: [
      {
        name: 'ce',
        n: 3,
        mean: { testAcc: 0.69, classAcc: 0.02 },
        std: { testAcc: 0.01, classAcc: 0.015 },
      },
      {
        name: 'focal',
        n: 3,
        mean: { testAcc: 0.72, classAcc: 0.74 },
        std: { testAcc: 0.012, classAcc: 0.03 },
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// SVG inspection

type XmlNode = Record<string, unknown>;
const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_' });

/** Every element named `tag` under `node`, depth first. */
function elements(node: unknown, tag: string, out: XmlNode[] = []): XmlNode[] {
  if (Array.isArray(node)) {
    for (const n of node) elements(n, tag, out);
  } else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key.startsWith('@_') || key === '#text') continue;
      if (key === tag)
        for (const v of Array.isArray(value) ? value : [value]) out.push(v as XmlNode);
      elements(value, tag, out);
    }
  }
  return out;
}

/** Parses an SVG document (asserting it is well-formed XML with an <svg> root). */
function parseSvg(t: import('ava').ExecutionContext, svg: string): XmlNode {
  t.true(svg.length > 1000, 'the SVG is not empty');
  t.is(XMLValidator.validate(svg), true, 'the SVG is well-formed XML');
  const doc = parser.parse(svg) as XmlNode;
  t.truthy(doc.svg, 'the root element is <svg>');
  return doc;
}

/** The items (paths or texts) drawn by a named Vega-Lite layer `name`. */
function markItems(doc: XmlNode, name: string, item: 'path' | 'text'): XmlNode[] {
  const groups = elements(doc, 'g').filter((g) =>
    String(g['@_class'] ?? '')
      .split(' ')
      .includes(`${name}_marks`),
  );
  return groups.flatMap((g) => {
    const items = g[item];
    return items === undefined
      ? []
      : Array.isArray(items)
        ? (items as XmlNode[])
        : [items as XmlNode];
  });
}

/** All text content and aria labels of an SVG document, entity-decoded. */
function svgWords(doc: XmlNode): string {
  const texts = elements(doc, 'text').map((t) =>
    typeof t === 'object' ? String(t['#text'] ?? '') : String(t),
  );
  const labels = [...elements(doc, 'g'), ...elements(doc, 'path')].map((n) =>
    String(n['@_aria-label'] ?? ''),
  );
  return [...texts, ...labels].join('\n');
}

// ---------------------------------------------------------------------------------------------

test('shot split: many > 100, medium 20..100 inclusive, few < 20, exact means', (t) => {
  const s = shotSplit(LONG_TAIL_COUNTS, evaluationOf(RECALLS['imbalanced-ce']));
  t.deepEqual(s.thresholds, { many: 100, few: 20 });
  t.deepEqual(s.many.classes, [0, 1, 2, 9]);
  t.deepEqual(s.medium.classes, [4, 5, 6]);
  t.deepEqual(s.few.classes, [3, 7, 8]);
  t.deepEqual(s.few.names, ['cat', 'horse', 'ship & <boat>']);
  const close = (a: number | null, b: number) =>
    t.true(a !== null && Math.abs(a - b) < 1e-12, `${a} ≈ ${b}`);
  close(s.many.meanRecall, (0.95 + 0.975 + 0.9 + 0.95) / 4);
  close(s.medium.meanRecall, (0.75 + 0.5 + 0.625) / 3);
  close(s.few.meanRecall, 0.25 / 3);

  const custom = shotSplit(LONG_TAIL_COUNTS, evaluationOf(RECALLS['imbalanced-ce']), {
    many: 50,
    few: 10,
  });
  t.deepEqual(
    [custom.many.classes, custom.medium.classes, custom.few.classes],
    [
      [0, 1, 2, 4, 5, 9],
      [6, 7],
      [3, 8],
    ],
  );
});

test('shot split: an empty group has a null mean, never NaN', (t) => {
  const s = shotSplit(BALANCED_COUNTS, evaluationOf(RECALLS['balanced-ce']));
  t.is(s.many.classes.length, 10);
  t.deepEqual(s.medium, { classes: [], names: [], meanRecall: null });
  t.deepEqual(s.few, { classes: [], names: [], meanRecall: null });
  t.is(JSON.parse(JSON.stringify(s)).few.meanRecall, null);

  // a class without test images (recall NaN) is listed but not averaged
  const e = evaluationOf(RECALLS['imbalanced-ce']);
  e.perClass[8] = { ...e.perClass[8], support: 0, recall: NaN };
  e.perClass[3] = { ...e.perClass[3], support: 0, recall: NaN };
  e.perClass[7] = { ...e.perClass[7], support: 0, recall: NaN };
  const nan = shotSplit(LONG_TAIL_COUNTS, e);
  t.deepEqual(nan.few.classes, [3, 7, 8]);
  t.is(nan.few.meanRecall, null);

  t.throws(() => shotSplit([1, 2, 3], evaluationOf(RECALLS['balanced-ce'])), {
    instanceOf: RangeError,
  });
});

test('charts: every SVG is well-formed and draws one mark per datum', async (t) => {
  const report = syntheticReport();
  const warnings: string[] = [];
  const opts = { onWarning: (m: string) => warnings.push(m) };
  const runNames = report.runs.map((r) => r.name);

  const bars = parseSvg(t, await recallBarsSvg(report.runs, CLASS_NAMES, FOCUS, opts));
  t.is(markItems(bars, 'recall_bars', 'path').length, 3 * 10, 'one bar per run and class');
  t.is(markItems(bars, 'focus_band', 'path').length, 1, 'the focus class is shaded');
  const barWords = svgWords(bars);
  for (const name of [...runNames, ...CLASS_NAMES])
    t.true(barWords.includes(name), `bars name ${name}`);

  const curves = parseSvg(t, await lossCurvesSvg(report.runs, opts));
  // a line mark draws one path per series: 3 loss lines, 3 × (test, train) accuracy lines
  t.is(markItems(curves, 'loss', 'path').length, 3);
  t.is(markItems(curves, 'accuracy', 'path').length, 6);
  const curveWords = svgWords(curves);
  for (const name of runNames) t.true(curveWords.includes(name), `curves name ${name}`);

  const run = report.runs[1];
  const heat = parseSvg(
    t,
    await confusionSvg(run.eval, CLASS_NAMES, 'Confusion matrix: imbalanced-ce', opts),
  );
  t.is(markItems(heat, 'cells', 'path').length, 100, 'one cell per (true, predicted) pair');
  const nonZero = run.eval.confusion.flat().filter((n) => n > 0);
  const counts = markItems(heat, 'counts', 'text');
  t.is(counts.length, nonZero.length, 'one count per non-zero cell');
  t.deepEqual(
    counts.map((c) => Number(c['#text'])).sort((a, b) => a - b),
    [...nonZero].sort((a, b) => a - b),
  );
  const heatWords = svgWords(heat);
  for (const name of CLASS_NAMES) t.true(heatWords.includes(name), `heatmap names ${name}`);

  const scatter = parseSvg(t, await recallVsCountSvg(report.runs, CLASS_NAMES, FOCUS, opts));
  t.is(markItems(scatter, 'class_points', 'path').length, 30, 'one point per run and class');
  t.is(
    markItems(scatter, 'focus_labels', 'text').length,
    3,
    'the focus class is labelled once per run',
  );
  const scatterWords = svgWords(scatter);
  for (const name of [...runNames, ...CLASS_NAMES])
    t.true(scatterWords.includes(name), `scatter names ${name}`);

  t.deepEqual(warnings, [], 'Vega and Vega-Lite raised no warning');
});

test('writeReport writes json, md, html and png, and nothing else', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torchfocal-report-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const report = syntheticReport();
  // TORCHFOCAL_KEEP_REPORT=DIR keeps a copy of this report to look at
  const keep = process.env.TORCHFOCAL_KEEP_REPORT;
  if (keep) await writeReport(keep, report);
  const started = process.hrtime.bigint();
  const out = await writeReport(path.join(dir, 'nested', 'out'), report);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.log(`writeReport: ${ms.toFixed(0)} ms`);

  t.deepEqual(fs.readdirSync(path.join(dir, 'nested', 'out')).sort(), [
    'report.html',
    'report.json',
    'report.md',
    'report.png',
  ]);

  // JSON: the Report round-trips, plus each run's shot split
  const json = JSON.parse(fs.readFileSync(out.json, 'utf8'));
  const { shots, ...rest } = json;
  t.deepEqual(rest, report);
  t.is(shots.length, 3);
  t.deepEqual(shots[1].run, 'imbalanced-ce');
  t.deepEqual(shots[1].few.classes, [3, 7, 8]);
  t.is(shots[0].few.meanRecall, null);

  // Markdown: one row per run, the per-class table, findings, sweep groups
  const md = fs.readFileSync(out.md, 'utf8');
  t.true(md.startsWith('# Starving "cat": cross-entropy vs focal loss\n'));
  const f1 = (i: number) => report.runs[i].eval.macroF1.toFixed(3);
  const row = (name: string) => md.split('\n').find((l) => l.startsWith(`| ${name} |`));
  // run | epochs | test acc | recall of cat | balanced acc | macro-F1 | many | medium | few | time
  // (an empty shot group shows a dash)
  t.is(
    row('balanced-ce'),
    `| balanced-ce | 5 | 0.927 | 0.850 | 0.927 | ${f1(0)} | 0.927 | — | — | 12.5 s |`,
  );
  t.is(
    row('imbalanced-ce'),
    `| imbalanced-ce | 5 | 0.590 | 0.000 | 0.590 | ${f1(1)} | 0.944 | 0.625 | 0.083 | 1 min 15 s |`,
  );
  t.is(
    row('imbalanced-focal'),
    `| imbalanced-focal | 5 | 0.720 | 0.750 | 0.720 | ${f1(2)} | 0.913 | 0.725 | 0.458 | 1 h 02 min |`,
  );
  t.true(
    md.includes('| **cat** | **40** | **500 / 5 / 5** | **0.850** | **0.000** | **0.750** |'),
    'focus row in bold',
  );
  t.true(
    md.includes('| ship &amp; &lt;boat&gt; | 40 | 500 / 0 / 0 | 0.975 | 0.000 | 0.125 |'),
    'escaped class name',
  );
  t.true(md.includes('- Focal loss raised the recall of cat from 0.000 to 0.750.'));
  t.true(md.includes('| focal | 3 | 0.720 ± 0.012 | 0.740 ± 0.030 |'));
  t.true(md.includes('![Per-class test recall](report.png)'));

  // PNG: the main figure, a real image of a sensible size
  const png = fs.readFileSync(out.png);
  t.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const meta = await sharp(png).metadata();
  t.is(meta.format, 'png');
  t.true(meta.width! >= 600 && meta.width! <= 1200, `width ${meta.width}`);
  t.true(meta.height! >= 300, `height ${meta.height}`);
  const stats = await sharp(png).stats();
  t.false(stats.isOpaque === false && stats.channels[0].max === stats.channels[0].min, 'not blank');
  t.true(
    stats.channels.slice(0, 3).some((c) => c.min < 128),
    'something dark is drawn',
  );

  // HTML: self-contained, no script, every figure inline
  const html = fs.readFileSync(out.html, 'utf8');
  t.notRegex(html, /https?:/i, 'no URL at all');
  t.notRegex(html, /\ssrc\s*=/i);
  t.notRegex(html, /<script|<link|@import|@font-face|url\((?!#)/i);
  t.is((html.match(/<svg\b/g) ?? []).length, 6, '3 figures + 3 confusion matrices');
  const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]);
  t.is(new Set(ids).size, ids.length, 'ids are unique across the inlined figures');
  for (const m of html.matchAll(/url\(#([^)]+)\)/g))
    t.true(ids.includes(m[1]), `url(#${m[1]}) resolves`);
  t.true(html.includes('ship &#38; &#60;boat&#62;'));
});

test('writeReport: a single run leads with its loss curves; bad input is refused before any write', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torchfocal-report-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const report = syntheticReport();
  const single: Report = { ...report, kind: 'run', runs: [report.runs[2]], groups: undefined };
  const figures = await renderFigures(single);
  t.is(figures[0].id, 'fig-curves');
  const out = await writeReport(dir, single);
  const meta = await sharp(out.png).metadata();
  t.true(meta.width! >= 600 && meta.height! >= 300);

  const empty = path.join(dir, 'empty');
  await t.throwsAsync(writeReport(empty, { ...report, runs: [] }), { instanceOf: RangeError });
  await t.throwsAsync(writeReport(empty, { ...report, focusClass: 10 }), {
    instanceOf: RangeError,
  });
  t.false(fs.existsSync(empty));
});

// ---------------------------------------------------------------------------------------------
// A real browser opens report.html offline: no console error, every figure in the DOM, a
// non-blank screenshot.

function findChromium(): string | undefined {
  const names = process.env.CHROMIUM ? [process.env.CHROMIUM] : ['chromium', 'chromium-browser'];
  for (const name of names) {
    if (name.includes('/')) {
      if (fs.existsSync(name)) return name;
      continue;
    }
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
      const file = path.join(dir, name);
      try {
        fs.accessSync(file, fs.constants.X_OK);
        return file;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

function run(
  file: string,
  args: string[],
  timeoutMs: number,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      if (error) reject(Object.assign(error, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

test('headless Chromium renders report.html offline with no console error', async (t) => {
  const chromium = findChromium();
  if (chromium === undefined) {
    t.fail(
      'chromium is not installed: install it (apt-get install -y chromium; scripts/setup.sh does) ' +
        'or point CHROMIUM at a Chromium binary',
    );
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torchfocal-report-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = await writeReport(path.join(dir, 'report'), syntheticReport());
  const url = `file://${out.html}`;
  const common = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-extensions',
    '--disable-background-networking',
    '--enable-logging=stderr',
    '--v=0',
  ];
  const shot = path.join(dir, 'screenshot.png');
  const [dom, screenshot] = await Promise.all([
    run(
      chromium,
      [...common, `--user-data-dir=${path.join(dir, 'profile-dom')}`, '--dump-dom', url],
      30_000,
    ),
    run(
      chromium,
      [
        ...common,
        `--user-data-dir=${path.join(dir, 'profile-shot')}`,
        `--screenshot=${shot}`,
        '--window-size=1200,2000',
        '--hide-scrollbars',
        url,
      ],
      30_000,
    ),
  ]);

  for (const log of [dom.stderr, screenshot.stderr]) {
    const bad = log
      .split('\n')
      .filter((l) => /CONSOLE|Uncaught|net::ERR_|Failed to load resource|Refused to/i.test(l));
    t.deepEqual(bad, [], 'no console message, failed load or refused resource');
  }
  const svgs = dom.stdout.match(/<svg\b/g) ?? [];
  t.is(svgs.length, 6, 'the DOM holds every figure');
  for (const name of [...syntheticReport().runs.map((r) => r.name), 'ship &amp; &lt;boat&gt;']) {
    t.true(dom.stdout.includes(name), `the DOM shows ${name}`);
  }

  const meta = await sharp(shot).metadata();
  t.is(meta.width, 1200);
  t.is(meta.height, 2000);
  const stats = await sharp(shot).stats();
  t.true(
    stats.channels.slice(0, 3).some((c) => c.min < 100),
    'the screenshot is not blank',
  );
});
