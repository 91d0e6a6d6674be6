import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, runProcess, tempDir } from './helpers/cli';

// npm's install step (scripts/install.js) where CMake finds no LibTorch: one paragraph that says
// what to install, not CMake's trace. Run from a copy of the script and CMakeLists.txt, so that
// this checkout's build/ is left alone.
test('install without a LibTorch fails in one paragraph naming the three ways to get one', async (t) => {
  const pkg = tempDir('torchfocal-install-');
  fs.mkdirSync(path.join(pkg, 'scripts'));
  fs.copyFileSync(
    path.join(ROOT, 'scripts', 'install.js'),
    path.join(pkg, 'scripts', 'install.js'),
  );
  // package.json too: its Node-API versions tell cmake-js to use node-api-headers (else it
  // downloads Node's own headers)
  for (const file of ['CMakeLists.txt', 'package.json']) {
    fs.copyFileSync(path.join(ROOT, file), path.join(pkg, file));
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
  const r = await runProcess(process.execPath, [
    path.join(pkg, 'scripts', 'install.js'),
    // find_package(Torch) then finds nothing, wherever LibTorch is installed
    '--CDCMAKE_DISABLE_FIND_PACKAGE_Torch=TRUE',
  ]);
  t.is(r.code, 1);
  const paragraph = r.stderr.trim();
  t.regex(paragraph, /^torchfocal: LibTorch was not found\./);
  t.regex(paragraph, /apt-get install libtorch-dev/);
  t.regex(paragraph, /torch\.utils\.cmake_prefix_path/);
  t.regex(paragraph, /LIBTORCH=\/path\/to\/libtorch/);
  t.regex(paragraph, /Then install again\.$/);
  t.notRegex(r.stderr + r.stdout, /CMake Error|OMG|ERR!/);
  // the whole output is kept for whoever wants it
  t.regex(fs.readFileSync(path.join(pkg, 'build', 'install.log'), 'utf8'), /LibTorch not found/);
});
