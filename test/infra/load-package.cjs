// Loads a built functions package the way the Functions host does: require(package.json main)
// with `@azure/functions-core` provided from outside the bundle. Prints the registrations as JSON.
// Usage: node load-package.cjs <packageDir> [--without-core]
const path = require('node:path');
const Module = require('node:module');

const [packageDir, flag] = process.argv.slice(2);
const registered = [];
let programmingModel;
const core = {
  setProgrammingModel(model) {
    programmingModel = model;
  },
  getProgrammingModel() {},
  registerHook() {
    return { dispose() {} };
  },
  registerFunction(metadata) {
    registered.push({ name: metadata.name, bindings: metadata.bindings, retryOptions: metadata.retryOptions });
    return { dispose() {} };
  },
  log() {},
};
if (flag !== '--without-core') {
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    return request === '@azure/functions-core' ? '@azure/functions-core' : resolve.call(this, request, ...rest);
  };
  const stub = new Module('@azure/functions-core');
  stub.exports = core;
  stub.loaded = true;
  require.cache['@azure/functions-core'] = stub;
}
const warnings = [];
console.warn = (...args) => warnings.push(args.join(' '));
const pkg = require(path.join(packageDir, 'package.json'));
require(path.join(packageDir, pkg.main));
// Registration happens synchronously at module load; give promise-based module code a tick anyway.
// Then, as the worker does after loading the app (getWorkerCapabilities), ask the programming model for its capabilities.
setImmediate(async () => {
  const capabilities = programmingModel?.getCapabilities ? await programmingModel.getCapabilities({ TypedDataCollection: 'true' }) : undefined;
  process.stdout.write(JSON.stringify({ registered, warnings, capabilities }));
});
