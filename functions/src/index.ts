import { app } from '@azure/functions';
// The Functions host loads this file (package.json "main"); every function registers itself on import.
import './functions/syncTwins';
import './functions/verifyRepair';

/**
 * Worker capabilities, merged into the worker's init response (@azure/functions ProgrammingModel.getCapabilities,
 * which azure-functions-nodejs-worker getWorkerCapabilities calls after loading this file; setup is locked
 * only then, so its place after the registrations does not matter).
 *
 * IncludeEmptyEntriesInMessagePayload: without it the Functions host drops empty and null bodies from a
 * batch's message array while the trigger metadata arrays keep every entry (azure-functions-host
 * GrpcMessageConversionExtensions.ToRpcStringArray; host 4.12+), so bodies and metadata no longer line up.
 * With it, an empty body arrives as '' in its place and is dead-lettered as malformed. The host tests the
 * capability for any non-blank value. syncTwins still refuses to pair by position when the counts differ.
 */
export const WORKER_CAPABILITIES = { IncludeEmptyEntriesInMessagePayload: 'true' } as const;
app.setup({ capabilities: WORKER_CAPABILITIES });
