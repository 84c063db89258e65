/*
 * The SDK clients behind the Ec2Api / MetricsApi interfaces of the shared code. The shared
 * code does its own throttling-aware retries, so the clients do not retry on their own.
 */
import { CloudWatchClient, GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import {
  DescribeInstancesCommand, EC2Client, GetInstanceMetadataDefaultsCommand, ModifyInstanceMetadataDefaultsCommand,
  ModifyInstanceMetadataOptionsCommand,
} from '@aws-sdk/client-ec2';
import type { AccountDefaultsApi } from './account-defaults';
import type { Ec2Api } from './enforcer';
import type { MetricsApi } from './imdsv1-usage';

export function ec2Api(client = new EC2Client({ maxAttempts: 1 })): Ec2Api & AccountDefaultsApi {
  return {
    describeInstances: (input) => client.send(new DescribeInstancesCommand(input)),
    modifyInstanceMetadataOptions: (input) => client.send(new ModifyInstanceMetadataOptionsCommand(input)),
    getInstanceMetadataDefaults: () => client.send(new GetInstanceMetadataDefaultsCommand({})),
    modifyInstanceMetadataDefaults: (input) => client.send(new ModifyInstanceMetadataDefaultsCommand({
      ...input,
      HttpTokens: input.HttpTokens as 'optional' | 'required' | 'no-preference',
      HttpEndpoint: input.HttpEndpoint as 'enabled' | 'disabled' | 'no-preference',
      InstanceMetadataTags: input.InstanceMetadataTags as 'enabled' | 'disabled' | 'no-preference',
      HttpTokensEnforced: input.HttpTokensEnforced as 'enabled' | 'disabled' | 'no-preference' | undefined,
    })),
  };
}

export function metricsApi(client = new CloudWatchClient({ maxAttempts: 1 })): MetricsApi {
  return {
    getMetricData: async (input) => {
      const output = await client.send(new GetMetricDataCommand(input));
      return { NextToken: output.NextToken, MetricDataResults: output.MetricDataResults };
    },
  };
}
