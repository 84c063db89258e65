/**
 * Which instances the agent is installed on (GuardDuty's inclusion/exclusion tag semantics).
 *
 * | instance tag     | ALL_INSTANCES                         | TAGGED_ONLY        |
 * |------------------|---------------------------------------|--------------------|
 * | none             | install and manage                    | not touched        |
 * | `<tagKey>=true`  | install and manage                    | install and manage |
 * | `<tagKey>=false` | neither install nor manage            | not touched        |
 * | any other value  | install and manage, reported as a misconfigured tag | not touched |
 */
export enum AutoConfigurationMode {
  /**
   * Every managed instance except those tagged `<tagKey>=false` (GuardDuty's recommended
   * setting). The association targets all managed instances; the document reads the tag
   * from instance metadata and exits cleanly on excluded instances.
   */
  ALL_INSTANCES = 'ALL_INSTANCES',

  /** Only instances tagged `<tagKey>=true`: the association targets that tag. */
  TAGGED_ONLY = 'TAGGED_ONLY',
}
