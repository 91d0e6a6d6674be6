// Option parsers for commander: each names the option and what was expected.
import { InvalidArgumentError, Option } from 'commander';
import type { Normalize } from '../train/options';

export function intAtLeast(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
      throw new InvalidArgumentError(`expected an integer >= ${min}, got '${value}'`);
    }
    return n;
  };
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new InvalidArgumentError(`expected a number > 0, got '${value}'`);
  }
  return n;
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new InvalidArgumentError(`expected a number >= 0, got '${value}'`);
  }
  return n;
}

/** `--alpha 1,1,1,1,1,1,100,1,1,1` (one per class), `--alpha 0.25` (all classes) or `auto`. */
export function alphaList(value: string): number | number[] | 'auto' {
  if (value === 'auto') return 'auto';
  const parts = value.split(',').map((s) => s.trim());
  const numbers = parts.map(Number);
  const bad = parts.findIndex((p, i) => p === '' || !Number.isFinite(numbers[i]) || numbers[i] < 0);
  if (bad >= 0) {
    throw new InvalidArgumentError(
      `'${parts[bad]}' is not a number >= 0 (give X, X,X,... or auto)`,
    );
  }
  return numbers.length === 1 ? numbers[0] : numbers;
}

export function oneOf(...allowed: string[]) {
  return (value: string): string => {
    if (!allowed.includes(value)) {
      throw new InvalidArgumentError(`expected one of ${allowed.join(', ')}, got '${value}'`);
    }
    return value;
  };
}

export function unitFraction(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 1) {
    throw new InvalidArgumentError(`expected a fraction in (0, 1], got '${value}'`);
  }
  return n;
}

export function probability(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n >= 1) {
    throw new InvalidArgumentError(`expected a number in [0, 1), got '${value}'`);
  }
  return n;
}

/** A fraction strictly between 0 and 1 (a share to hold out). */
export function fraction(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n >= 1) {
    throw new InvalidArgumentError(`expected a fraction in (0, 1), got '${value}'`);
  }
  return n;
}

/** `--max-pixels N` of the commands that decode image files (train, eval, predict). */
export function maxPixelsOption(description: string): Option {
  return new Option('--max-pixels <n>', description).argParser(intAtLeast(1));
}

/**
 * `--no-decode-cache`: decode an image folder afresh and keep nothing (the flag's value,
 * `decodeCache`, is true without it: decoded splits are kept in and read from the cache folder).
 */
export function noDecodeCacheOption(): Option {
  return new Option(
    '--no-decode-cache',
    'image folders: decode every image, neither reading nor keeping decoded splits in the cache folder',
  );
}

/** `--normalize none|dataset|imagenet|M1,M2,M3/S1,S2,S3` (figures checked by resolveOptions). */
export function normalizeSpec(value: string): Normalize {
  if (['none', 'dataset', 'imagenet'].includes(value)) return value as Normalize;
  if (/^[^/]+\/[^/]+$/.test(value)) return value as Normalize;
  throw new InvalidArgumentError(
    `expected none, dataset, imagenet or MEAN[,MEAN,MEAN]/STD[,STD,STD], got '${value}'`,
  );
}
