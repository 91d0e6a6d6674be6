// `torchfocal info`: versions and capabilities of this installation, for bug reports.
import { Command } from 'commander';
import { cudaVersionString, cudnnVersionString, installInfo, type InstallInfo } from '../info';
import { printJson } from './output';

export function infoCommand(): Command {
  return new Command('info')
    .description(
      'versions and capabilities of this installation (the first thing a bug report needs)',
    )
    .option('--json', 'print one JSON object on stdout')
    .action((flags: { json?: boolean }) => {
      const info = installInfo();
      if (flags.json) printJson(info);
      else process.stdout.write(formatInfo(info).join('\n') + '\n');
      if (info.addonError !== undefined) throw new Error(info.addonError);
    });
}

/** The readable table: one `label  value` line each. */
export function formatInfo(info: InstallInfo): string[] {
  const rows: [string, string][] = [
    ['torchfocal', info.version],
    ['Node.js', `${info.node} (${info.platform})`],
    ['addon', info.addon],
  ];
  const r = info.runtime;
  if (r) {
    const built = (yes: boolean): string => (yes ? 'built' : 'not built');
    const cuda = r.cudaBuilt
      ? `built for CUDA ${cudaVersionString(r.cudaVersion)}; ` +
        (r.cudaAvailable ? `${r.cudaDevices} device(s)` : 'no device present')
      : 'not built (CPU-only LibTorch)';
    rows.push(['LibTorch', `${r.torchVersion} (${r.torchDir})`], ['CUDA', cuda]);
    r.devices.forEach((d, i) =>
      rows.push([
        `  cuda:${i}`,
        `${d.name}, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB, compute ${d.capability}`,
      ]),
    );
    const cudnn =
      r.cudnnBuilt && r.cudnnVersion > 0
        ? `built, ${cudnnVersionString(r.cudnnVersion)}`
        : built(r.cudnnBuilt);
    rows.push(
      ['cuDNN', cudnn],
      ['NCCL', built(r.ncclBuilt)],
      ['Gloo', built(r.glooBuilt)],
      ['oneDNN', r.onednn ? `${r.onednn}, convolutions ${r.onednnConvolutions}` : 'none'],
      ['CPU kernels', r.cpuCapability || 'unknown'],
      ['threads', `${r.threads} (LibTorch's intra-op default; train --threads sets it)`],
      [
        'BLAS',
        `${r.blasLibrary || 'not loaded'}` +
          (r.blasThreads > 0 ? `, ${r.blasThreads} thread${r.blasThreads > 1 ? 's' : ''}` : ''),
      ],
      ['compiler', r.cxxCompiler + (r.cudaCompiler ? `; CUDA: ${r.cudaCompiler}` : '')],
    );
  } else {
    rows.push(['addon error', info.addonError ?? 'unknown']);
  }
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  return rows.map(([label, value]) => label.padEnd(width) + value);
}
