// What applications import: `import { ReplicaReader } from 'twin-replica/client'`.
export { explain, ReplicaReader, toTwin, type QueryOptions, type QueryPage, type ReplicaReaderOptions, type Row, type Twin } from './replicaReader';
export { QueryError, SUPPORTED_FUNCTIONS, translate, type Plan } from '../query';
