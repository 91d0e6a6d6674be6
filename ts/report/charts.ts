// The report's figures: Vega-Lite specifications rendered to SVG strings in Node, with Vega's
// headless renderer (no browser, no DOM, no canvas: text widths are estimated).
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { Evaluation } from '../train/evaluation';
import type { ReportRun } from './types';

export interface ChartOptions {
  /** receives Vega and Vega-Lite warnings (dropped by default) */
  onWarning?: (message: string) => void;
}

/** Names made unique for use as a categorical field: a repeated name gets ` #2`, ` #3`, … */
export function uniqueNames(names: readonly string[]): string[] {
  const seen = new Map<string, number>();
  const taken = new Set(names);
  return names.map((name) => {
    const n = (seen.get(name) ?? 0) + 1;
    seen.set(name, n);
    if (n === 1) return name;
    let k = n;
    while (taken.has(`${name} #${k}`)) k++;
    const out = `${name} #${k}`;
    taken.add(out);
    return out;
  });
}

/** Class labels: the given names, else the evaluation's, else the index; made unique. */
export function classLabels(classNames: readonly string[], evaluation?: Evaluation): string[] {
  const n = Math.max(classNames.length, evaluation?.perClass.length ?? 0);
  return uniqueNames(
    Array.from(
      { length: n },
      (_, c) => classNames[c] ?? evaluation?.perClass.find((k) => k.class === c)?.name ?? String(c),
    ),
  );
}

/** Compiles a Vega-Lite specification and renders it to a standalone SVG document. */
export async function renderVegaLite(
  spec: TopLevelSpec,
  options: ChartOptions = {},
): Promise<string> {
  const onWarning = options.onWarning ?? (() => undefined);
  const errors: string[] = [];
  const logger = vega.logger(vega.Warn, undefined, (_method, level, input) => {
    const message = Array.from(input, String).join(' ');
    if (level === 'ERROR') errors.push(message);
    else onWarning(message);
  });
  const compiled = compile(spec, { logger }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logger });
  try {
    const svg = await view.toSVG();
    if (errors.length > 0) throw new Error(`chart rendering failed: ${errors.join('; ')}`);
    return svg;
  } finally {
    view.finalize();
  }
}

const FONT = 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif';
const CONFIG = {
  font: FONT,
  view: { stroke: '#ccc' },
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 220 },
  title: { fontSize: 14, anchor: 'start' as const },
};

function runColor(runNames: string[]) {
  return {
    field: 'run',
    type: 'nominal' as const,
    title: 'run',
    sort: runNames,
    scale: { domain: runNames, scheme: runNames.length > 10 ? 'category20' : 'tableau10' },
  };
}

const finite = (x: number | undefined): number | null =>
  x !== undefined && Number.isFinite(x) ? x : null;

/** Labels are turned when the longest class label would not fit under its band. */
const labelAngle = (labels: string[]): number =>
  labels.some((l) => l.length > 3) && labels.length > 4 ? -40 : 0;

/** One datum per (run, class): run name, class label and recall, plus `extra`'s fields. */
function perClassValues<R extends Pick<ReportRun, 'name' | 'eval'>, E extends object>(
  runs: R[],
  classNames: string[],
  extra: (run: R, k: Evaluation['perClass'][number]) => E,
) {
  const names = uniqueNames(runs.map((r) => r.name));
  const labels = classLabels(classNames, runs[0]?.eval);
  const values = runs.flatMap((r, i) =>
    r.eval.perClass.map((k) => ({
      run: names[i],
      class: labels[k.class] ?? String(k.class),
      recall: finite(k.recall),
      ...extra(r, k),
    })),
  );
  return { names, labels, values };
}

/**
 * (a) Training loss and accuracy by epoch, one colour per run: loss on the left; test accuracy
 * (solid) and training accuracy (dashed) on the right.
 */
export function lossCurvesSvg(
  runs: Pick<ReportRun, 'name' | 'history'>[],
  options: ChartOptions = {},
): Promise<string> {
  const names = uniqueNames(runs.map((r) => r.name));
  const loss = runs.flatMap((r, i) =>
    r.history
      .filter((e) => Number.isFinite(e.loss))
      .map((e) => ({ run: names[i], epoch: e.epoch, loss: e.loss })),
  );
  const acc = runs.flatMap((r, i) =>
    r.history.flatMap((e) => [
      ...(finite(e.testAcc) === null
        ? []
        : [{ run: names[i], epoch: e.epoch, split: 'test', acc: e.testAcc }]),
      ...(finite(e.trainAcc) === null
        ? []
        : [{ run: names[i], epoch: e.epoch, split: 'train', acc: e.trainAcc }]),
    ]),
  );
  const epoch = {
    field: 'epoch',
    type: 'quantitative' as const,
    title: 'epoch',
    axis: { tickMinStep: 1, format: 'd' },
    scale: { nice: false },
  };
  const color = runColor(names);
  const spec: TopLevelSpec = {
    config: CONFIG,
    title: 'Training loss and accuracy by epoch',
    hconcat: [
      {
        name: 'loss',
        width: 380,
        height: 260,
        data: { values: loss },
        mark: { type: 'line', point: true, strokeWidth: 2 },
        encoding: {
          x: epoch,
          y: { field: 'loss', type: 'quantitative', title: 'training loss' },
          color,
        },
      },
      {
        width: 380,
        height: 260,
        data: { values: acc },
        encoding: {
          x: epoch,
          y: { field: 'acc', type: 'quantitative', title: 'accuracy', scale: { zero: false } },
          color,
        },
        // points in a layer of their own, so that the dash legend shows strokes, not circles
        layer: [
          {
            name: 'accuracy',
            mark: { type: 'line', strokeWidth: 2 },
            encoding: {
              strokeDash: {
                field: 'split',
                type: 'nominal',
                title: 'set',
                sort: ['test', 'train'],
                scale: {
                  domain: ['test', 'train'],
                  range: [
                    [1, 0],
                    [5, 3],
                  ],
                },
                legend: { symbolSize: 400, symbolStrokeColor: '#444' },
              },
            },
          },
          { name: 'accuracy_points', mark: { type: 'point', filled: true, size: 25 } },
        ],
      },
    ],
    resolve: { scale: { color: 'shared', strokeDash: 'shared' } },
  };
  return renderVegaLite(spec, options);
}

/**
 * (b) Per-class test recall, one bar per run side by side in each class; the focus class has a
 * shaded band and a bold label.
 */
export function recallBarsSvg(
  runs: Pick<ReportRun, 'name' | 'eval'>[],
  classNames: string[],
  focusClass?: number,
  options: ChartOptions = {},
): Promise<string> {
  const { names, labels, values } = perClassValues(runs, classNames, () => ({}));
  const focus = focusClass === undefined ? undefined : labels[focusClass];
  const x = {
    field: 'class',
    type: 'nominal' as const,
    title: 'class',
    sort: labels,
    scale: { domain: labels, paddingInner: 0.2 },
    axis: {
      labelAngle: labelAngle(labels),
      labelFontWeight:
        focus === undefined
          ? ('normal' as const)
          : {
              condition: {
                test: `datum.value === ${JSON.stringify(focus)}`,
                value: 'bold' as const,
              },
              value: 'normal' as const,
            },
    },
  };
  const width = Math.max(480, Math.min(1400, labels.length * Math.max(names.length * 14, 40)));
  const spec: TopLevelSpec = {
    config: CONFIG,
    title:
      focus === undefined ? 'Test recall per class' : `Test recall per class (shaded: ${focus})`,
    width,
    height: 280,
    layer: [
      ...(focus === undefined
        ? []
        : [
            {
              name: 'focus_band',
              data: { values: [{ class: focus }] },
              mark: { type: 'rect' as const, color: '#fde68a', opacity: 0.55 },
              encoding: { x },
            },
          ]),
      {
        name: 'recall_bars',
        data: { values },
        mark: { type: 'bar' as const },
        encoding: {
          x,
          xOffset: {
            field: 'run',
            type: 'nominal' as const,
            sort: names,
            scale: { domain: names },
          },
          y: {
            field: 'recall',
            type: 'quantitative' as const,
            title: 'test recall',
            scale: { domain: [0, 1] },
          },
          color: runColor(names),
        },
      },
    ],
  };
  return renderVegaLite(spec, options);
}

/**
 * (c) Confusion matrix of one evaluation: rows are true classes, columns predictions; the colour
 * is the cell's share of its row (so a starved class's row is as visible as a full one), the text
 * its count (zeros left blank; no text past 30 classes).
 */
export function confusionSvg(
  evaluation: Evaluation,
  classNames: string[],
  title = 'Confusion matrix',
  options: ChartOptions = {},
): Promise<string> {
  const labels = classLabels(classNames, evaluation);
  const k = evaluation.confusion.length;
  const values = evaluation.confusion.flatMap((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((count, p) => ({
      true: labels[t] ?? String(t),
      pred: labels[p] ?? String(p),
      count,
      share: total > 0 ? count / total : 0,
    }));
  });
  const size = Math.max(260, Math.min(720, k * 40));
  const x = {
    field: 'pred',
    type: 'nominal' as const,
    title: 'predicted class',
    sort: labels,
    scale: { domain: labels },
    axis: { labelAngle: labelAngle(labels) },
  };
  const y = {
    field: 'true',
    type: 'nominal' as const,
    title: 'true class',
    sort: labels,
    scale: { domain: labels },
  };
  const spec: TopLevelSpec = {
    config: CONFIG,
    title,
    width: size,
    height: size,
    data: { values },
    layer: [
      {
        name: 'cells',
        mark: { type: 'rect', stroke: '#fff', strokeWidth: 0.5 },
        encoding: {
          x,
          y,
          color: {
            field: 'share',
            type: 'quantitative',
            title: 'share of row',
            // white for an empty cell, dark blue for a whole row
            // (the stops of ColorBrewer's Blues, starting from white)
            scale: {
              domain: [0, 0.25, 0.5, 0.75, 1],
              range: ['#ffffff', '#c6dbef', '#6baed6', '#2171b5', '#08306b'],
              interpolate: 'lab',
            },
            legend: { format: '.0%' },
          },
        },
      },
      ...(k > 30
        ? []
        : [
            {
              name: 'counts',
              transform: [{ filter: 'datum.count > 0' }],
              mark: { type: 'text' as const, fontSize: k > 15 ? 8 : 11 },
              encoding: {
                x,
                y,
                text: { field: 'count', type: 'quantitative' as const, format: 'd' },
                color: {
                  condition: { test: 'datum.share > 0.5', value: 'white' },
                  value: 'black',
                },
              },
            },
          ]),
    ],
  };
  return renderVegaLite(spec, options);
}

/**
 * (d) Test recall against training images per class (log scale), one colour per run: the
 * imbalance curve. A class with no training image is drawn at 1. The focus class is labelled.
 */
export function recallVsCountSvg(
  runs: Pick<ReportRun, 'name' | 'eval' | 'trainCounts'>[],
  classNames: string[],
  focusClass?: number,
  options: ChartOptions = {},
): Promise<string> {
  const { names, values } = perClassValues(runs, classNames, (r, k) => ({
    focus: k.class === focusClass,
    count: r.trainCounts[k.class] ?? 0,
    images: Math.max(1, r.trainCounts[k.class] ?? 0),
  }));
  const x = {
    field: 'images',
    type: 'quantitative' as const,
    title: 'training images of the class (log scale)',
    scale: { type: 'log' as const },
  };
  const y = {
    field: 'recall',
    type: 'quantitative' as const,
    title: 'test recall',
    scale: { domain: [0, 1] },
  };
  const spec: TopLevelSpec = {
    config: CONFIG,
    title: 'Test recall against training images, per class',
    width: 520,
    height: 300,
    data: { values },
    layer: [
      {
        name: 'class_points',
        mark: { type: 'point', filled: true, size: 70, opacity: 0.85 },
        encoding: {
          x,
          y,
          color: runColor(names),
          tooltip: [
            { field: 'run', type: 'nominal' },
            { field: 'class', type: 'nominal' },
            { field: 'count', type: 'quantitative', title: 'training images' },
            { field: 'recall', type: 'quantitative', format: '.3f' },
          ],
        },
      },
      ...(focusClass === undefined
        ? []
        : [
            {
              name: 'focus_labels',
              transform: [{ filter: 'datum.focus' }],
              mark: {
                type: 'text' as const,
                align: 'left' as const,
                dx: 7,
                dy: -7,
                fontWeight: 'bold' as const,
              },
              encoding: { x, y, text: { field: 'class', type: 'nominal' as const } },
            },
          ]),
    ],
  };
  return renderVegaLite(spec, options);
}
