/**
 * Request-unit estimates. The local server reports a charge of 1 for everything, so the bench counts
 * requests and bytes at the server and converts them with Cosmos DB's published costs:
 *
 * - write (create / replace / upsert) of a document of s KB, default indexing: through the published
 *   points 1 KB ≈ 5 RU, 4 KB ≈ 6.7 RU, 16 KB ≈ 9.5 RU, linear in log2(s) between them (+0.85 RU per
 *   doubling up to 4 KB, +1.4 RU per doubling above), 5 RU below 1 KB, and the last slope beyond 16 KB;
 * - point read of s KB: 1 RU at 1 KB, 10 RU at 100 KB, linear in between: 1 + 9 (s − 1) / 99, at least 1;
 * - a point read that finds nothing (404) and a guarded write refused with 412/409: 1 RU each
 *   (Cosmos charges failed requests; 1 RU is the published floor);
 * - a single-partition query: 2.8 RU plus the read cost of the bytes returned above 1 KB.
 * Control-plane requests (account, database and container metadata) are not billed in RU.
 */
const WRITE_POINTS: [number, number][] = [
  [1, 5],
  [4, 6.7],
  [16, 9.5],
];

export function writeRu(bytes: number): number {
  const kb = Math.max(bytes, 1) / 1024;
  if (kb <= 1) return 5;
  const x = Math.log2(kb);
  for (let i = 1; i < WRITE_POINTS.length; i++) {
    const [k0, r0] = WRITE_POINTS[i - 1];
    const [k1, r1] = WRITE_POINTS[i];
    if (kb <= k1 || i === WRITE_POINTS.length - 1) {
      const x0 = Math.log2(k0);
      const x1 = Math.log2(k1);
      return r0 + ((r1 - r0) * (x - x0)) / (x1 - x0);
    }
  }
  return 5;
}

export function readRu(bytes: number): number {
  const kb = bytes / 1024;
  return Math.max(1, 1 + (9 * (kb - 1)) / 99);
}

export const FAILED_REQUEST_RU = 1;
export const QUERY_BASE_RU = 2.8;

export function queryRu(responseBytes: number): number {
  return QUERY_BASE_RU + Math.max(0, readRu(responseBytes) - 1);
}

export const RU_FORMULA =
  'write: 5 RU ≤1 KB, then linear in log2(KB) through 4 KB=6.7 and 16 KB=9.5 (slope kept beyond); ' +
  'point read: max(1, 1 + 9·(KB−1)/99) (1 KB=1, 100 KB=10); 404 read / 412 write: 1 RU; query: 2.8 RU + read cost above 1 KB; ' +
  'sizes are the request body (writes) or response body (reads) measured at the server';

/** RU of one request as the server saw it. */
export function requestRu(kind: string, status: number, requestBytes: number, responseBytes: number): number {
  if (kind === 'control-plane') return 0;
  const ok = status >= 200 && status < 300;
  if (kind === 'write') return ok ? writeRu(requestBytes) : FAILED_REQUEST_RU;
  if (kind === 'read') return ok ? readRu(responseBytes) : FAILED_REQUEST_RU;
  if (kind === 'query' || kind === 'readfeed') return queryRu(responseBytes);
  return FAILED_REQUEST_RU;
}
