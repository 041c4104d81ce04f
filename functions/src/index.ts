// The Functions host loads this file (package.json "main"); every function registers itself on import.
import './functions/syncTwins';
import './functions/verifyRepair';
