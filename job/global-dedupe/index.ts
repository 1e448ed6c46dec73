// Global dedupe across ranks (issue 13, item 4): keys pass per rank, one global step, drop operators per rank.
export {
  writeDedupeKeys,
  dedupeSettings,
  filterSettings,
  type WriteDedupeKeysOptions,
  type KeysPassResult,
} from './keys-pass.js';
export type { DedupeKeysConfig, PlannedShard } from './keys-pass.js';
export {
  findGlobalDuplicates,
  SUMMARY_FILE,
  type GlobalDedupeOptions,
  type GlobalDedupeSummary,
} from './find-duplicates.js';
export {
  readDropList,
  dropListFile,
  type GlobalDrop,
  type GlobalDedupeStage,
  type DropList,
} from './drop-list.js';
export {
  globalDuplicateDrop,
  globalDedupeStages,
  readRankDropLists,
  type RankDropLists,
} from './operator.js';
export { GlobalDedupeError, type GlobalDedupeCode } from './errors.js';
export {
  keyFilesComplete,
  keyFileNames,
  keyMetaMatches,
  type DedupeSettings,
  type KeyFileMeta,
} from './key-file.js';
