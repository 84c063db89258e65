import { Duration, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { PropsValidator } from '../core/validation';

/**
 * Options of a secret read from Secrets Manager.
 */
export interface SecretsManagerActivationSecretOptions {
  /**
   * The key of a string field of the secret, when the secret is a JSON object (e.g.
   * `{"tenantId": "...", "token": "..."}`): only that field is passed on.
   *
   * Letters, digits and `_.-`, at most 128 characters.
   *
   * @default - the whole secret string
   */
  readonly jsonField?: string;
}

/**
 * Options of a secret read from a SecureString parameter.
 */
export interface ParameterActivationSecretOptions {
  /**
   * The customer managed key the parameter is encrypted with: instances get `kms:Decrypt` on
   * it, only through Parameter Store and only for this parameter.
   *
   * @default - the AWS managed key `aws/ssm`, which needs no grant
   */
  readonly encryptionKey?: kms.IKey;
}

/**
 * A secret an agent's activation needs (a tenant id, a token, a customer id), read on the
 * instance at run time with the instance's own credentials. Never its value: the value stays
 * out of the template, the document and the association.
 */
export abstract class ActivationSecret {
  /**
   * A Secrets Manager secret (its current version). The instance roles get
   * `secretsmanager:GetSecretValue` on it, and `kms:Decrypt` on its key only through Secrets
   * Manager for this secret.
   *
   * @param secret the secret construct (never its value)
   * @param options a JSON field to take from it
   */
  public static fromSecret(secret: secretsmanager.ISecret, options: SecretsManagerActivationSecretOptions = {}): ActivationSecret {
    return new SecretsManagerSecret(secret, options);
  }

  /**
   * A SecureString parameter of Parameter Store (its current version), read with decryption.
   * The instance roles get `ssm:GetParameter` on it, and `kms:Decrypt` on its key (when you
   * name one) only through Parameter Store for this parameter.
   *
   * @param parameter the parameter construct, e.g. from `StringParameter.fromSecureStringParameterAttributes`
   * @param options its customer managed key
   */
  public static fromSecureStringParameter(parameter: ssm.IParameter, options: ParameterActivationSecretOptions = {}): ActivationSecret {
    return new ParameterSecret(parameter, options);
  }

  /** `secretsmanager` or `ssm`: the service the instance reads the secret from. */
  public abstract readonly service: string;

  /** The ARN the instance asks for. */
  public abstract readonly arn: string;

  /** The region of the secret. */
  public abstract readonly region: string;

  /** The JSON field taken from the secret, if any. */
  public abstract readonly jsonField?: string;

  /**
   * Lets a role read this secret: the one read action on this one secret, and its key only
   * through the service, for this secret.
   *
   * @param grantee the instance role or the Default Host Management role
   */
  public abstract grantRead(grantee: iam.IGrantable): iam.Grant;

  /** @internal what is wrong with it, for the construct that takes it */
  public abstract _problems(v: PropsValidator, prop: string): void;
}

/** The key only through a service and only for one secret (its encryption context). */
function grantKeyThrough(grantee: iam.IGrantable, key: kms.IKey, service: string, region: string, context: Record<string, string>): iam.Grant {
  return iam.Grant.addToPrincipal({
    grantee,
    actions: ['kms:Decrypt'],
    resourceArns: [key.keyArn],
    conditions: { StringEquals: { 'kms:ViaService': `${service}.${region}.${Stack.of(key).urlSuffix}`, ...context } },
  });
}

const JSON_FIELD = /^[A-Za-z0-9_.-]{1,128}$/;

class SecretsManagerSecret extends ActivationSecret {
  public readonly service = 'secretsmanager';
  public readonly arn: string;
  public readonly region: string;
  public readonly jsonField?: string;

  constructor(private readonly secret: secretsmanager.ISecret, options: SecretsManagerActivationSecretOptions) {
    super();
    const construct = isConstruct(secret, 'secretArn');
    this.arn = construct ? secret.secretFullArn ?? secret.secretArn : String(secret);
    this.region = construct ? secret.env.region : '';
    this.jsonField = options.jsonField;
  }

  public grantRead(grantee: iam.IGrantable): iam.Grant {
    // A secret known by a partial ARN: its full ARN ends with - and 6 characters.
    const resource = this.secret.secretFullArn ?? `${this.secret.secretArn}-??????`;
    const read = iam.Grant.addToPrincipal({ grantee, actions: ['secretsmanager:GetSecretValue'], resourceArns: [resource] });
    const key = this.secret.encryptionKey;
    return key ? read.combine(grantKeyThrough(grantee, key, 'secretsmanager', this.region, { 'kms:EncryptionContext:SecretARN': resource })) : read;
  }

  public _problems(v: PropsValidator, prop: string): void {
    v.require(isConstruct(this.secret, 'secretArn'), prop, this.secret,
      'a secretsmanager.ISecret construct (e.g. Secret.fromSecretNameV2), never the secret or its ARN as a string');
    if (this.jsonField !== undefined) {
      v.require(!Token.isUnresolved(this.jsonField) && JSON_FIELD.test(this.jsonField), `${prop}.jsonField`, this.jsonField,
        'a JSON key of 1-128 letters, digits and _.-');
    }
  }
}

class ParameterSecret extends ActivationSecret {
  public readonly service = 'ssm';
  public readonly arn: string;
  public readonly region: string;
  public readonly jsonField?: string;

  constructor(private readonly parameter: ssm.IParameter, private readonly options: ParameterActivationSecretOptions) {
    super();
    const construct = isConstruct(parameter, 'parameterArn');
    this.arn = construct ? parameter.parameterArn : String(parameter);
    this.region = construct ? parameter.env.region : '';
  }

  public grantRead(grantee: iam.IGrantable): iam.Grant {
    const read = iam.Grant.addToPrincipal({ grantee, actions: ['ssm:GetParameter'], resourceArns: [this.arn] });
    const key = this.options.encryptionKey;
    return key ? read.combine(grantKeyThrough(grantee, key, 'ssm', this.region, { 'kms:EncryptionContext:PARAMETER_ARN': this.arn })) : read;
  }

  public _problems(v: PropsValidator, prop: string): void {
    const construct = isConstruct(this.parameter, 'parameterArn');
    v.require(construct, prop, this.parameter,
      'an ssm.IParameter construct (e.g. StringParameter.fromSecureStringParameterAttributes), never the value or its name as a string');
    // A parameter this app creates is a String parameter: CloudFormation cannot create SecureStrings.
    const created = construct && this.parameter.node.defaultChild instanceof ssm.CfnParameter;
    v.require(!created, prop, construct ? this.parameter.node.path : this.parameter,
      'a SecureString parameter created outside the stack (StringParameter.fromSecureStringParameterAttributes): a parameter the stack creates '
      + 'is a plain String, its value in the template');
  }
}

function isConstruct(value: unknown, arnProperty: string): boolean {
  return typeof value === 'object' && value !== null && arnProperty in value && 'node' in value;
}

/**
 * How a secret or a literal appears in the activation command.
 */
export interface ActivationArgumentOptions {
  /**
   * Text put right before the secret (or the path of its file) in the same argument, e.g.
   * `tenantID:` or `--cid=`.
   *
   * @default ''
   */
  readonly prefix?: string;

  /**
   * Text put right after it in the same argument.
   *
   * @default ''
   */
  readonly suffix?: string;
}

/**
 * One argument of an activation command: a literal, or a secret passed as a file or (where
 * the vendor's tool takes it no other way) inside the argument itself.
 */
export class ActivationArgument {
  /**
   * A literal argument, as it is (no shell: spaces, quotes and `$` are not interpreted).
   *
   * @param text the argument
   */
  public static literal(text: string): ActivationArgument {
    return new ActivationArgument('literal', text, '');
  }

  /**
   * The path of a file that holds the secret's value (exactly the value, no newline added),
   * readable by root only and deleted as soon as the command ends. The way to pass a secret
   * to tools that read it from a file.
   *
   * @param secret the secret
   * @param options text around the path in the same argument (e.g. `--token-file=`)
   */
  public static secretFile(secret: ActivationSecret, options: ActivationArgumentOptions = {}): ActivationArgument {
    return new ActivationArgument('file', options.prefix ?? '', options.suffix ?? '', secret);
  }

  /**
   * The secret's value inside the argument itself: visible in the command's process listing
   * while it runs. Only for vendor tools that take a secret no other way (Trend Micro's
   * `dsa_control -a`, CrowdStrike's `falconctl -s --cid=`); the script starts the tool
   * directly, so no helper process ever carries it, and it never reaches a log.
   *
   * @param secret the secret
   * @param options text around the value in the same argument (e.g. `tenantID:`)
   */
  public static secretValue(secret: ActivationSecret, options: ActivationArgumentOptions = {}): ActivationArgument {
    return new ActivationArgument('value', options.prefix ?? '', options.suffix ?? '', secret);
  }

  /** `literal`, `file` (the path of a file holding the secret) or `value` (the secret itself). */
  public readonly kind: string;
  /** The literal, or the text before the secret (or its file's path). */
  public readonly text: string;
  /** The text after the secret (or its file's path). */
  public readonly suffix: string;
  /** The secret of a `file` or `value` argument. */
  public readonly secret?: ActivationSecret;

  private constructor(kind: string, text: string, suffix: string, secret?: ActivationSecret) {
    this.kind = kind;
    this.text = text;
    this.suffix = suffix;
    this.secret = secret;
  }
}

/**
 * A command that tells whether the agent is activated already, so an agent activated by other
 * means (or before this document) is not activated again.
 */
export interface ActivationCheck {
  /** The command: an absolute path and literal arguments. */
  readonly command: string[];

  /**
   * The agent is activated when the command exits 0 and its output contains this.
   *
   * @default - exit status 0 is enough
   */
  readonly outputContains?: string;

  /**
   * The agent is activated only if the command's output does not contain this.
   *
   * @default - no such condition
   */
  readonly outputLacks?: string;
}

/**
 * The step that activates the agent after it is installed: a vendor tool run with tenant
 * secrets. It runs after an install or upgrade, again only on `Reactivate` (the document's
 * `action`), and its outcome is reported on its own (`activation-failed`, the tool's exit
 * status).
 */
export interface AgentActivation {
  /**
   * The command, as a list of arguments: the first is the tool's absolute path and a
   * literal. No shell runs it, so shell syntax in an argument is passed on as text.
   */
  readonly command: ActivationArgument[];

  /**
   * A secret the command reads on its standard input (the value and a newline).
   *
   * @default - standard input is empty (/dev/null)
   */
  readonly stdin?: ActivationSecret;

  /**
   * A command that says whether the agent is activated already (checked after an install or
   * upgrade; `Reactivate` skips it).
   *
   * @default - an agent the document installed and activated is not activated again; one it
   *   just installed or upgraded is
   */
  readonly check?: ActivationCheck;

  /**
   * How long the command may run before it is stopped (and the activation failed).
   *
   * From 10 seconds to 30 minutes, whole seconds.
   *
   * @default Duration.minutes(5)
   */
  readonly timeout?: Duration;

  /**
   * Run the activation after the package is installed and before the service is (re)started
   * and health-checked: for agents whose service does not stay up until activated (a sensor
   * that needs its customer id). A failed activation then ends the Install `activation-failed`
   * with the package left installed and its service not health-checked; the next Install
   * activates it and starts the service. After `Reactivate` the service is restarted, so that
   * it reads what the activation set.
   *
   * @default false - the activation runs once the service has stayed up for the health window
   */
  readonly beforeServiceStart?: boolean;
}
