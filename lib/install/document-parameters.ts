/*
 * The parameters of an AgentInstallDocument and the patterns their values must match.
 * SSM checks a value against allowedValues / allowedPattern before substituting it into
 * the scripts; the same patterns validate construct props at synth.
 */
import { SsmParameter } from './ssm-document-content';

/** What a run of the document does. */
export const ACTIONS = ['Install', 'Uninstall', 'Verify'] as const;

/** What a run of a document whose agent has an activation can do besides. */
export const REACTIVATE = 'Reactivate';

/** The targeting modes the scripts know (AutoConfigurationMode's values). */
export const MODES = ['ALL_INSTANCES', 'TAGGED_ONLY'] as const;

/**
 * A tag key that instance metadata tags can carry: letters, digits and `+-=.,_:@`
 * (no spaces, no `/`), not starting with `.` (so never `.` or `..` in the IMDS path).
 */
export const TAG_KEY_PATTERN = '^[A-Za-z0-9+=,_:@-][A-Za-z0-9+=.,_:@-]{0,127}$';
export const TAG_KEY_ALLOWED = 'a tag key that instance metadata can carry: 1-128 letters, digits and +-=.,_:@ (no spaces or /), not starting with .';

/** An http(s) proxy without credentials, or empty for none. */
export const PROXY_URL_PATTERN = '^(https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?/?)?$';

/** GuardDuty's convention, used when the user names no key. */
export const DEFAULT_TAG_KEY = 'SecurityAgentManaged';

export function documentParameters(defaultTagKey: string, activation = false): Record<string, SsmParameter> {
  return {
    action: activation ? {
      type: 'String',
      description: 'Install (or upgrade to) the pinned version and activate the agent once, Uninstall it, Verify that it is installed and running, '
        + 'or Reactivate: Install, then run the activation again (after a secret rotation).',
      default: 'Install',
      allowedValues: [...ACTIONS, REACTIVATE],
    } : {
      type: 'String',
      description: 'Install (or upgrade to) the pinned version, Uninstall it, or Verify that it is installed and running.',
      default: 'Install',
      allowedValues: [...ACTIONS],
    },
    mode: {
      type: 'String',
      description: 'ALL_INSTANCES: every instance except those tagged <tagKey>=false. TAGGED_ONLY: only instances tagged <tagKey>=true. Uninstall ignores the tag.',
      default: 'ALL_INSTANCES',
      allowedValues: [...MODES],
    },
    tagKey: {
      type: 'String',
      description: 'The instance tag that includes (true) or excludes (false) an instance, read from instance metadata tags.',
      default: defaultTagKey,
      allowedPattern: TAG_KEY_PATTERN,
    },
    proxyUrl: {
      type: 'String',
      description: 'Optional http(s) proxy for the package download, e.g. http://proxy.internal:3128. The instance metadata service (169.254.169.254) is never proxied.',
      default: '',
      allowedPattern: PROXY_URL_PATTERN,
    },
  };
}
