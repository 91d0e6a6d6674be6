import test from 'ava';
import { decodeSafetensors, encodeSafetensors } from '../ts/io/safetensors';
import type { NativeTensor } from '../ts/native';

function sample(): NativeTensor[] {
  const w = new Float32Array([1.5, -2, 3.25, 0, 7, -0.5]);
  const n = new BigInt64Array([42n]);
  return [
    { name: '0.weight', dtype: 'F32', shape: [2, 3], data: new Uint8Array(w.buffer) },
    { name: '1.num_batches_tracked', dtype: 'I64', shape: [], data: new Uint8Array(n.buffer) },
  ];
}

test('round trip keeps names, shapes, dtypes and bytes; header is 8-byte aligned', (t) => {
  const buf = encodeSafetensors(sample(), { format: 'pt' });
  const headerLen = Number(buf.readBigUInt64LE(0));
  t.is(headerLen % 8, 0);
  const back = decodeSafetensors(buf, 'x.safetensors');
  t.deepEqual(back.metadata, { format: 'pt' });
  t.deepEqual(
    back.tensors.map((x) => [x.name, x.dtype, x.shape]),
    [
      ['0.weight', 'F32', [2, 3]],
      ['1.num_batches_tracked', 'I64', []],
    ],
  );
  const w = back.tensors[0].data as Uint8Array;
  t.deepEqual(Array.from(new Float32Array(new Uint8Array(w).buffer)), [1.5, -2, 3.25, 0, 7, -0.5]);
});

function corrupt(mutate: (buf: Buffer) => Buffer): string {
  const buf = mutate(encodeSafetensors(sample()));
  try {
    decodeSafetensors(buf, 'bad.safetensors');
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}

test('malformed files are refused with a message naming the file and the fault', (t) => {
  t.regex(
    corrupt((b) => b.subarray(0, 4)),
    /^bad\.safetensors: .*too short/,
  );
  t.regex(
    corrupt((b) => {
      b.writeBigUInt64LE(10n ** 12n, 0);
      return b;
    }),
    /header claims/,
  );
  t.regex(
    corrupt((b) => b.subarray(0, b.length - 4)),
    /offsets outside|after the last|overlaps/,
  );
  t.regex(
    corrupt((b) => Buffer.concat([b, Buffer.alloc(3)])),
    /3 bytes after the last tensor/,
  );
  t.regex(
    corrupt((b) => {
      b.write('{', 8);
      b.write('!', 9);
      return b;
    }),
    /not JSON/,
  );
  const wrongShape = encodeSafetensors([{ ...sample()[0], shape: [3, 3] }]);
  t.throws(() => decodeSafetensors(wrongShape, 'w.safetensors'), { message: /needs 36/ });
});
