// What this installation is: the package, Node.js, and what the addon was built with and finds.
import { addonPath, native, type RuntimeInfo } from './native';
import { packageVersion } from './package';

export interface InstallInfo {
  version: string;
  node: string;
  platform: string;
  addon: string;
  /** absent when the addon could not be loaded (then `addonError` says why) */
  runtime?: RuntimeInfo;
  addonError?: string;
}

/** The first thing a bug report needs; never throws (a broken addon is reported in it). */
export function installInfo(): InstallInfo {
  const info: InstallInfo = {
    version: packageVersion(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    addon: addonPath(),
  };
  try {
    info.runtime = native().runtimeInfo();
  } catch (err) {
    info.addonError = err instanceof Error ? err.message : String(err);
  }
  return info;
}

/** 12040 → "12.4" (CUDA's CUDART_VERSION). */
export function cudaVersionString(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/** cuDNN's version number as text: 90100 → "9.1.0" (cuDNN 9), 8902 → "8.9.2" (cuDNN 8). */
export function cudnnVersionString(v: number): string {
  const major = v >= 90000 ? Math.floor(v / 10000) : Math.floor(v / 1000);
  const minor = v >= 90000 ? Math.floor((v % 10000) / 100) : Math.floor((v % 1000) / 100);
  return `${major}.${minor}.${v % 100}`;
}
