/*
 * The SDK clients behind the Ec2Api / MetricsApi interfaces of the shared code. The shared
 * code does its own throttling-aware retries, so the clients do not retry on their own.
 */
import { CloudWatchClient, GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand,
  PutObjectCommand, S3Client, UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  DescribeInstancesCommand, EC2Client, GetInstanceMetadataDefaultsCommand, ModifyInstanceMetadataDefaultsCommand,
  ModifyInstanceMetadataOptionsCommand,
} from '@aws-sdk/client-ec2';
import type { AccountDefaultsApi } from './account-defaults';
import type { Ec2Api } from './enforcer';
import type { MetricsApi } from './imdsv1-usage';
import type { ReportStore } from './sweep-report';

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

/** The report's objects in one bucket; uploads get the bucket's default encryption. */
export function reportStore(bucket: string, client = new S3Client({ maxAttempts: 5 })): ReportStore {
  const type = { ContentType: 'application/x-ndjson' };
  return {
    put: async (Key, Body) => { await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body, ...type })); },
    get: async (Key) => {
      const output = await client.send(new GetObjectCommand({ Bucket: bucket, Key }));
      return (await output.Body?.transformToString('utf-8')) ?? '';
    },
    delete: async (Key) => { await client.send(new DeleteObjectCommand({ Bucket: bucket, Key })); },
    startMultipart: async (Key) => (await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key, ...type }))).UploadId!,
    uploadPart: async (Key, UploadId, PartNumber, Body) =>
      (await client.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber, Body }))).ETag!,
    completeMultipart: async (Key, UploadId, Parts) => {
      await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key, UploadId, MultipartUpload: { Parts } }));
    },
    abortMultipart: async (Key, UploadId) => { await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId })); },
  };
}
