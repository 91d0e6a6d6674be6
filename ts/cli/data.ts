// `torchfocal data fetch`: a dataset downloaded into the cache folder, checked, all or nothing.
import { Command } from 'commander';
import { cacheDir } from '../data/cache';
import { CIFAR, CIFAR_NAMES, fetchCifar, type CifarName, type FetchedCifar } from '../data/cifar';
import { DownloadBar, ExitError, printJson, warnOnStderr } from './output';
import { oneOf } from './parse';

interface FetchFlags {
  cache?: string;
  url?: string;
  md5?: string;
  json?: boolean;
}

export function dataCommand(): Command {
  const fetch = new Command('fetch')
    .description(
      'download a dataset into the cache folder: the official archive, its MD5 checked, unpacked and read before it takes its place; a valid copy there is kept',
    )
    .argument('<name>', CIFAR_NAMES.join(' or '), oneOf(...CIFAR_NAMES))
    .option(
      '--cache <dir>',
      'the cache folder (default: $TORCHFOCAL_CACHE, else $XDG_CACHE_HOME/torchfocal, else ~/.cache/torchfocal)',
    )
    .option('--url <url>', 'download from this mirror of the official archive')
    .option('--md5 <hex>', "with --url: the mirror's MD5 (default: the official archive's)")
    .option('--json', 'print one JSON object on stdout (and no progress bar)')
    .action(async (name: CifarName, flags: FetchFlags) => {
      const cache = cacheDir(flags.cache);
      const bar = flags.json ? undefined : new DownloadBar(`${name} `);
      // Ctrl-C / SIGTERM: the download stops and its temporary folder goes; the cache is as it was.
      const interrupt = new AbortController();
      let code = 130; // 130 for SIGINT, 143 for SIGTERM, as a shell reports them
      const stop = (sig: NodeJS.Signals) => {
        if (!interrupt.signal.aborted) code = sig === 'SIGTERM' ? 143 : 130;
        interrupt.abort();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      let fetched: FetchedCifar;
      try {
        fetched = await fetchCifar(name, {
          cache,
          url: flags.url,
          md5: flags.md5,
          signal: interrupt.signal,
          onProgress: bar?.update,
        });
      } catch (err) {
        if (interrupt.signal.aborted) {
          throw new ExitError(`interrupted: nothing of ${name} was kept in ${cache}`, code);
        }
        throw err;
      } finally {
        bar?.stop();
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      if (flags.json) {
        printJson({ dataset: name, ...fetched });
        return;
      }
      if (fetched.replaced) warnOnStderr(`replaced an invalid copy: ${fetched.replaced}`);
      console.log(fetchedLine(name, fetched));
    });
  return new Command('data').description('datasets torchfocal downloads').addCommand(fetch);
}

/** `cifar10: downloaded 170.1 MB (MD5 checked) into DIR: 50000 training and 10000 test images, 10 classes` */
export function fetchedLine(name: CifarName, f: FetchedCifar): string {
  const holds = `${f.train} training and ${f.test} test images, ${f.classes} classes`;
  if (!f.downloaded) {
    return `${name}: already in ${f.dir} (${holds}, checked); not downloaded again`;
  }
  const mb = ((f.bytes ?? 0) / 1e6).toFixed(1);
  return `${name}: downloaded ${mb} MB of ${CIFAR[name].title} (MD5 checked) into ${f.dir}: ${holds}`;
}
