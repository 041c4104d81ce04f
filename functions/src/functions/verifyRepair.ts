import { app } from '@azure/functions';
import { makeVerifyRepair, type VerifyRepairHandler } from '../handlers/verifyRepair';
import { functionAppRuntime } from '../runtime/build';

// Registration only: the handler (handlers/verifyRepair.ts) takes its runtime; this one is the function app's.
/** The registered handler, on the function app's runtime. */
export const verifyRepair: VerifyRepairHandler = makeVerifyRepair(() => functionAppRuntime().verify());

app.timer('verifyRepair', {
  schedule: '%VERIFY_SCHEDULE%',
  handler: verifyRepair,
});
