// Downloading a dataset archive into the cache: all or nothing. Everything happens in one
// temporary folder inside the cache (the same file system, so the last step is one rename),
// which is removed whatever happens: an HTTP error, a wrong MD5, a truncated archive, an abort.
import crypto from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import * as tar from 'tar';
import { isDirectory } from './dataset';
import { invalidArgument } from '../native';

export interface DownloadProgress {
  /** bytes received so far */
  received: number;
  /** the archive's size, when the server says it */
  total?: number;
}

export interface FetchArchiveOptions<T> {
  /** http(s); redirects are followed */
  url: string;
  /** the archive's expected MD5, hex */
  md5: string;
  /** the cache folder; created when missing */
  cache: string;
  /** the folder the archive must unpack to; it becomes `cache/folder` */
  folder: string;
  /** reads the unpacked folder, throwing when it is not what it should be */
  check: (dir: string) => Promise<T>;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
}

/**
 * Streams `url` to a temporary file while computing its MD5, checks the sum, unpacks the
 * archive (gzipped tar; regular files and folders only, no owners), checks that it holds
 * `folder`, reads that with `check`, then renames it to `cache/folder`, replacing what was
 * there. On any failure the cache is left as it was. Errors are one line, naming the URL.
 */
export async function fetchArchive<T>(
  options: FetchArchiveOptions<T>,
): Promise<{ dir: string; bytes: number; checked: T }> {
  const { url, cache, folder, signal } = options;
  const md5 = options.md5.toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(md5)) {
    throw invalidArgument(`--md5: '${options.md5}' is not an MD5 sum (32 hex digits)`);
  }
  const protocol = URL.canParse(url) ? new URL(url).protocol : undefined;
  if (protocol !== 'http:' && protocol !== 'https:') {
    throw invalidArgument(`--url: '${url}' is not an http(s) URL`);
  }
  await fs.mkdir(cache, { recursive: true });
  await removeAbandoned(cache, folder);
  const work = await fs.mkdtemp(path.join(cache, `${tempPrefix(folder)}${process.pid}-`));
  try {
    const archive = path.join(work, path.basename(new URL(url).pathname) || 'archive');
    const { bytes, sum } = await download(url, archive, signal, options.onProgress);
    if (sum !== md5) {
      throw new Error(
        `${url}: MD5 ${sum}, expected ${md5} (${bytes} bytes): a corrupt or different archive; nothing was kept`,
      );
    }
    throwIfAborted(signal);
    const unpacked = path.join(work, 'unpacked');
    await fs.mkdir(unpacked);
    unpack(archive, unpacked, url);
    throwIfAborted(signal);
    const inside = path.join(unpacked, folder);
    if (!(await isDirectory(inside))) {
      const found = (await fs.readdir(unpacked)).slice(0, 5).join(', ') || 'nothing';
      throw new Error(`${url}: the archive holds no ${folder}/ (it holds ${found})`);
    }
    const checked = await options.check(inside).catch((err: Error) => {
      // named as in the archive, not by the temporary folder that is about to go
      throw new Error(`${url}: unpacked, but ${err.message.split(inside).join(folder)}`);
    });
    throwIfAborted(signal);
    const dir = path.join(cache, folder);
    await install(inside, dir, work);
    return { dir, bytes, checked };
  } finally {
    await fs.rm(work, { recursive: true, force: true, maxRetries: 3 });
  }
}

// The temporary folders of a fetch of `folder` start with this, then the fetching process's id.
function tempPrefix(folder: string): string {
  return `.${folder}.tmp-`;
}

// Temporary folders left by a fetch whose process no longer runs (killed outright: no finally).
async function removeAbandoned(cache: string, folder: string): Promise<void> {
  const prefix = tempPrefix(folder);
  for (const name of await fs.readdir(cache)) {
    const pid = name.startsWith(prefix) ? Number(name.slice(prefix.length).split('-')[0]) : NaN;
    if (Number.isSafeInteger(pid) && pid > 0 && !isRunning(pid)) {
      await fs.rm(path.join(cache, name), { recursive: true, force: true });
    }
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // it runs, as another user
  }
}

// The body of `url` into `file`, hashed on the way; a transfer cut short is an error.
async function download(
  url: string,
  file: string,
  signal: AbortSignal | undefined,
  onProgress: ((p: DownloadProgress) => void) | undefined,
): Promise<{ bytes: number; sum: string }> {
  let response: Response;
  try {
    // identity: a server that gzips the transfer would have fetch inflate the .tar.gz itself
    response = await fetch(url, { signal, headers: { 'accept-encoding': 'identity' } });
  } catch (err) {
    throw signal?.aborted ? abortError() : new Error(`${url}: ${networkMessage(err)}`);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`.trimEnd());
  }
  const length = Number(response.headers.get('content-length'));
  const total = Number.isSafeInteger(length) && length > 0 ? length : undefined;
  const hash = crypto.createHash('md5');
  let received = 0;
  onProgress?.({ received, total });
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      received += chunk.length;
      onProgress?.({ received, total });
      done(null, chunk);
    },
  });
  try {
    const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
    await pipeline(body, tap, createWriteStream(file), { signal });
  } catch (err) {
    if (signal?.aborted) throw abortError();
    const of = total === undefined ? '' : ` of ${total}`;
    throw new Error(
      `${url}: the download broke off after ${received}${of} bytes (${networkMessage(err)})`,
    );
  }
  if (total !== undefined && received !== total) {
    throw new Error(`${url}: the download broke off after ${received} of ${total} bytes`);
  }
  return { bytes: received, sum: hash.digest('hex') };
}

// fetch's own message is 'fetch failed' or 'terminated'; the cause says what happened.
function networkMessage(err: unknown): string {
  const e = err as Error & { cause?: Error & { code?: string } };
  const cause = e.cause;
  if (cause?.message)
    return cause.code && !cause.message.includes(cause.code)
      ? `${cause.code}: ${cause.message}`
      : cause.message;
  return e.message;
}

// A gzipped tar into `dir`: regular files and folders only (a link could point out of the
// cache), permissions kept but never owners, any damage an error. Synchronous: the
// asynchronous extraction rejects at the first damage while its writes still go on, and they
// would race the removal of the temporary folder.
function unpack(archive: string, dir: string, url: string): void {
  try {
    tar.x({
      sync: true,
      file: archive,
      cwd: dir,
      strict: true,
      preserveOwner: false,
      filter: (_path, entry) => {
        const type = 'type' in entry ? entry.type : undefined;
        return type === 'File' || type === 'OldFile' || type === 'Directory';
      },
    });
  } catch (err) {
    throw new Error(`${url}: not a valid .tar.gz archive (${(err as Error).message})`);
  }
}

// Renames the checked folder into place. A copy already there was found invalid (or a fetch
// beside this one put it there): it is moved into the temporary folder, removed with it.
async function install(from: string, to: string, work: string): Promise<void> {
  try {
    await fs.rename(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    await fs.rename(to, path.join(work, 'replaced'));
    await fs.rename(from, to);
  }
}

function abortError(): Error {
  const err = new Error('the download was aborted; nothing was kept');
  err.name = 'AbortError';
  return err;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError();
}
