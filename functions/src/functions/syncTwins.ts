import { app } from '@azure/functions';
import { makeSyncTwins, SYNC_RETRY, type SyncTwinsHandler } from '../handlers/syncTwins';
import { functionAppRuntime } from '../runtime/build';
import { EVENT_HUBS_CONNECTION } from '../runtime/contracts';

// Registration only: the handler (handlers/syncTwins.ts) takes its runtime; this one is the function app's.
/** The registered handler, on the function app's runtime. */
export const syncTwins: SyncTwinsHandler = makeSyncTwins(() => functionAppRuntime().sync());

app.eventHub('syncTwins', {
  connection: EVENT_HUBS_CONNECTION,
  eventHubName: '%EVENTHUB_NAME%',
  consumerGroup: '%EVENTHUB_CONSUMER_GROUP%',
  cardinality: 'many',
  // Bodies as strings: the library JSON-parses each one it can (tryJsonParse) and hands over the rest as
  // strings, so one non-JSON event is dead-lettered instead of failing the batch.
  ...({ dataType: 'string' } as object),
  retry: SYNC_RETRY,
  handler: syncTwins,
});
