// The safetensors format (8-byte little-endian header length, JSON header, raw data), so that
// Python users load torchfocal weights with `safetensors.torch.load_file`.
import fs from 'node:fs/promises';
import writeFileAtomic from 'write-file-atomic';
import type { NativeTensor } from '../native';

const DTYPE_BYTES: Record<NativeTensor['dtype'], number> = {
  F32: 4,
  I64: 8,
  U8: 1,
  F64: 8,
  F16: 2,
  BF16: 2,
};
// Refuse absurd headers before parsing them (the reference implementation uses 100 MB).
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsFile {
  tensors: NativeTensor[];
  metadata: Record<string, string>;
}

export function encodeSafetensors(
  tensors: NativeTensor[],
  metadata: Record<string, string> = {},
): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = byteView(t.data).byteLength;
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json, ...tensors.map((t) => byteView(t.data))]);
}

export async function writeSafetensors(
  file: string,
  tensors: NativeTensor[],
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}

/** Parses and checks a whole file: sizes, offsets and dtypes are never trusted. */
export function decodeSafetensors(buf: Buffer, name: string): SafetensorsFile {
  const fail = (what: string): never => {
    throw new Error(`${name}: not a valid safetensors file: ${what}`);
  };
  if (buf.length < 8) fail(`${buf.length} bytes is too short for a header`);
  const headerBytes = buf.readBigUInt64LE(0);
  if (headerBytes > BigInt(Math.min(MAX_HEADER_BYTES, buf.length - 8))) {
    fail(`header claims ${headerBytes} bytes but the file holds ${buf.length - 8}`);
  }
  const dataStart = 8 + Number(headerBytes);
  let header: unknown;
  try {
    header = JSON.parse(buf.subarray(8, dataStart).toString('utf8'));
  } catch (err) {
    fail(`header is not JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    fail('header is not a JSON object');
  }
  const entries = Object.entries(header as Record<string, unknown>);
  const metadata: Record<string, string> = {};
  const tensors: NativeTensor[] = [];
  const dataBytes = buf.length - dataStart;
  const spans: [number, number][] = [];
  for (const [key, value] of entries) {
    if (key === '__metadata__') {
      Object.assign(metadata, value);
      continue;
    }
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof v.dtype !== 'string' || !(v.dtype in DTYPE_BYTES)) {
      fail(`tensor '${key}' has unsupported dtype ${JSON.stringify(v.dtype)}`);
    }
    const shape = v.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor '${key}' has an invalid shape`);
    }
    const offsets = v.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1] ||
      offsets[1] > dataBytes
    ) {
      fail(`tensor '${key}' has data offsets outside the file's ${dataBytes} data bytes`);
    }
    const [begin, end] = offsets as [number, number];
    const dtype = v.dtype as NativeTensor['dtype'];
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (elements * DTYPE_BYTES[dtype] !== end - begin) {
      fail(
        `tensor '${key}' spans ${end - begin} bytes but its shape needs ${elements * DTYPE_BYTES[dtype]}`,
      );
    }
    spans.push([begin, end]);
    tensors.push({
      name: key,
      dtype,
      shape: shape as number[],
      data: buf.subarray(dataStart + begin, dataStart + end),
    });
  }
  // Tensors must tile the data area without overlap, as the format requires.
  spans.sort((a, b) => a[0] - b[0]);
  let cursor = 0;
  for (const [begin, end] of spans) {
    if (begin !== cursor) fail('tensor data overlaps or leaves gaps');
    cursor = end;
  }
  if (cursor !== dataBytes) fail(`${dataBytes - cursor} bytes after the last tensor`);
  return { tensors, metadata };
}

export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  return decodeSafetensors(await fs.readFile(file), file);
}

function byteView(data: ArrayBuffer | Uint8Array): Uint8Array {
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}
