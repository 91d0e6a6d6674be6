// The GPU tests: run by scripts/gpu-check.sh on a machine with CUDA (`npm test` never runs them).
export default {
  files: ['test/gpu/**/*.gpu.ts'],
  typescript: { rewritePaths: { 'test/': 'dist/test/' }, compile: false },
  timeout: '5m',
  concurrency: 1,
};
