import { Duration } from 'aws-cdk-lib';
import { Sensor } from './sensor';

/**
 * Properties of an AssessmentTemplate.
 */
export interface AssessmentTemplateProps {
  /**
   * Name of the template. Run ids and telemetry prefixes start with it.
   *
   * 1 to 40 lower-case letters, digits and hyphens, starting with a letter or digit;
   * unique within one AgentBackend.
   */
  readonly name: string;

  /**
   * The sensors the agent runs during an assessment run. At least one, no duplicates.
   */
  readonly sensors: Sensor[];

  /**
   * Length of one assessment run. Runs follow each other without a gap; each has its own
   * run id and telemetry folder.
   *
   * A whole number of minutes from 15 minutes to 24 hours, and at least the heartbeat
   * interval (otherwise an agent could miss a run entirely).
   *
   * @default Duration.hours(1)
   */
  readonly duration?: Duration;

  /**
   * The instance tags that select the instances of this template: an instance gets its
   * instructions when it carries every one of these tags with exactly this value.
   * Tags are read from EC2 by the backend, never taken from the agent.
   *
   * @default - every instance the backend can see
   */
  readonly targetTags?: { [key: string]: string };
}

/**
 * What an agent runs, and on which instances: a set of predefined sensors for runs of a
 * given length, on the instances that carry the target tags.
 *
 * An AgentBackend answers each heartbeat with the instructions of the templates that
 * select the instance.
 */
export class AssessmentTemplate {
  /** Name of the template. */
  public readonly name: string;

  /** The sensors the agent runs during a run. */
  public readonly sensors: Sensor[];

  /** Length of one run. */
  public readonly duration: Duration;

  /** The tags an instance must carry to be selected; empty selects every instance. */
  public readonly targetTags: { [key: string]: string };

  constructor(props: AssessmentTemplateProps) {
    this.name = props.name;
    this.sensors = [...props.sensors];
    this.duration = props.duration ?? Duration.hours(1);
    this.targetTags = { ...(props.targetTags ?? {}) };
  }
}
