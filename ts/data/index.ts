// The data layer: datasets by name or folder, and class imbalance.
import { isDirectory, type DataSplit } from './dataset';
import { loadImageFolder, looksLikeImageFolder } from './imagefolder';
import { loadFashionMnist, loadIdxFolder, loadMnist, looksLikeIdxFolder } from './mnist';

export { classCounts, subset } from './dataset';
export type { Dataset, DataSplit } from './dataset';
export { readIdx, parseIdx, loadIdxPair } from './idx';
export type { Idx } from './idx';
export {
  loadMnist,
  loadFashionMnist,
  loadIdxFolder,
  looksLikeIdxFolder,
  MNIST_CLASSES,
  FASHION_MNIST_CLASSES,
  FASHION_MNIST_DIR,
} from './mnist';
export {
  loadImageFolder,
  looksLikeImageFolder,
  decodeGrayscale,
  isImageFile,
  IMG_EXTENSIONS,
} from './imagefolder';
export {
  parseImbalance,
  applyImbalance,
  imbalance,
  imbalanceCounts,
  keepCounts,
} from './imbalance';

/**
 * 'mnist', 'fashion-mnist', or a folder: either ROOT/{training,testing}/<class>/* images or
 * MNIST's four IDX files (raw or .gz).
 */
export async function loadDataset(spec: string): Promise<DataSplit> {
  if (spec === 'mnist') return loadMnist();
  if (spec === 'fashion-mnist') return loadFashionMnist();
  if (!(await isDirectory(spec))) {
    throw new Error(`--dataset: '${spec}' is neither mnist, fashion-mnist nor an existing folder`);
  }
  // A folder with training/ is an image folder even if IDX files lie beside it.
  if (!(await looksLikeImageFolder(spec)) && (await looksLikeIdxFolder(spec))) {
    return loadIdxFolder(spec);
  }
  return loadImageFolder(spec);
}
