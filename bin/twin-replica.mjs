#!/usr/bin/env node
// npx twin-replica <command>: runs tools/cli.ts through tsx's API (TypeScript runs through tsx in this project).
import { tsImport } from 'tsx/esm/api';

const { main } = await tsImport('../tools/cli.ts', import.meta.url);
// Clients keep sockets alive (keep-alive agents): exit explicitly once the command is done.
process.exit(await main(process.argv));
