// Reports of runs, experiments and sweeps: JSON, Markdown, self-contained HTML and a PNG figure.
export type { Report, ReportRun, ReportGroup } from './types';
export { shotSplit, shotOf, DEFAULT_SHOT_THRESHOLDS } from '../train/shots';
export type { ShotSplit, ShotGroup, ShotThresholds, ShotName } from '../train/shots';
export {
  lossCurvesSvg,
  recallBarsSvg,
  confusionSvg,
  recallVsCountSvg,
  renderVegaLite,
  uniqueNames,
  classLabels,
} from './charts';
export type { ChartOptions } from './charts';
export { runShots, validateReport, reportSections } from './tables';
export type { RunShots, Section, Table } from './tables';
export {
  writeReport,
  renderFigures,
  reportJson,
  reportMarkdown,
  reportHtml,
  svgToPng,
  REPORT_FILES,
} from './write';
export type { ReportPaths, ReportJson, Figure, WriteReportOptions } from './write';
