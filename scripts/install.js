#!/usr/bin/env node
// npm's install step: builds the addon (build/Release/torchfocal.node) with cmake-js. The whole
// build output goes to build/install.log; a failure prints its reason in one paragraph (what to
// install, where the log is) instead of CMake's trace. Extra arguments go to cmake-js.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const log = path.join(root, 'build', 'install.log');

function fail(paragraph) {
  process.stderr.write(`\n${paragraph.trimEnd()}\n\n`);
  process.exit(1);
}

const cmake = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
if (cmake.error || cmake.status !== 0) {
  fail(
    'torchfocal: CMake (3.18 or newer) and a C++17 compiler are needed to build the addon. ' +
      'On Debian/Ubuntu: sudo apt-get install cmake ninja-build build-essential libtorch-dev ' +
      "(or run the package's scripts/setup.sh), then install again.",
  );
}

// The output is collected outside build/, which cmake-js empties when it retries a failed build.
const temp = path.join(os.tmpdir(), `torchfocal-install-${process.pid}.log`);
const started = Date.now();
const fd = fs.openSync(temp, 'w');
const build = spawnSync(
  process.execPath,
  [
    require.resolve('cmake-js/bin/cmake-js'),
    'compile',
    '--release',
    '--out',
    'build',
    ...process.argv.slice(2),
  ],
  { cwd: root, stdio: ['ignore', fd, fd] },
);
fs.closeSync(fd);
const output = fs.readFileSync(temp, 'utf8');
fs.mkdirSync(path.dirname(log), { recursive: true });
fs.copyFileSync(temp, log);
fs.rmSync(temp, { force: true });
if (build.status === 0) {
  process.stdout.write(
    `torchfocal: addon built in ${((Date.now() - started) / 1000).toFixed(0)} s (log: ${log})\n`,
  );
  process.exit(0);
}

// CMakeLists.txt prints this paragraph when no LibTorch is found.
const notFound = output.indexOf('torchfocal: LibTorch was not found.');
if (notFound >= 0) fail(output.slice(notFound, output.indexOf('\n\n', notFound) + 1 || undefined));
const errors = output
  .split('\n')
  .filter((line) => /error|Error|ERROR/.test(line))
  .slice(0, 12);
fail(
  `torchfocal: the addon build failed (${build.error?.message ?? `exit ${build.status}`}). ` +
    `First errors:\n${errors.join('\n')}\nThe whole output is in ${log}.`,
);
