/**
 * The core's one public entry: what the CLI (tools/), the local run (local/) and the bench (bench/) use.
 * Nothing here registers a function (functions/src/index.ts does): importing it has no side effect.
 */
export { BlobDeadLetterSink, deadLetterBlobName } from './adapters/blobDeadLetters';
export type { AttemptCounter } from './adapters/attemptCounter';
export { CosmosTwinStore, stripSystemFields } from './adapters/cosmosStore';
export { processCredential } from './adapters/credentials';
export { MemoryDeadLetterSink } from './adapters/memoryDeadLetters';
export { MemoryTwinStore } from './adapters/memoryStore';
export { CosmosReplicaIndex } from './adapters/replicaIndex';
export { hubBudgets, parseRetryAfter, QueryPager, TwinQueryError, type PagerOptions, type TwinQuery, type TwinQueryPage } from './adapters/twinQuery';
export { explain, ReplicaReader } from './client';
export { makeSyncTwins, pairTriggerBatch, SYNC_RETRY, toRawEvents, type SyncTwinsHandler } from './handlers/syncTwins';
export { makeVerifyRepair, type VerifyRepairHandler } from './handlers/verifyRepair';
export { parseQuery, resolvePath, translate, type Expr } from './query';
export { buildSyncRuntime, buildVerifyRuntime, createAttemptCounter, createBlobContainer, createCosmosClient, createDeadLetterContainer, createTwinQuery, type BuildOptions, type SyncRuntime, type VerifyRuntime } from './runtime/build';
export { isLoopback, parseHubHost } from './adapters/endpoints';
export { ConfigError, hubHostName, parseNumber, processEnv, readReplicaSettings, readSettings, readVerifySettings, type Env, type NumberSpec, type SyncSettings } from './runtime/settings';
export { DEFAULT_QUERY_LAG_MS } from './scan/common';
export { newBackfillState, runBackfill, type BackfillReport, type BackfillState } from './scan/backfill';
export { runVerify, type ReplicaIndex, type VerifyReport } from './scan/verify';
export { backoffDelay, sleep, type Backoff } from './sync/backoff';
export { forEachConcurrently } from './sync/concurrency';
export { DocCache } from './sync/cache';
export { SyncEngine, type BatchResult, type EventOutcome, type SyncSummary } from './sync/engine';
export { classify } from './sync/events';
export { encodeDocId } from './sync/ids';
export { applyEvent } from './sync/rules';
export type { DeadLetter, DeadLetterSink, StoredDeadLetter, StoredDoc, TwinStore, WriteOp, WriteResult } from './sync/ports';
export { DEAD_LETTER_REASONS, type DeadLetterReason, type DocKey, type JsonObject, type TwinDoc, type TwinEvent } from './sync/types';
