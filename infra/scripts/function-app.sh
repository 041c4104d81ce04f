#!/usr/bin/env bash
# Post-apply steps for the Flex Consumption function app, run by `cdktf deploy` through two
# `terraform_data` local-exec steps (infra/constructs/function-app.ts). A shell script, not
# TypeScript, because it must run wherever Terraform runs with nothing but bash and the Azure CLI.
#
#   function-app.sh remove-storage-setting   delete the AzureWebJobsStorage app setting
#   function-app.sh publish                  OneDeploy the package (bounded, retried), then sync triggers
#
# Inputs (environment): SUBSCRIPTION_ID RESOURCE_GROUP FUNCTION_APP, plus FUNCTION_APP_ID and
# PACKAGE_ZIP for publish. Bounds, in seconds (tests shrink them):
#   TWIN_REPLICA_PUBLISH_ATTEMPT_SECONDS  one OneDeploy attempt            (default 600)
#   TWIN_REPLICA_PUBLISH_TOTAL_SECONDS    every attempt together           (default 1800)
#   TWIN_REPLICA_PUBLISH_RETRY_SECONDS    pause between attempts           (default 30)
#   TWIN_REPLICA_AZ_SECONDS               any other single az call         (default 180)
#
# Why each step exists (sources in docs/azure-behaviours.md, "Deployment"):
# - remove-storage-setting: azurerm 4.55.0 writes a key-less AzureWebJobsStorage connection string
#   on every create and update of a Flex app (function_app_flex_consumption_resource.go, the
#   StorageStringFmt use in Create and Update). The WebJobs SDK treats any non-null
#   AzureWebJobsStorage as a connection string (StorageClientProvider.IsConnectionStringPresent:
#   `section.Value != null`) and then ignores AzureWebJobsStorage__accountName: the host would
#   have no checkpoints, no timer lock and no keys. The setting must be absent.
# - publish bounds: for Flex apps `az functionapp deployment source config-zip` sleeps 60 s after
#   the upload and then polls /admin/host/status in a loop that never counts its tries
#   (azure-cli appservice/custom.py, check_flex_app_after_deployment), and local-exec has no
#   timeout: an unhealthy host would hold `cdktf deploy` forever.
# - CI sign-in: the GitHub OIDC assertion azure/login hands the CLI lives about 5 minutes and the
#   CLI cannot renew it (Azure/login#372, Azure/azure-cli#28708); these steps run after a long
#   apply, so in GitHub Actions they sign in again with a fresh assertion first.
set -euo pipefail

AZ=${AZ:-az}
ATTEMPT_SECONDS=${TWIN_REPLICA_PUBLISH_ATTEMPT_SECONDS:-600}
TOTAL_SECONDS=${TWIN_REPLICA_PUBLISH_TOTAL_SECONDS:-1800}
RETRY_SECONDS=${TWIN_REPLICA_PUBLISH_RETRY_SECONDS:-30}
AZ_SECONDS=${TWIN_REPLICA_AZ_SECONDS:-180}

# Scratch files live in a directory of our own, removed on exit: a bare mktemp name, once
# removed, can be handed to another process.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/twin-replica-function-app.XXXXXX")
# Only the main shell cleans up: bash may run an inherited EXIT trap in a subshell that sets
# traps of its own (the watchdog below), which would delete the files mid-run. ($BASHPID would
# say which shell this is, but macOS ships bash 3.2, which lacks it.)
MAIN_SHELL=$$
in_main_shell() { [[ "$(exec sh -c 'echo "$PPID"')" == "$MAIN_SHELL" ]]; }
trap 'in_main_shell && rm -rf "$WORK"' EXIT

say() { echo "function-app.sh: $*" >&2; }

fail() {
  say "FAILED: $1"
  shift
  local line
  for line in "$@"; do echo "  - $line" >&2; done
  exit 1
}

require() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || fail "environment variable $name is not set" "this script is run by the terraform_data steps of infra/constructs/function-app.ts, which set it"
  done
}

# Runs "$@" for at most $1 seconds. Returns the command's exit code, or 124 when the bound
# killed it. The command runs in its own process group (set -m) so that the whole tree dies
# (the `az` launcher starts Python as a child). Portable bash: no coreutils `timeout`, which
# macOS lacks (the script keeps to bash 3.2, macOS's /bin/bash). The watchdog's output is
# detached: a leftover process holding Terraform's pipe would keep local-exec waiting.
run_bounded() {
  local seconds=$1
  shift
  local marker
  marker=$(mktemp "$WORK/timed-out.XXXXXX")
  rm -f "$marker"
  set -m
  "$@" &
  local pid=$!
  set +m
  (
    trap - EXIT
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$seconds" &
    sleeper=$!
    wait "$sleeper"
    touch "$marker"
    kill -TERM -- "-$pid" 2>/dev/null
    sleep 5 &
    sleeper=$!
    wait "$sleeper"
    kill -KILL -- "-$pid" 2>/dev/null
  ) </dev/null >/dev/null 2>&1 &
  local watchdog=$!
  local rc=0
  wait "$pid" || rc=$?
  kill -TERM "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  if [[ -e "$marker" ]]; then
    rc=124
    rm -f "$marker"
  fi
  return "$rc"
}

# GitHub Actions only: sign the CLI in again with a fresh OIDC assertion, as azure/login does.
ci_sign_in() {
  if [[ "${GITHUB_ACTIONS:-}" != true || "${ARM_USE_OIDC:-}" != true || -z "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ]]; then
    return 0
  fi
  require ARM_CLIENT_ID ARM_TENANT_ID ACTIONS_ID_TOKEN_REQUEST_TOKEN
  local response assertion
  response=$(run_bounded 60 curl -sSf -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
    "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=api://AzureADTokenExchange") ||
    fail "could not get a GitHub OIDC token" "the job needs 'permissions: id-token: write'"
  assertion=$(printf '%s' "$response" | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>process.stdout.write(JSON.parse(s).value))') ||
    fail "the GitHub OIDC token response had no value"
  run_bounded "$AZ_SECONDS" "$AZ" login --service-principal --username "$ARM_CLIENT_ID" --tenant "$ARM_TENANT_ID" \
    --federated-token "$assertion" --allow-no-subscriptions --output none ||
    fail "az login with the GitHub OIDC token failed" "check the federated credential of $ARM_CLIENT_ID for this repository and environment"
  say "signed the Azure CLI in again with a fresh GitHub OIDC token"
}

remove_storage_setting() {
  require SUBSCRIPTION_ID RESOURCE_GROUP FUNCTION_APP
  ci_sign_in
  local rc=0
  run_bounded "$AZ_SECONDS" "$AZ" functionapp config appsettings delete --subscription "$SUBSCRIPTION_ID" \
    --resource-group "$RESOURCE_GROUP" --name "$FUNCTION_APP" --setting-names AzureWebJobsStorage --output none || rc=$?
  if [[ $rc -ne 0 ]]; then
    fail "could not remove the AzureWebJobsStorage app setting of $FUNCTION_APP (exit $rc)" \
      "the Functions host ignores AzureWebJobsStorage__accountName while AzureWebJobsStorage exists" \
      "check that the Azure CLI is signed in to subscription $SUBSCRIPTION_ID (az account show)" \
      "remove it by hand: az functionapp config appsettings delete -g $RESOURCE_GROUP -n $FUNCTION_APP --setting-names AzureWebJobsStorage"
  fi
  say "removed AzureWebJobsStorage from $FUNCTION_APP (the identity-based AzureWebJobsStorage__* settings stay)"
}

# Refusals worth another attempt: the upload is refused or fails with 401/403 while the app
# identity's new role on the deployment container propagates, or 409 while a deployment runs.
RETRYABLE='(40[139][^0-9]|Forbidden|Unauthorized|AuthorizationFailure|AuthorizationPermissionMismatch|not authorized|ongoing deployment)'
# The CLI prints this once the package is accepted and it starts its host health check.
UPLOADED='Waiting for sync triggers'

publish() {
  require SUBSCRIPTION_ID RESOURCE_GROUP FUNCTION_APP FUNCTION_APP_ID PACKAGE_ZIP
  [[ -f "$PACKAGE_ZIP" ]] || fail "package $PACKAGE_ZIP does not exist" "run cdktf from the project root, after npm run synth"
  local start=$SECONDS deadline=$((SECONDS + TOTAL_SECONDS)) attempt=0 rc bound
  local log="$WORK/config-zip.log"
  while :; do
    attempt=$((attempt + 1))
    bound=$((deadline - SECONDS))
    ((bound > ATTEMPT_SECONDS)) && bound=$ATTEMPT_SECONDS
    ci_sign_in
    say "OneDeploy attempt $attempt of $PACKAGE_ZIP to $FUNCTION_APP (bounded to $bound s)"
    rc=0
    run_bounded "$bound" "$AZ" functionapp deployment source config-zip --subscription "$SUBSCRIPTION_ID" \
      --resource-group "$RESOURCE_GROUP" --name "$FUNCTION_APP" --src "$PACKAGE_ZIP" >"$log" 2>&1 || rc=$?
    cat "$log" >&2
    [[ $rc -eq 0 ]] && break
    if grep -q "$UPLOADED" "$log"; then
      fail "the package reached $FUNCTION_APP but the Functions host did not report healthy$([[ $rc -eq 124 ]] && echo " within $bound s")" \
        "AzureWebJobsStorage must be absent from the app settings (az functionapp config appsettings list -g $RESOURCE_GROUP -n $FUNCTION_APP)" \
        "the function identity needs Storage Blob Data Owner on the host storage account (role assignments can take minutes to apply)" \
        "host start-up errors: Application Insights > Logs, 'traces | where severityLevel >= 3'" \
        "once fixed, run the deploy again: the package is re-published"
    fi
    if [[ $rc -ne 124 ]] && ! grep -Eqi "$RETRYABLE" "$log"; then
      fail "OneDeploy of $PACKAGE_ZIP to $FUNCTION_APP failed (exit $rc) with an error that another attempt would not fix" \
        "the Azure CLI output is above" \
        "check that the Azure CLI is signed in to subscription $SUBSCRIPTION_ID (az account show)"
    fi
    if ((SECONDS + RETRY_SECONDS >= deadline)); then
      fail "OneDeploy of $PACKAGE_ZIP to $FUNCTION_APP still failed after $attempt attempts in $((SECONDS - start)) s" \
        "the last attempt $([[ $rc -eq 124 ]] && echo "did not finish within $bound s" || echo "was refused (output above)")" \
        "the function identity needs Storage Blob Data Owner on the host storage account (the deployment container)" \
        "deployment log: Deployment Center of $FUNCTION_APP in the portal"
    fi
    say "attempt $attempt $([[ $rc -eq 124 ]] && echo "timed out" || echo "was refused"); retrying in $RETRY_SECONDS s"
    sleep "$RETRY_SECONDS"
  done
  rc=0
  run_bounded "$AZ_SECONDS" "$AZ" rest --method post \
    --url "https://management.azure.com$FUNCTION_APP_ID/syncfunctiontriggers?api-version=2024-04-01" || rc=$?
  [[ $rc -eq 0 ]] || fail "the package is deployed but syncing triggers of $FUNCTION_APP failed (exit $rc)" \
    "run: az rest --method post --url https://management.azure.com$FUNCTION_APP_ID/syncfunctiontriggers?api-version=2024-04-01"
  say "deployed $PACKAGE_ZIP to $FUNCTION_APP in $((SECONDS - start)) s"
}

case "${1:-}" in
  remove-storage-setting) remove_storage_setting ;;
  publish) publish ;;
  *) fail "usage: function-app.sh remove-storage-setting|publish" ;;
esac
