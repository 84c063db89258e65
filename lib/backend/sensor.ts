/**
 * The closed set of sensors an agent has. Instructions can only enable or disable these;
 * nothing else can be expressed.
 */
export enum Sensor {
  /** Installed packages and their versions (RPM, DEB, MSI). */
  PACKAGE_INVENTORY = 'PACKAGE_INVENTORY',
  /** Security-relevant configuration of the operating system and its services. */
  SOFTWARE_CONFIGURATION = 'SOFTWARE_CONFIGURATION',
  /** Process starts and exits, with their command lines and parents. */
  PROCESS_EVENTS = 'PROCESS_EVENTS',
  /** Network connections opened and accepted by processes. */
  NETWORK_EVENTS = 'NETWORK_EVENTS',
  /** Changes to monitored files and directories. */
  FILE_INTEGRITY = 'FILE_INTEGRITY',
}
