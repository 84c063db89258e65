/**
 * Heartbeats of instances that have no role to sign with, authenticated by the instance's
 * signed identity document and bound to the instance by the network (PRIVATE API only).
 * Read the threat model in the README before turning this on.
 */
export interface IdentityDocumentHeartbeatOptions {
  /**
   * The certificate AWS publishes for this backend's Region to verify the identity document's
   * base64-encoded `signature` (the one labelled "RSA" on the EC2 User Guide page "AWS public
   * certificates for instance identity document signatures"), in PEM. Copy it from that page
   * for the backend's Region; the library does not ship AWS's certificates.
   */
  readonly regionCertificate: string;

  /**
   * Requests per second the identity path accepts (its own method throttle, so unauthenticated
   * callers cannot use up the stage's rate for signed heartbeats).
   *
   * @default 20
   */
  readonly throttlingRateLimit?: number;

  /**
   * Burst of the identity path's method throttle.
   *
   * @default 40
   */
  readonly throttlingBurstLimit?: number;
}
