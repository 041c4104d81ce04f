/**
 * Log lines that the alerts parse (infra/constructs/monitoring.ts) and syncTwins writes: one module both
 * import, so the two cannot drift apart. No imports here: the infra loads it without the function runtime.
 */

/** Prefix of the one summary line per syncTwins invocation, followed by its JSON. */
export const SUMMARY_PREFIX = 'syncTwins summary ';

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
