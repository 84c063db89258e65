import { createHash } from 'node:crypto';
import { Sensor } from '../../sensor';
import { TemplateConfig } from './config';

/** One assessment run an agent is told to take part in. */
export interface Instruction {
  readonly assessment: string;
  readonly runId: string;
  readonly sensors: Sensor[];
  /** ISO 8601 start and end of the run. */
  readonly startsAt: string;
  readonly endsAt: string;
  /** Key prefix in the telemetry bucket for this run: `<agentPrefix><aws:userid>/<runId>/`. */
  readonly telemetryPrefix: string;
}

/** Value of the exclusion tag that keeps an instance out of the fleet. */
export const EXCLUDED_VALUE = 'false';

/**
 * The templates that select an instance: every target tag present with exactly the value,
 * and the instance not excluded by the exclusion tag.
 */
export function selectTemplates(templates: TemplateConfig[], tags: Record<string, string>, exclusionTagKey: string): TemplateConfig[] {
  if (tags[exclusionTagKey] === EXCLUDED_VALUE) return [];
  return templates.filter((t) => Object.entries(t.targetTags).every(([key, value]) => tags[key] === value));
}

function digest(...parts: Array<string | number>): Buffer {
  return createHash('sha256').update(parts.join('\u0000')).digest();
}

/**
 * The run window containing `nowSeconds`. Runs follow each other with no gap; each instance
 * gets its own phase (from a hash) so that a fleet does not start every run at once.
 */
export function runWindow(template: TemplateConfig, instanceKey: string, nowSeconds: number): { start: number; end: number } {
  const d = template.durationSeconds;
  const phase = digest('phase', template.name, instanceKey).readUIntBE(0, 6) % d;
  const start = Math.floor((nowSeconds - phase) / d) * d + phase;
  return { start, end: start + d };
}

/** Deterministic per template, instance and window: every heartbeat of a run gets the same id. */
export function runId(template: TemplateConfig, instanceKey: string, windowStart: number): string {
  const stamp = new Date(windowStart * 1000).toISOString().replace(/[-:]/g, '').slice(0, 13); // 20260101T0930
  const hash = digest('run', template.name, instanceKey, windowStart).toString('hex').slice(0, 12);
  return `${template.name}-${stamp}Z-${hash}`;
}

/** The instructions for one instance now. */
export function instructionsFor(
  templates: TemplateConfig[],
  instanceKey: string,
  telemetryFolder: string,
  nowSeconds: number,
): Instruction[] {
  return templates.map((template) => {
    const window = runWindow(template, instanceKey, nowSeconds);
    const id = runId(template, instanceKey, window.start);
    return {
      assessment: template.name,
      runId: id,
      sensors: [...template.sensors],
      startsAt: new Date(window.start * 1000).toISOString(),
      endsAt: new Date(window.end * 1000).toISOString(),
      telemetryPrefix: `${telemetryFolder}${id}/`,
    };
  });
}

/** Every sensor of the closed set, ENABLED when a current run uses it, else DISABLED. */
export function sensorSwitches(instructions: Instruction[]): Record<Sensor, 'ENABLED' | 'DISABLED'> {
  const enabled = new Set(instructions.flatMap((i) => i.sensors));
  return Object.fromEntries(Object.values(Sensor).map((s) => [s, enabled.has(s) ? 'ENABLED' : 'DISABLED'])) as Record<Sensor, 'ENABLED' | 'DISABLED'>;
}
