/**
 * Who is calling, as API Gateway's IAM authorization established it. An agent signs with
 * its instance role, whose sessions EC2 names after the instance:
 *   userArn = arn:aws:sts::<account>:assumed-role/<role>/i-0123456789abcdef0
 *   user    = AROA...:i-0123456789abcdef0   (the policy variable aws:userid)
 */
export interface InstanceCaller {
  readonly accountId: string;
  readonly roleName: string;
  readonly instanceId: string;
  /** `aws:userid` of the session: `<role id>:<instance id>`. */
  readonly userId: string;
  readonly userArn: string;
}

/** The parts of API Gateway's `requestContext.identity` that identify the caller. */
export interface RequestIdentity {
  readonly userArn?: string | null;
  readonly user?: string | null;
}

const INSTANCE_ID = 'i-(?:[0-9a-f]{8}|[0-9a-f]{17})';
const SESSION_ARN = new RegExp(`^arn:aws[a-z-]*:sts::([0-9]{12}):assumed-role/([\\w+=,.@-]{1,64})/(${INSTANCE_ID})$`);
const USER_ID = new RegExp(`^(AROA[A-Z0-9]{1,124}):(${INSTANCE_ID})$`);

/**
 * The instance behind the caller, or the reason the caller is not an instance role session.
 */
export function instanceCaller(identity: RequestIdentity | null | undefined): InstanceCaller | { problem: string } {
  const userArn = identity?.userArn ?? '';
  const arn = SESSION_ARN.exec(userArn);
  if (!arn) {
    return { problem: 'the caller is not an EC2 instance role session (assumed-role/<role>/i-...)' };
  }
  const user = USER_ID.exec(identity?.user ?? '');
  if (!user || user[2] !== arn[3]) {
    return { problem: 'the caller\'s user id does not name the same instance as its session' };
  }
  return { accountId: arn[1], roleName: arn[2], instanceId: arn[3], userId: user[0], userArn };
}
