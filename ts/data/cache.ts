// Where downloaded datasets live (`torchfocal data fetch` fills it; `--dataset cifar10` reads it).
import os from 'node:os';
import path from 'node:path';

/**
 * The cache folder: `option` (`--cache DIR`), else `$TORCHFOCAL_CACHE`, else
 * `$XDG_CACHE_HOME/torchfocal`, else `~/.cache/torchfocal`; always absolute. An empty variable
 * counts as unset, and a relative XDG_CACHE_HOME is ignored, as the XDG spec says.
 */
export function cacheDir(option?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (option) return path.resolve(option);
  if (env.TORCHFOCAL_CACHE) return path.resolve(env.TORCHFOCAL_CACHE);
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'torchfocal');
  return path.join(env.HOME || os.homedir(), '.cache', 'torchfocal');
}
