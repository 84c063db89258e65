import { App, Aspects, CfnParameter, Fn, Lazy, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AgentFleetErrors, HopLimitPolicy, RequireImdsv2, RequireImdsv2Props } from '../../lib';

function appStack() {
  const app = new App();
  const stack = new Stack(app, 'Stack', { env: { account: '111122223333', region: 'eu-west-1' } });
  return { app, stack };
}

function withAspect(stack: Stack, props: RequireImdsv2Props = { hopLimit: 2 }) {
  Aspects.of(stack).add(new RequireImdsv2(props));
  return Template.fromStack(stack);
}

/** An AMI id as a parameter: a literal one draws a portability warning from CloudFormation's validator. */
function ami(stack: Stack): string {
  const existing = stack.node.tryFindChild('Ami') as CfnParameter | undefined;
  return (existing ?? new CfnParameter(stack, 'Ami', { type: 'AWS::EC2::Image::Id' })).valueAsString;
}

const REQUIRED = { HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled', InstanceMetadataTags: 'enabled' };

function vpcAndImage(stack: Stack) {
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'p', subnetType: ec2.SubnetType.PUBLIC }] });
  const machineImage = ec2.MachineImage.latestAmazonLinux2023();
  return { vpc, machineImage, instanceType: new ec2.InstanceType('t3.micro') };
}

describe('RequireImdsv2 on instances', () => {
  test('sets the metadata options of an L2 Instance on the instance itself, with no launch template added', () => {
    // GIVEN
    const { stack } = appStack();
    new ec2.Instance(stack, 'Instance', vpcAndImage(stack));

    // WHEN
    const template = withAspect(stack);

    // THEN
    template.hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: REQUIRED });
    template.resourceCountIs('AWS::EC2::LaunchTemplate', 0);
  });

  test('sets them on a CfnInstance, keeping the options it does not govern', () => {
    const { stack } = appStack();
    new ec2.CfnInstance(stack, 'Instance', { imageId: ami(stack), metadataOptions: { httpProtocolIpv6: 'enabled' } });
    withAspect(stack).hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: { ...REQUIRED, HttpProtocolIpv6: 'enabled' } });
  });

  test('replaces explicit weaker values and says which', () => {
    const { stack } = appStack();
    const instance = new ec2.CfnInstance(stack, 'Instance', {
      imageId: ami(stack),
      metadataOptions: { httpTokens: 'optional', httpPutResponseHopLimit: 1, instanceMetadataTags: 'disabled' },
    });
    withAspect(stack).hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: REQUIRED });
    Annotations.fromStack(stack).hasWarning(`/${instance.node.path}`, Match.stringLikeRegexp(
      'replaced metadata options set on this resource: httpTokens "optional" -> "required", httpPutResponseHopLimit 1 -> 2, instanceMetadataTags "disabled" -> "enabled"'));
  });

  test('replaces token values of single options, naming them as tokens', () => {
    const { stack } = appStack();
    new ec2.CfnInstance(stack, 'Instance', {
      imageId: ami(stack),
      metadataOptions: { httpTokens: Fn.importValue('TokensSetting') },
    });
    const template = withAspect(stack);
    template.hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: REQUIRED });
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp('httpTokens \\(a token\\) -> "required"'));
  });

  test('warns and leaves MetadataOptions alone when they are a token', () => {
    const { stack } = appStack();
    new ec2.CfnInstance(stack, 'Instance', {
      imageId: ami(stack),
      metadataOptions: Lazy.any({ produce: () => ({ httpTokens: 'optional' }) }),
    });
    const template = withAspect(stack);
    template.hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: { HttpTokens: 'optional' } });
    Annotations.fromStack(stack).hasWarning('/Stack/Instance', Match.stringLikeRegexp('could not require IMDSv2 on this resource: its MetadataOptions are a token'));
  });

  test('an L2 Instance with requireImdsv2 gets the hop limit and tags on the instance as well', () => {
    const { stack } = appStack();
    new ec2.Instance(stack, 'Instance', { ...vpcAndImage(stack), requireImdsv2: true });
    const template = withAspect(stack, { hopLimit: 1 });
    template.hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: { ...REQUIRED, HttpPutResponseHopLimit: 1 } });
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: { MetadataOptions: { ...REQUIRED, HttpPutResponseHopLimit: 1 } },
    });
  });
});

describe('RequireImdsv2 on launch templates', () => {
  test('sets the metadata options of an L2 LaunchTemplate', () => {
    const { stack } = appStack();
    new ec2.LaunchTemplate(stack, 'Template', { machineImage: ec2.MachineImage.latestAmazonLinux2023() });
    withAspect(stack).hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: { MetadataOptions: REQUIRED, ImageId: Match.anyValue() },
    });
  });

  test('sets them on a CfnLaunchTemplate, keeping the rest of its data', () => {
    const { stack } = appStack();
    new ec2.CfnLaunchTemplate(stack, 'Template', {
      launchTemplateData: { instanceType: 't3.micro', metadataOptions: { httpTokens: 'optional', httpProtocolIpv6: 'enabled' } },
    });
    withAspect(stack, { hopLimit: 2, instanceMetadataTags: false }).hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: {
        InstanceType: 't3.micro',
        MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled', HttpProtocolIpv6: 'enabled', InstanceMetadataTags: Match.absent() },
      },
    });
  });

  test('warns where the launch template data or its metadata options are tokens', () => {
    const { stack } = appStack();
    new ec2.CfnLaunchTemplate(stack, 'Whole', { launchTemplateData: Lazy.any({ produce: () => ({ InstanceType: 't3.micro' }) }) });
    new ec2.CfnLaunchTemplate(stack, 'Options', { launchTemplateData: { metadataOptions: Lazy.any({ produce: () => ({}) }) } });
    withAspect(stack);
    const annotations = Annotations.fromStack(stack);
    annotations.hasWarning('/Stack/Whole', Match.stringLikeRegexp('its LaunchTemplateData is a token'));
    annotations.hasWarning('/Stack/Options', Match.stringLikeRegexp('its LaunchTemplateData.MetadataOptions are a token'));
  });
});

describe('RequireImdsv2 only tightens unless asked (issue 12, defect 4)', () => {
  test('keeps a hop limit above the fleet\'s, without a warning; EXACT lowers it, with one', () => {
    const { stack } = appStack();
    new ec2.CfnInstance(stack, 'Instance', { imageId: ami(stack), metadataOptions: { httpTokens: 'optional', httpPutResponseHopLimit: 3 } });
    withAspect(stack).hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: { ...REQUIRED, HttpPutResponseHopLimit: 3 } });
    Annotations.fromStack(stack).hasNoWarning('/Stack/Instance', Match.stringLikeRegexp('httpPutResponseHopLimit'));

    const exact = appStack();
    new ec2.CfnInstance(exact.stack, 'Instance', { imageId: ami(exact.stack), metadataOptions: { httpPutResponseHopLimit: 3 } });
    withAspect(exact.stack, { hopLimit: 2, hopLimitPolicy: HopLimitPolicy.EXACT })
      .hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: REQUIRED });
    Annotations.fromStack(exact.stack).hasWarning('/Stack/Instance', Match.stringLikeRegexp('httpPutResponseHopLimit 3 -> 2'));
  });

  test('keeps a hop limit that is a token, saying it cannot compare it', () => {
    const { stack } = appStack();
    new ec2.CfnInstance(stack, 'Instance', { imageId: ami(stack), metadataOptions: { httpPutResponseHopLimit: Lazy.number({ produce: () => 4 }) } });
    withAspect(stack).hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: { ...REQUIRED, HttpPutResponseHopLimit: 4 } });
    Annotations.fromStack(stack).hasWarning('/Stack/Instance', Match.stringLikeRegexp('kept this resource\'s hop limit, a token'));
  });

  test('leaves a disabled endpoint disabled and warns; enableDisabledEndpoints turns it on', () => {
    const { stack } = appStack();
    new ec2.CfnLaunchTemplate(stack, 'Template', { launchTemplateData: { metadataOptions: { httpEndpoint: 'disabled' } } });
    withAspect(stack).hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: { MetadataOptions: { ...REQUIRED, HttpEndpoint: 'disabled' } },
    });
    Annotations.fromStack(stack).hasWarning('/Stack/Template', Match.stringLikeRegexp('left HttpEndpoint disabled on this resource'));

    const on = appStack();
    new ec2.CfnLaunchTemplate(on.stack, 'Template', { launchTemplateData: { metadataOptions: { httpEndpoint: 'disabled' } } });
    withAspect(on.stack, { hopLimit: 2, enableDisabledEndpoints: true }).hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: { MetadataOptions: REQUIRED },
    });
  });
});

describe('RequireImdsv2 on launch configurations (issue 12, defect 5)', () => {
  test('sets HttpTokens, hop limit and endpoint on a CfnLaunchConfiguration, and warns that it cannot enable tags there', () => {
    const { stack } = appStack();
    new autoscaling.CfnLaunchConfiguration(stack, 'Config', {
      imageId: ami(stack), instanceType: 't3.micro', metadataOptions: { httpTokens: 'optional' },
    });
    withAspect(stack).hasResourceProperties('AWS::AutoScaling::LaunchConfiguration', {
      MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled', InstanceMetadataTags: Match.absent() },
    });
    Annotations.fromStack(stack).hasWarning('/Stack/Config', Match.stringLikeRegexp('launch configurations cannot enable instance metadata tags'));
  });

  test('covers the launch configuration an L2 AutoScalingGroup creates without a launch template', () => {
    const { stack } = appStack();
    const { vpc, machineImage, instanceType } = vpcAndImage(stack);
    new autoscaling.AutoScalingGroup(stack, 'Asg', { vpc, machineImage, instanceType });
    withAspect(stack).hasResourceProperties('AWS::AutoScaling::LaunchConfiguration', {
      MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled' },
    });
  });

  test('with instanceMetadataTags false there is nothing to warn about', () => {
    const { stack } = appStack();
    new autoscaling.CfnLaunchConfiguration(stack, 'Config', { imageId: ami(stack), instanceType: 't3.micro' });
    withAspect(stack, { hopLimit: 1, instanceMetadataTags: false });
    Annotations.fromStack(stack).hasNoWarning('/Stack/Config', Match.anyValue());
  });
});

describe('RequireImdsv2 and escape-hatch overrides (issue 12, defect 5)', () => {
  test('warns where an override weakens what the aspect set, naming each setting', () => {
    const { stack } = appStack();
    const instance = new ec2.CfnInstance(stack, 'Instance', { imageId: ami(stack) });
    instance.addPropertyOverride('MetadataOptions.HttpTokens', 'optional');
    instance.addPropertyOverride('MetadataOptions.HttpPutResponseHopLimit', 1);
    const template = new ec2.CfnLaunchTemplate(stack, 'Template', { launchTemplateData: {} });
    template.addPropertyDeletionOverride('LaunchTemplateData.MetadataOptions');
    const config = new autoscaling.CfnLaunchConfiguration(stack, 'Config', { imageId: ami(stack), instanceType: 't3.micro' });
    config.addOverride('Properties.MetadataOptions.HttpTokens', Fn.importValue('Tokens'));

    const synthesized = withAspect(stack);

    // The override wins in the template...
    synthesized.hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: { HttpTokens: 'optional', HttpPutResponseHopLimit: 1 } });
    // ...and the aspect says so.
    const annotations = Annotations.fromStack(stack);
    annotations.hasWarning('/Stack/Instance', Match.stringLikeRegexp(
      'An escape-hatch override on this resource wins over RequireImdsv2: HttpTokens set to "optional", HttpPutResponseHopLimit set to 1'));
    annotations.hasWarning('/Stack/Template', Match.stringLikeRegexp('wins over RequireImdsv2: LaunchTemplateData.MetadataOptions removed'));
    annotations.hasWarning('/Stack/Config', Match.stringLikeRegexp('wins over RequireImdsv2: HttpTokens set to a token'));
  });

  test('an override that keeps IMDSv2 required and the hop limit high enough draws no warning', () => {
    const { stack } = appStack();
    const instance = new ec2.CfnInstance(stack, 'Instance', { imageId: ami(stack) });
    instance.addPropertyOverride('MetadataOptions.HttpPutResponseHopLimit', 3);
    instance.addPropertyOverride('MetadataOptions.HttpProtocolIpv6', 'enabled');
    withAspect(stack).hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: { ...REQUIRED, HttpPutResponseHopLimit: 3, HttpProtocolIpv6: 'enabled' } });
    Annotations.fromStack(stack).hasNoWarning('/Stack/Instance', Match.stringLikeRegexp('escape-hatch'));
  });
});

describe('RequireImdsv2 props', () => {
  test('warns once per stack about a hop limit above 2', () => {
    const { stack } = appStack();
    new ec2.CfnInstance(stack, 'A', { imageId: ami(stack) });
    new ec2.CfnInstance(stack, 'B', { imageId: ami(stack) });
    withAspect(stack, { hopLimit: 3 }).hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: { HttpPutResponseHopLimit: 3 } });
    const warnings = Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('IMDS hop limit 3'));
    expect(warnings).toHaveLength(1);
  });

  test('leaves other resources alone', () => {
    const { stack } = appStack();
    new ec2.CfnSecurityGroup(stack, 'Sg', { groupDescription: 'x' });
    expect(withAspect(stack).toJSON().Resources.Sg.Properties).toEqual({ GroupDescription: 'x' });
  });

  test.each([0, 65, 1.5])('fails when hopLimit is %p', (hopLimit) => {
    expect(() => new RequireImdsv2({ hopLimit })).toThrow(
      `Invalid props for the RequireImdsv2 aspect:\n  - hopLimit: got ${hopLimit}; allowed: an integer from 1 to 64`);
    try {
      new RequireImdsv2({ hopLimit });
    } catch (err) {
      expect(AgentFleetErrors.isValidationError(err)).toBe(true);
    }
  });
});
