import { Duration, Size } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';

/**
 * The host companion an AgentInstallDocument installs with the agent (Linux): a systemd timer
 * that sends the backend's heartbeat, signed with the instance profile's credentials (or,
 * without one, authenticated by the signed identity document when `identityHeartbeatUrl` is given), writes
 * the answer for the agent to read, and uploads the telemetry the agent spools.
 */
export interface AgentCompanionProps {
  /**
   * The backend's heartbeat URL (`AgentBackend.heartbeatUrl`), baked into the document.
   */
  readonly heartbeatUrl: string;

  /**
   * The backend's identity-document heartbeat URL (`AgentBackend.identityHeartbeatUrl`, when
   * its `identityDocumentHeartbeats` is on). An instance with no instance profile (Default Host
   * Management) posts its heartbeat there, authenticated by its signed identity document and
   * sent straight to the private API's endpoint, never through the fleet's proxy (the backend
   * binds the request to the instance's own address).
   *
   * @default - an instance without an instance profile sends no heartbeat (outcome `no-credentials`)
   */
  readonly identityHeartbeatUrl?: string;

  /**
   * Time between heartbeats until the backend's first answer says otherwise
   * (`nextHeartbeatSeconds`). Give the backend's `heartbeatInterval`.
   *
   * @default Duration.minutes(10)
   */
  readonly heartbeatInterval?: Duration;

  /**
   * The telemetry store's key: uploads name it in their encryption headers.
   *
   * @default - uploads ask for SSE-KMS without a key id, and the bucket's default key applies
   */
  readonly telemetryKey?: kms.IKey;

  /**
   * How much telemetry the spool keeps on the host before it drops the oldest files.
   *
   * @default Size.mebibytes(64)
   */
  readonly spoolLimit?: Size;
}
