import * as cdk from 'aws-cdk-lib';
import { App, CfnResource, Stack, Tags } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as events from 'aws-cdk-lib/aws-events';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { nodejs24Runtime, tagEverywhere, validationsOf } from '../../lib/core/cdk-compat';
import { acknowledgeNagFindings } from '../../lib/core/nag';

/*
 * The fallbacks for older aws-cdk-lib releases, run on the pinned one by taking away what the
 * older releases lack. `npm run test:compat` runs the library on the real floor release.
 */

const restores: Array<() => void> = [];
afterEach(() => {
  jest.restoreAllMocks();
  restores.splice(0).forEach((restore) => restore());
});

/** Takes `key` away from `target` for this test, as an older aws-cdk-lib lacks it (aws-cdk-lib's lazy exports defeat jest.replaceProperty). */
function takeAway(target: object, key: string): void {
  const descriptor = Object.getOwnPropertyDescriptor(target, key)!;
  Object.defineProperty(target, key, { value: undefined, configurable: true, enumerable: true });
  restores.push(() => Object.defineProperty(target, key, descriptor));
}

function newStack(): Stack {
  return new Stack(new App(), 'Stack', { env: { account: '111122223333', region: 'eu-west-1' } });
}

function functionWith(runtime: lambda.Runtime): Record<string, unknown> {
  const stack = newStack();
  new lambda.Function(stack, 'Fn', { runtime, handler: 'index.handler', code: lambda.Code.fromInline('exports.handler = 1') });
  return Template.fromStack(stack).findResources('AWS::Lambda::Function');
}

describe('nodejs24Runtime', () => {
  test('is aws-cdk-lib\'s own NODEJS_24_X where it exists', () => {
    expect(nodejs24Runtime()).toBe(lambda.Runtime.NODEJS_24_X);
  });

  test('without NODEJS_24_X (aws-cdk-lib < 2.224), renders the same function', () => {
    const expected = functionWith(lambda.Runtime.NODEJS_24_X);
    jest.replaceProperty(lambda.Runtime, 'NODEJS_24_X', undefined as never);

    const fallback = nodejs24Runtime();

    expect(fallback).not.toBe(lambda.Runtime.NODEJS_24_X);
    expect(fallback.name).toBe('nodejs24.x');
    expect(fallback.family).toBe(lambda.RuntimeFamily.NODEJS);
    expect(functionWith(fallback)).toEqual(expected);
  });
});

describe('acknowledgments without Validations (aws-cdk-lib < 2.252)', () => {
  const acks = [
    { rule: 'AwsSolutions-IAM5', finding: 'Action::s3:*', reason: 'The bucket is the function\'s own scratch space.' },
    { rule: 'AwsSolutions-S1', reason: 'This bucket is itself the access log target of the store.' },
  ];

  /** The template metadata of a resource with `acks`. */
  function acknowledged(): unknown {
    const stack = newStack();
    const resource = new CfnResource(stack, 'Bucket', { type: 'AWS::S3::Bucket' });
    acknowledgeNagFindings(resource, ...acks);
    return Template.fromStack(stack).toJSON().Resources.Bucket.Metadata;
  }

  test('validationsOf answers undefined', () => {
    takeAway(cdk, 'Validations');
    expect(validationsOf(newStack())).toBeUndefined();
  });

  test('write the same cdk-nag 2 metadata and do not throw', () => {
    const withValidations = acknowledged();
    takeAway(cdk, 'Validations');

    const without = acknowledged();

    expect(without).toEqual(withValidations);
    expect(without).toEqual({
      cdk_nag: {
        rules_to_suppress: [
          { id: 'AwsSolutions-IAM5', reason: acks[0].reason, applies_to: ['Action::s3:*'] },
          { id: 'AwsSolutions-S1', reason: acks[1].reason },
        ],
      },
    });
  });
});

describe('tagEverywhere', () => {
  function rule(stack: Stack): events.Rule {
    return new events.Rule(stack, 'Rule', { schedule: events.Schedule.rate(cdk.Duration.hours(1)) });
  }

  test('on a resource aws-cdk-lib can tag, the template is exactly what Tags makes', () => {
    const viaTags = newStack();
    rule(viaTags);
    Tags.of(viaTags).add('cdk-agent-fleet:agent', 'fleet-agent');
    const viaFallback = newStack();
    rule(viaFallback);
    tagEverywhere(viaFallback, 'cdk-agent-fleet:agent', 'fleet-agent');

    expect(Template.fromStack(viaFallback).toJSON()).toEqual(Template.fromStack(viaTags).toJSON());
    Template.fromStack(viaFallback).hasResourceProperties('AWS::Events::Rule', {
      Tags: [{ Key: 'cdk-agent-fleet:agent', Value: 'fleet-agent' }],
    });
  });

  test('tags a rule, dashboard or association whose L1 cannot be tagged (aws-cdk-lib < 2.257) as the newest release would', () => {
    const stack = newStack();
    // An L1 without a tag manager: what events.CfnRule is in aws-cdk-lib 2.200.
    const untaggable = new CfnResource(stack, 'Rule', { type: 'AWS::Events::Rule', properties: { ScheduleExpression: 'rate(1 hour)' } });
    expect(cdk.TagManager.isTaggable(untaggable) || cdk.TagManager.isTaggableV2(untaggable)).toBe(false);

    tagEverywhere(stack, 'cdk-agent-fleet:component', 'auto-configuration');
    tagEverywhere(stack, 'cdk-agent-fleet:agent', 'fleet-agent');

    expect(Template.fromStack(stack).toJSON().Resources.Rule.Properties).toEqual({
      ScheduleExpression: 'rate(1 hour)',
      // Sorted by key, as aws-cdk-lib's TagManager renders them.
      Tags: [
        { Key: 'cdk-agent-fleet:agent', Value: 'fleet-agent' },
        { Key: 'cdk-agent-fleet:component', Value: 'auto-configuration' },
      ],
    });
  });

  test('leaves other untaggable resources alone', () => {
    const stack = newStack();
    new CfnResource(stack, 'Other', { type: 'AWS::SSM::Parameter', properties: { Type: 'String', Value: 'x' } });

    tagEverywhere(stack, 'cdk-agent-fleet:agent', 'fleet-agent');

    expect(Template.fromStack(stack).toJSON().Resources.Other.Properties).toEqual({ Type: 'String', Value: 'x' });
  });
});
