/**
 * Strings and limits shared by the function code and the infrastructure (infra/constructs/function-app.ts
 * sets the app settings, infra/constructs/monitoring.ts parses the log lines, functions/build.ts writes
 * host.json): one module both import, so the two sides cannot drift apart. No imports here: the infra and
 * the package build load it without the function runtime.
 */

/** Connection prefix of the Event Hubs trigger: `IOTHUB_EVENTS__fullyQualifiedNamespace` and friends. */
export const EVENT_HUBS_CONNECTION = 'IOTHUB_EVENTS';

/**
 * App settings the infrastructure sets on the function app and the function code reads
 * (runtime/settings.ts reads every one of them, nowhere else does).
 */
export const INFRA_APP_SETTINGS = [
  'AZURE_CLIENT_ID',
  'COSMOS_ENDPOINT', 'COSMOS_DATABASE', 'COSMOS_CONTAINER',
  'EVENTHUB_NAME', 'EVENTHUB_CONSUMER_GROUP',
  'DEADLETTER_BLOB_ENDPOINT', 'DEADLETTER_CONTAINER', 'REPORTS_CONTAINER', 'TOMBSTONE_TTL_SECONDS',
  'SYNC_ATTEMPTS_BLOB_ENDPOINT', 'SYNC_ATTEMPTS_CONTAINER',
  'IOTHUB_HOSTNAME', 'VERIFY_SCHEDULE',
] as const;

/**
 * Settings the code also reads that the infrastructure may leave unset: the hub's tier (set when the
 * hub's tier is known: always for a created hub, when declared for an attached one), local servers,
 * overrides for operators.
 */
export const OPTIONAL_APP_SETTINGS = [
  'IOTHUB_SKU', 'IOTHUB_UNITS',
  'COSMOS_KEY', 'DEADLETTER_CONNECTION_STRING', 'SYNC_CONCURRENCY',
  'VERIFY_MAX_MINUTES', 'VERIFY_QUERIES_PER_MINUTE', 'VERIFY_TWIN_READS_PER_SECOND', 'VERIFY_PAGE_SIZE',
] as const;

export type InfraAppSetting = (typeof INFRA_APP_SETTINGS)[number];
export type AppSettingName = InfraAppSetting | (typeof OPTIONAL_APP_SETTINGS)[number];

/** Prefix of the one summary line per syncTwins invocation, followed by its JSON. */
export const SUMMARY_PREFIX = 'syncTwins summary ';

/** Prefix of the one summary line per verifyRepair run, followed by its JSON. */
export const VERIFY_SUMMARY_PREFIX = 'verifyRepair summary ';

/**
 * Prefix of the last-resort lines, one per event, when the dead-letter store failed on the batch's final
 * try. Each carries identifiers and where the event still is (partition, sequence number, offset), never
 * its body or properties, so the logs do not widen who can read device data.
 */
export const LAST_RESORT_PREFIX = 'syncTwins dead letter not stored ';

/**
 * Application Insights cuts a trace message at 32,768 characters (Microsoft Learn, Application Insights
 * limits: "Trace and exception message length"). Every line written here stays below it.
 */
export const TRACE_MESSAGE_LIMIT = 32_768;

/**
 * Fields of the summary line the alerts read. `final` is true on the invocation after which the trigger
 * moves on (it succeeded, or it was the retry policy's last try): counting only final lines counts each
 * batch once however often it was retried.
 */
export interface SummaryLineFields {
  final: boolean;
  received: number;
  deadLettered: number;
  /** Events written to the log by the last resort instead of the dead-letter store. */
  lastResort: number;
}

/**
 * Time limits shared by the function code and the package build (functions/build.ts writes
 * FUNCTION_TIMEOUT into host.json). Flex Consumption's default functionTimeout is 30 minutes (Microsoft
 * Learn, "Azure Functions hosting options" / host.json reference: functionTimeout); it is set explicitly
 * so the verify timer's own deadline always falls before the host's, leaving time to write the report and
 * the saved continuation.
 */
export const FUNCTION_TIMEOUT_MINUTES = 30;
/** host.json `functionTimeout` (hh:mm:ss). */
export const FUNCTION_TIMEOUT = `00:${String(FUNCTION_TIMEOUT_MINUTES).padStart(2, '0')}:00`;
/** Default VERIFY_MAX_MINUTES. */
export const DEFAULT_VERIFY_MAX_MINUTES = 25;
/** Minutes the timer keeps between its deadline and the host's timeout (report + state writes). */
export const VERIFY_MARGIN_MINUTES = 2;
