/**
 * A VPC endpoint the agent fleet needs.
 */
export enum AgentEndpointService {
  /** Systems Manager (`com.amazonaws.<region>.ssm`). */
  SSM = 'SSM',
  /** Session Manager and Run Command channels (`ssmmessages`). */
  SSM_MESSAGES = 'SSM_MESSAGES',
  /** The SSM Agent's message delivery (`ec2messages`). */
  EC2_MESSAGES = 'EC2_MESSAGES',
  /** API Gateway private APIs (`execute-api`), for the agent backend. */
  EXECUTE_API = 'EXECUTE_API',
  /** The S3 gateway endpoint. */
  S3 = 'S3',
  /**
   * GuardDuty Runtime Monitoring's agent (`guardduty-data`), with the endpoint policy GuardDuty
   * documents: only principals of the endpoint's account.
   * https://docs.aws.amazon.com/guardduty/latest/ug/creating-vpc-endpoint-ec2-agent-manually.html
   */
  GUARDDUTY_DATA = 'GUARDDUTY_DATA',
}
