import { DescribeTagsCommand, EC2Client } from '@aws-sdk/client-ec2';

/** Raised when no tag snapshot could ever be loaded. */
export class TagsUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`instance tags could not be read from EC2: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'TagsUnavailableError';
  }
}

/** After a failed refresh, how long a stale snapshot is served before trying again. */
const RETRY_AFTER_FAILURE_MS = 30_000;

/**
 * The tags that matter (the target tag keys and the exclusion key) of every instance of
 * one account and Region, read from EC2 DescribeTags and kept in memory for a TTL.
 *
 * One snapshot serves every heartbeat of the Lambda container, so EC2 sees
 * ceil(tags / 1000) calls per container per TTL however large the fleet and however often
 * agents call. If a refresh fails, the previous snapshot is served (and retried after 30 s).
 */
export class InstanceTagCache {
  private snapshot?: Map<string, Record<string, string>>;
  private freshUntil = 0;
  private refreshing?: Promise<void>;

  constructor(
    private readonly ec2: EC2Client,
    private readonly keys: string[],
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  /** The instance's tags among the watched keys (empty when it has none). */
  public async tagsOf(instanceId: string): Promise<Record<string, string>> {
    if (this.keys.length === 0) return {};
    if (!this.snapshot || this.now() >= this.freshUntil) {
      this.refreshing ??= this.refresh().finally(() => { this.refreshing = undefined; });
      await this.refreshing;
    }
    return this.snapshot?.get(instanceId) ?? {};
  }

  private async refresh(): Promise<void> {
    try {
      const next = new Map<string, Record<string, string>>();
      let token: string | undefined;
      do {
        const page = await this.ec2.send(new DescribeTagsCommand({
          Filters: [
            { Name: 'resource-type', Values: ['instance'] },
            { Name: 'key', Values: this.keys },
          ],
          MaxResults: 1000,
          NextToken: token,
        }));
        for (const tag of page.Tags ?? []) {
          if (!tag.ResourceId || tag.Key === undefined) continue;
          const tags = next.get(tag.ResourceId) ?? {};
          tags[tag.Key] = tag.Value ?? '';
          next.set(tag.ResourceId, tags);
        }
        token = page.NextToken;
      } while (token);
      this.snapshot = next;
      this.freshUntil = this.now() + this.ttlMs;
    } catch (err) {
      if (!this.snapshot) throw new TagsUnavailableError(err);
      console.warn(JSON.stringify({ message: 'tag refresh failed; serving the previous snapshot', error: String(err) }));
      this.freshUntil = this.now() + RETRY_AFTER_FAILURE_MS;
    }
  }
}
