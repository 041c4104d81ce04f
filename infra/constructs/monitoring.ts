import { Construct } from 'constructs';
import type { ITerraformDependable } from 'cdktf';
import { LogAnalyticsWorkspace } from '@cdktf/provider-azurerm/lib/log-analytics-workspace';
import { ApplicationInsights } from '@cdktf/provider-azurerm/lib/application-insights';
import { MonitorActionGroup } from '@cdktf/provider-azurerm/lib/monitor-action-group';
import { MonitorDiagnosticSetting } from '@cdktf/provider-azurerm/lib/monitor-diagnostic-setting';
import { MonitorMetricAlert } from '@cdktf/provider-azurerm/lib/monitor-metric-alert';
import { MonitorScheduledQueryRulesAlertV2 } from '@cdktf/provider-azurerm/lib/monitor-scheduled-query-rules-alert-v2';
import type { MonitoringConfig } from '../config.js';
import type { CosmosReplica } from './cosmos.js';
import type { EventHubs } from './event-hubs.js';
import type { StackContext } from './common.js';
import { SUMMARY_PREFIX } from '../../functions/src/runtime/contracts.js';

export interface TelemetryProps extends StackContext {
  readonly config: MonitoringConfig;
}

/**
 * Log Analytics workspace and workspace-based Application Insights.
 *
 * Secure defaults: Application Insights local authentication off, so telemetry is only
 * accepted from Entra ID identities holding "Monitoring Metrics Publisher" (the function
 * sets APPLICATIONINSIGHTS_AUTHENTICATION_STRING); the instrumentation key in the
 * connection string is then an identifier, not a credential. Workspace shared-key
 * ingestion off.
 */
export class Telemetry extends Construct {
  readonly workspace: LogAnalyticsWorkspace;
  readonly appInsights: ApplicationInsights;

  constructor(scope: Construct, id: string, props: TelemetryProps) {
    super(scope, id);
    const { resourceGroup, names, tags, config } = props;
    this.workspace = new LogAnalyticsWorkspace(this, 'workspace', {
      name: names.logAnalytics,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      sku: 'PerGB2018',
      retentionInDays: config.logRetentionDays,
      localAuthenticationEnabled: false,
      tags,
    });
    this.appInsights = new ApplicationInsights(this, 'app-insights', {
      name: names.appInsights,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      applicationType: 'web',
      workspaceId: this.workspace.id,
      localAuthenticationDisabled: true,
      tags,
    });
  }
}

const summaryJson = `parse_json(extract(@"^${SUMMARY_PREFIX}(\\{.*\\})", 1, Message))`;

/**
 * KQL of the log alerts, exported for tests and the docs.
 *
 * Every try of a batch logs its own summary line; only the line marked `final` (the try after which the
 * trigger moves on) is counted, so a batch retried five times is counted once, not six times.
 */
export function alertQueries(args: { appInsightsId: string; eventHubNamespaceId: string }) {
  const finalSummaries = [
    'AppTraces',
    `| where Message startswith "${SUMMARY_PREFIX}"`,
    `| extend summary = ${summaryJson}`,
    '| where tobool(summary.final)',
  ];
  return {
    functionFailures: [
      'AppRequests',
      `| where _ResourceId =~ "${args.appInsightsId}"`,
      '| where Success == false',
      '| summarize failures = count() by bin(TimeGenerated, 15m)',
    ].join('\n'),
    // Dead letters stored plus events the last resort could only log (the dead-letter store failed).
    deadLetters: [
      ...finalSummaries,
      '| summarize deadLettered = sum(tolong(summary.deadLettered) + tolong(summary.lastResort)) by bin(TimeGenerated, 15m)',
    ].join('\n'),
    consumerLag: [
      'let incoming = AzureMetrics',
      `| where ResourceId =~ "${args.eventHubNamespaceId}" and MetricName == "IncomingMessages"`,
      '| summarize incoming = sum(Total) by bin(TimeGenerated, 15m);',
      `let processed = ${finalSummaries[0]}`,
      ...finalSummaries.slice(1),
      '| summarize processed = sum(todouble(summary.received)) by bin(TimeGenerated, 15m);',
      'incoming',
      '| join kind=fullouter processed on TimeGenerated',
      '| project TimeGenerated = coalesce(TimeGenerated, TimeGenerated1), lag = coalesce(incoming, 0.0) - coalesce(processed, 0.0)',
    ].join('\n'),
  };
}

export interface AlertsProps extends StackContext {
  readonly config: MonitoringConfig;
  readonly telemetry: Telemetry;
  readonly eventHubs: EventHubs;
  readonly cosmos: CosmosReplica;
}

/**
 * Alert rules, all sent to one action group (e-mail recipients from the configuration):
 * function failures, dead letters written, consumer lag (events the hub received minus
 * events syncTwins processed) and Cosmos DB throttling (429 responses).
 *
 * The lag alert needs the Event Hubs namespace metrics in the workspace, so a
 * diagnostic setting exports them (AzureMetrics carries no dimensions: the namespace
 * holds only the one hub, so namespace totals are the hub's).
 */
export class Alerts extends Construct {
  readonly actionGroup: MonitorActionGroup;
  readonly eventHubsMetrics: MonitorDiagnosticSetting;
  readonly functionFailures: MonitorScheduledQueryRulesAlertV2;
  readonly deadLetters: MonitorScheduledQueryRulesAlertV2;
  readonly consumerLag: MonitorScheduledQueryRulesAlertV2;
  readonly cosmosThrottling: MonitorMetricAlert;

  constructor(scope: Construct, id: string, props: AlertsProps) {
    super(scope, id);
    const { resourceGroup, names, tags, config, telemetry, eventHubs, cosmos } = props;

    this.actionGroup = new MonitorActionGroup(this, 'action-group', {
      name: names.actionGroup,
      shortName: names.actionGroupShortName,
      resourceGroupName: resourceGroup.name,
      emailReceiver: config.alertEmails.map((emailAddress, i) => ({
        name: `email-${i + 1}`,
        emailAddress,
        useCommonAlertSchema: true,
      })),
      tags,
    });

    this.eventHubsMetrics = new MonitorDiagnosticSetting(this, 'event-hubs-metrics', {
      name: 'to-log-analytics',
      targetResourceId: eventHubs.namespace.id,
      logAnalyticsWorkspaceId: telemetry.workspace.id,
      enabledMetric: [{ category: 'AllMetrics' }],
    });

    const queries = alertQueries({ appInsightsId: telemetry.appInsights.id, eventHubNamespaceId: eventHubs.namespace.id });
    const logAlert = (
      alertId: string,
      description: string,
      severity: number,
      query: string,
      column: string,
      threshold: number,
      dependsOn?: ITerraformDependable[],
    ) =>
      new MonitorScheduledQueryRulesAlertV2(this, alertId, {
        name: `${names.functionApp}-${alertId}`,
        resourceGroupName: resourceGroup.name,
        location: resourceGroup.location,
        description,
        severity,
        scopes: [telemetry.workspace.id],
        evaluationFrequency: 'PT5M',
        windowDuration: 'PT15M',
        criteria: [
          {
            query,
            metricMeasureColumn: column,
            timeAggregationMethod: 'Total',
            operator: 'GreaterThan',
            threshold,
            failingPeriods: { numberOfEvaluationPeriods: 1, minimumFailingPeriodsToTriggerAlert: 1 },
          },
        ],
        autoMitigationEnabled: true,
        // A new workspace has no AppTraces/AzureMetrics table until data arrives; without
        // this the first apply fails validating a query against a missing table.
        skipQueryValidation: true,
        action: { actionGroups: [this.actionGroup.id] },
        tags,
        dependsOn,
      });

    this.functionFailures = logAlert(
      'function-failures',
      'Function executions failed (AppRequests with Success == false) in the last 15 minutes.',
      1,
      queries.functionFailures,
      'failures',
      config.thresholds.functionFailures,
    );
    this.deadLetters = logAlert(
      'dead-letters',
      'syncTwins wrote dead letters (sum of "deadLettered" in its summary lines) in the last 15 minutes: inspect the deadletters container.',
      1,
      queries.deadLetters,
      'deadLettered',
      0,
    );
    this.consumerLag = logAlert(
      'consumer-lag',
      'Events received by the Event Hub minus events syncTwins processed over 15 minutes is above the threshold: the replica is falling behind.',
      2,
      queries.consumerLag,
      'lag',
      config.thresholds.consumerLagEvents,
      // The query reads AzureMetrics, which only exists once the export is in place.
      [this.eventHubsMetrics],
    );

    this.cosmosThrottling = new MonitorMetricAlert(this, 'cosmos-throttling', {
      name: `${names.cosmosAccount}-throttling`,
      resourceGroupName: resourceGroup.name,
      scopes: [cosmos.account.id],
      description: 'Cosmos DB answered 429 (request rate too large) more often than the threshold in 5 minutes.',
      severity: 2,
      frequency: 'PT1M',
      windowSize: 'PT5M',
      criteria: [
        {
          metricNamespace: 'Microsoft.DocumentDB/databaseAccounts',
          metricName: 'TotalRequests',
          aggregation: 'Count',
          operator: 'GreaterThan',
          threshold: config.thresholds.cosmosThrottledRequests,
          dimension: [{ name: 'StatusCode', operator: 'Include', values: ['429'] }],
        },
      ],
      action: [{ actionGroupId: this.actionGroup.id }],
      tags,
    });
  }
}
