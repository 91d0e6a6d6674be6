// The report's text content as plain tables, rendered once to Markdown and once to HTML.
import { classLabels, uniqueNames } from './charts';
import { shotSplit, type ShotSplit } from '../train/shots';
import type { Report } from './types';

export interface Table {
  header: string[];
  rows: string[][];
  /** per column: numbers are right-aligned */
  align: ('left' | 'right')[];
  /** indices of rows to emphasise (the focus class) */
  strong?: number[];
  caption?: string;
}

export interface Section {
  id: string;
  heading: string;
  paragraphs?: string[];
  list?: string[];
  tables?: Table[];
  /** tables an HTML reader may fold away */
  collapsible?: boolean;
}

const DASH = '—';

/** A metric in [0, 1] (or any fraction) to three decimals; missing or NaN as a dash. */
export function fmt3(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? DASH : x.toFixed(3);
}

/** Any number: integers as they are, large values to one decimal, others to three. */
export function fmtNumber(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return DASH;
  if (Number.isInteger(x)) return String(x);
  return Math.abs(x) >= 100 ? x.toFixed(1) : x.toFixed(3);
}

/** Seconds as `12.3 s`, `4 min 05 s` or `1 h 02 min`. */
export function fmtDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return DASH;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

export interface RunShots extends ShotSplit {
  run: string;
}

export function runShots(report: Report): RunShots[] {
  return report.runs.map((r) => ({ run: r.name, ...shotSplit(r.trainCounts, r.eval) }));
}

/** Checks what the tables and figures rely on; throws a RangeError naming the first problem. */
export function validateReport(report: Report): void {
  if (report.runs.length === 0) throw new RangeError('report: no runs to report');
  const k = report.classNames.length;
  for (const r of report.runs) {
    if (r.eval.perClass.length !== k) {
      throw new RangeError(
        `report: run "${r.name}" evaluates ${r.eval.perClass.length} classes, the report names ${k}`,
      );
    }
    if (r.trainCounts.length !== k) {
      throw new RangeError(
        `report: run "${r.name}" has ${r.trainCounts.length} training counts for ${k} classes`,
      );
    }
    if (r.eval.confusion.length !== k || r.eval.confusion.some((row) => row.length !== k)) {
      throw new RangeError(`report: run "${r.name}" has a confusion matrix that is not ${k}×${k}`);
    }
  }
  if (
    report.focusClass !== undefined &&
    !(Number.isInteger(report.focusClass) && report.focusClass >= 0 && report.focusClass < k)
  ) {
    throw new RangeError(`report: focus class ${report.focusClass} is not one of the ${k} classes`);
  }
}

function recallOf(report: Report, run: number, c: number): number | undefined {
  return report.runs[run].eval.perClass.find((k) => k.class === c)?.recall;
}

/** Every section of the report, in reading order (figures excepted). */
export function reportSections(report: Report, shots: RunShots[] = runShots(report)): Section[] {
  const names = uniqueNames(report.runs.map((r) => r.name));
  const labels = classLabels(report.classNames, report.runs[0]?.eval);
  const focus = report.focusClass;
  const focusLabel = focus === undefined ? undefined : labels[focus];
  const th = shots[0]?.thresholds ?? { many: 100, few: 20 };
  const sections: Section[] = [];

  if (report.findings && report.findings.length > 0) {
    sections.push({ id: 'findings', heading: 'Findings', list: report.findings });
  }

  const summaryHeader = [
    'run',
    'epochs',
    'test accuracy',
    ...(focusLabel === undefined ? [] : [`recall of ${focusLabel}`]),
    'balanced accuracy',
    'macro-F1',
    `many-shot recall (>${th.many})`,
    `medium-shot recall (${th.few}–${th.many})`,
    `few-shot recall (<${th.few})`,
    'train time',
  ];
  sections.push({
    id: 'runs',
    heading: 'Runs',
    paragraphs: [
      'Test-set metrics of the final model of each run. Many-, medium- and few-shot recall are ' +
        'the mean test recall of the classes with more than ' +
        `${th.many}, ${th.few} to ${th.many}, and fewer than ${th.few} training images.`,
    ],
    tables: [
      {
        header: summaryHeader,
        align: summaryHeader.map((_, i) => (i === 0 ? 'left' : 'right')),
        rows: report.runs.map((r, i) => [
          names[i],
          String(r.history.length),
          fmt3(r.eval.accuracy),
          ...(focus === undefined ? [] : [fmt3(recallOf(report, i, focus))]),
          fmt3(r.eval.balancedAccuracy),
          fmt3(r.eval.macroF1),
          fmt3(shots[i].many.meanRecall),
          fmt3(shots[i].medium.meanRecall),
          fmt3(shots[i].few.meanRecall),
          fmtDuration(r.trainSeconds),
        ]),
      },
    ],
  });

  const groups = report.groups ?? [];
  if (groups.length > 0) {
    const keys: string[] = [];
    for (const g of groups) {
      for (const key of Object.keys(g.mean)) if (!keys.includes(key)) keys.push(key);
    }
    // A column of fractions keeps three decimals throughout (1.000 ± 0.000, not 1 ± 0).
    const fraction = new Set(
      keys.filter((key) =>
        groups.every((g) =>
          [g.mean[key], g.std[key]].every((x) => x === undefined || (x >= 0 && x <= 1)),
        ),
      ),
    );
    const num = (key: string, x: number) => (fraction.has(key) ? fmt3(x) : fmtNumber(x));
    sections.push({
      id: 'groups',
      heading: 'Sweep groups (mean ± std over seeds)',
      tables: [
        {
          header: ['group', 'n', ...keys],
          align: ['left', 'right', ...keys.map(() => 'right' as const)],
          rows: groups.map((g) => [
            g.name,
            String(g.n),
            ...keys.map((key) =>
              g.mean[key] === undefined
                ? DASH
                : g.std[key] === undefined || !Number.isFinite(g.std[key])
                  ? num(key, g.mean[key])
                  : `${num(key, g.mean[key])} ± ${num(key, g.std[key])}`,
            ),
          ]),
        },
      ],
    });
  }

  const countsAgree = report.runs.every((r) =>
    r.trainCounts.every((n, c) => n === report.runs[0].trainCounts[c]),
  );
  sections.push({
    id: 'per-class',
    heading: 'Per-class test recall',
    paragraphs: countsAgree
      ? []
      : [`Training images per class are listed in run order (${names.join(', ')}).`],
    tables: [
      {
        header: [
          'class',
          'test images',
          countsAgree ? 'training images' : 'training images (per run)',
          ...names,
        ],
        align: ['left', 'right', 'right', ...names.map(() => 'right' as const)],
        strong: focus === undefined ? [] : [focus],
        rows: labels.map((label, c) => [
          label,
          fmtNumber(report.runs[0].eval.perClass.find((k) => k.class === c)?.support),
          countsAgree
            ? fmtNumber(report.runs[0].trainCounts[c])
            : report.runs.map((r) => fmtNumber(r.trainCounts[c])).join(' / '),
          ...report.runs.map((_, i) => fmt3(recallOf(report, i, c))),
        ]),
      },
    ],
  });

  sections.push({
    id: 'shots',
    heading: 'Shot groups',
    paragraphs: [
      `Classes by training images: many-shot more than ${th.many}, medium-shot ${th.few} to ` +
        `${th.many}, few-shot fewer than ${th.few} (the long-tail literature's split).`,
    ],
    tables: [
      {
        header: ['run', 'many-shot classes', 'medium-shot classes', 'few-shot classes'],
        align: ['left', 'left', 'left', 'left'],
        rows: shots.map((s, i) => [
          names[i],
          ...[s.many, s.medium, s.few].map((g) =>
            g.classes.length === 0 ? DASH : g.classes.map((c) => labels[c]).join(', '),
          ),
        ]),
      },
    ],
  });

  sections.push({
    id: 'history',
    heading: 'Training history',
    collapsible: true,
    tables: report.runs.map((r, i) => ({
      caption: names[i],
      header: ['epoch', 'loss', 'train accuracy', 'test accuracy', 'seconds', 'steps'],
      align: ['right', 'right', 'right', 'right', 'right', 'right'],
      rows: r.history.map((e) => [
        String(e.epoch),
        Number.isFinite(e.loss) ? e.loss.toFixed(6) : DASH,
        fmt3(e.trainAcc),
        fmt3(e.testAcc),
        Number.isFinite(e.seconds) ? e.seconds.toFixed(1) : DASH,
        String(e.steps),
      ]),
    })),
  });

  return sections;
}

/** One line of facts under the title. */
export function reportMeta(report: Report): string[] {
  const labels = classLabels(report.classNames, report.runs[0]?.eval);
  return [
    `kind: ${report.kind}`,
    `dataset: ${report.dataset}`,
    `classes: ${labels.length}`,
    ...(report.focusClass === undefined ? [] : [`focus class: ${labels[report.focusClass]}`]),
    `created: ${report.createdAt}`,
  ];
}
