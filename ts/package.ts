// Where this package is installed, and its version.
import fs from 'node:fs';
import path from 'node:path';

/** The package's root folder (the compiled files sit in dist/ts/ below it). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');

let version: string | undefined;

/** The version in the package's package.json. */
export function packageVersion(): string {
  version ??= (
    JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {
      version: string;
    }
  ).version;
  return version;
}
