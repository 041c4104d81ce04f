/**
 * Request-unit estimates. The local server reports a charge of 1 for everything, so the bench counts
 * requests and bytes at the server and converts them with the charges Microsoft publishes per document
 * size (Microsoft Learn, "Understand request unit consumption in Azure Cosmos DB", table "Document size":
 * read and write RU at 1, 2, 4, ... 2,048 KB, session/eventual consistency, default indexing):
 *
 * - write (create / replace / upsert) and point read of a document of s KB: linear in s between the
 *   published sizes, the published 1 KB figure below 1 KB, and the last slope beyond 2 MB. (The earlier
 *   model was log-linear through three points and kept the 4-16 KB slope beyond 16 KB: it priced a 64 KB
 *   write at 12 RU where the table says 22.7, and a 16 KB read at 2.4 RU where the table says 1.67.);
 * - a point read that finds nothing (404) and a guarded write refused with 412/409: 1 RU each
 *   (Cosmos charges failed requests; 1 RU is the published floor);
 * - a single-partition query: 2.8 RU plus the read cost of the bytes returned above 1 KB.
 * Control-plane requests (account, database and container metadata) are not billed in RU.
 *
 * The write figures include indexing under the default policy, whose cost grows with the number of
 * indexed terms (properties) of the document. Both strategies write the same documents, so both pay the
 * same per-term cost; a narrower indexing policy lowers both alike and leaves the ratios as they are.
 */
const KB_POINTS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048];
const READ_RU = [1.0, 1.04, 1.14, 1.33, 1.67, 2.19, 4.76, 9.95, 20.28, 40.95, 145.9, 291.8];
const WRITE_RU = [4.95, 6.29, 6.67, 7.04, 9.52, 11.23, 22.67, 48.19, 98.29, 184.57, 625.0, 1250.0];

function interpolate(table: readonly number[], bytes: number): number {
  const kb = bytes / 1024;
  if (kb <= KB_POINTS[0]) return table[0];
  let i = 1;
  while (i < KB_POINTS.length - 1 && kb > KB_POINTS[i]) i++;
  const [k0, k1, r0, r1] = [KB_POINTS[i - 1], KB_POINTS[i], table[i - 1], table[i]];
  return r0 + ((r1 - r0) * (kb - k0)) / (k1 - k0);
}

export function writeRu(bytes: number): number {
  return interpolate(WRITE_RU, bytes);
}

export function readRu(bytes: number): number {
  return interpolate(READ_RU, bytes);
}

export const FAILED_REQUEST_RU = 1;
export const QUERY_BASE_RU = 2.8;

export function queryRu(responseBytes: number): number {
  return QUERY_BASE_RU + Math.max(0, readRu(responseBytes) - 1);
}

export const RU_FORMULA =
  'write and point read: linear in KB between Microsoft\'s published charges per document size (write 1 KB=4.95, 4 KB=6.67, 16 KB=9.52, 64 KB=22.67; ' +
  'read 1 KB=1.00, 16 KB=1.67, 64 KB=4.76, 128 KB=9.95; default indexing, both strategies pay the same per-term cost); 404 read / 412 write: 1 RU; ' +
  'query: 2.8 RU + read cost above 1 KB; sizes are the request body (writes) or response body (reads) measured at the server';

/** RU of one request as the server saw it. */
export function requestRu(kind: string, status: number, requestBytes: number, responseBytes: number): number {
  if (kind === 'control-plane') return 0;
  const ok = status >= 200 && status < 300;
  if (kind === 'write') return ok ? writeRu(requestBytes) : FAILED_REQUEST_RU;
  if (kind === 'read') return ok ? readRu(responseBytes) : FAILED_REQUEST_RU;
  if (kind === 'query' || kind === 'readfeed') return queryRu(responseBytes);
  return FAILED_REQUEST_RU;
}
