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
