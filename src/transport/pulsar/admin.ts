/**
 * Just enough of Pulsar's admin REST API for `sheaf setup`: create the tenant
 * and namespace Sheaf's topics live in, and set the namespace policy it needs.
 * Every call is bounded by a timeout; every failure names the call, the
 * broker's answer, and what to check.
 */
import { SheafError } from '../../errors.js';

/** An admin call the broker refused or did not answer. */
export class PulsarAdminError extends SheafError {
  override name = 'PulsarAdminError';
  constructor(
    readonly call: string,
    readonly status: number | null,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** How a {@link PulsarAdmin} reaches the broker's admin REST API. */
export interface AdminOptions {
  /** `http://host:8080` (or https). */
  readonly adminUrl: string;
  /** A token, or a function that reads the current one, sent as `Authorization: Bearer`. */
  readonly token?: string | (() => string | Promise<string>);
  /** Bound on each HTTP call; 10,000 ms unless set. */
  readonly timeoutMs?: number;
  /**
   * How many times a step of `ensureNamespace`/`ensurePartitions` is tried
   * again after a transient failure (no answer, 429, 5xx); 3 unless set.
   */
  readonly retries?: number;
  /** Told before each such retry, so a command can show it is still at work. */
  readonly onRetry?: (error: PulsarAdminError, attempt: number, delayMs: number) => void;
}

/** What `ensureNamespace` found and did. */
export interface SetupReport {
  readonly tenant: 'existed' | 'created';
  readonly namespace: 'existed' | 'created';
  readonly policies: string[];
}

/**
 * Inactive topics with no subscription are deleted after this long: result
 * topics of closed clients (their subscription is deleted on close) go away,
 * while task and dead-letter topics keep their subscriptions and stay.
 */
export const INACTIVE_TOPIC_POLICY = {
  inactiveTopicDeleteMode: 'delete_when_no_subscriptions',
  maxInactiveDurationSeconds: 600,
  deleteWhileInactive: true,
} as const;

/** The admin REST calls `sheaf setup` and `sheaf dlq` make, each bounded and named in its errors. */
export class PulsarAdmin {
  private readonly base: string;

  constructor(private readonly options: AdminOptions) {
    this.base = `${options.adminUrl.replace(/\/+$/, '')}/admin/v2`;
  }

  /** Creates the tenant (allowed on every cluster) and the namespace if missing, and sets Sheaf's policy. Idempotent. */
  async ensureNamespace(tenant: string, namespace: string): Promise<SetupReport> {
    return this.retried(() => this.ensureNamespaceOnce(tenant, namespace));
  }

  /**
   * Makes `topic` a partitioned topic of `partitions` partitions, or grows
   * one that has fewer (Pulsar cannot take partitions away). A topic that
   * exists unpartitioned cannot be turned into one: that is an error naming
   * the way out. Returns what it found and did, as a phrase.
   */
  async ensurePartitions(tenant: string, namespace: string, topic: string, partitions: number): Promise<string> {
    return this.retried(() => this.ensurePartitionsOnce(tenant, namespace, topic, partitions));
  }

  /**
   * Runs an ensure step again after a transient failure. Safe because each
   * step reads the broker's state first and only then changes what is
   * missing; a loaded broker (a bundle moving, a metadata store slow to
   * answer) fails such calls now and then with 5xx or no answer in time.
   */
  private async retried<T>(step: () => Promise<T>): Promise<T> {
    const retries = this.options.retries ?? 3;
    for (let attempt = 1; ; attempt++) {
      try {
        return await step();
      } catch (error) {
        if (!(error instanceof PulsarAdminError) || !isTransient(error) || attempt > retries) throw error;
        const delayMs = 500 * 2 ** (attempt - 1);
        this.options.onRetry?.(error, attempt, delayMs);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  private async ensureNamespaceOnce(tenant: string, namespace: string): Promise<SetupReport> {
    let tenantState: SetupReport['tenant'] = 'existed';
    if ((await this.call('GET', `tenants/${tenant}`, undefined, [404])).status === 404) {
      const clusters = (await this.call('GET', 'clusters')).body as string[];
      await this.call('PUT', `tenants/${tenant}`, { allowedClusters: clusters }, [409]);
      tenantState = 'created';
    }
    const created = await this.call('PUT', `namespaces/${tenant}/${namespace}`, undefined, [409]);
    await this.call('POST', `namespaces/${tenant}/${namespace}/inactiveTopicPolicies`, INACTIVE_TOPIC_POLICY);
    // What lets a job's dispatcher resume without sending a task twice (docs/jobs.md, "Resume"), and keeps one dead letter per task attempt.
    await this.call('POST', `namespaces/${tenant}/${namespace}/deduplication`, true);
    return {
      tenant: tenantState,
      namespace: created.status === 409 ? 'existed' : 'created',
      policies: [
        `inactive topics without subscriptions deleted after ${INACTIVE_TOPIC_POLICY.maxInactiveDurationSeconds} s`,
        'producer deduplication on (a job dispatcher resumes without sending a task twice; one dead letter per task attempt)',
      ],
    };
  }

  private async ensurePartitionsOnce(tenant: string, namespace: string, topic: string, partitions: number): Promise<string> {
    const path = `persistent/${tenant}/${namespace}/${encodeURIComponent(topic)}/partitions`;
    // A topic that does not exist is a 404 on current brokers, `{ partitions: 0 }` on older ones.
    const found = await this.call('GET', path, undefined, [404]);
    const current = found.status === 404 ? 0 : ((found.body as { partitions?: number } | undefined)?.partitions ?? 0);
    if (current === 0) {
      const existing = (await this.call('GET', `namespaces/${tenant}/${namespace}/topics`)).body as string[];
      if (existing.some((name) => name.endsWith(`/${topic}`))) {
        throw new PulsarAdminError(
          `PUT ${path}`,
          null,
          `${tenant}/${namespace}/${topic} exists unpartitioned, and Pulsar cannot partition it: drain it, delete it ` +
            `(pulsar-admin topics delete persistent://${tenant}/${namespace}/${topic}), and run sheaf setup again; or remove partitions from sheaf.yml`,
        );
      }
      await this.call('PUT', path, partitions);
      return `${partitions} partitions created`;
    }
    if (current < partitions) {
      await this.call('POST', path, partitions);
      return `partitions raised from ${current} to ${partitions}`;
    }
    if (current > partitions)
      return `has ${current} partitions, more than the ${partitions} asked (Pulsar cannot remove partitions); left as is`;
    return `${partitions} partitions existed`;
  }

  /** The subscriptions of a topic, or null when the topic does not exist. */
  async subscriptions(tenant: string, namespace: string, topic: string): Promise<string[] | null> {
    const response = await this.call(
      'GET',
      `persistent/${tenant}/${namespace}/${encodeURIComponent(topic)}/subscriptions`,
      undefined,
      [404],
    );
    return response.status === 404 ? null : (response.body as string[]);
  }

  private async call(
    method: 'GET' | 'PUT' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    accepted: number[] = [],
  ): Promise<{ status: number; body: unknown }> {
    const what = `${method} ${path}`;
    const token = typeof this.options.token === 'function' ? await this.options.token() : this.options.token;
    let response: Response;
    try {
      response = await fetch(`${this.base}/${path}`, {
        method,
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
    } catch (error) {
      throw new PulsarAdminError(
        what,
        null,
        `the admin API at ${this.options.adminUrl} did not answer ${what}: ${(error as Error).message}; check pulsar.adminUrl (http://host:8080)`,
        { cause: error },
      );
    }
    const text = await response.text();
    if (!response.ok && !accepted.includes(response.status)) {
      const hint =
        response.status === 401 || response.status === 403
          ? '; the token needs superuser rights to create tenants, or tenant-admin rights on the tenant to create namespaces and set policies (docs/operations.md)'
          : '';
      throw new PulsarAdminError(what, response.status, `the admin API refused ${what}: ${response.status} ${brokerReason(text)}${hint}`);
    }
    if (!text) return { status: response.status, body: undefined };
    try {
      return { status: response.status, body: JSON.parse(text) as unknown };
    } catch (error) {
      throw new PulsarAdminError(
        what,
        response.status,
        `the admin API answered ${what} with something that is not JSON; check pulsar.adminUrl`,
        {
          cause: error,
        },
      );
    }
  }
}

/** No answer in time, too many requests, or a server-side error: worth another try. */
function isTransient(error: PulsarAdminError): boolean {
  return error.status === null || error.status === 429 || error.status >= 500;
}

/**
 * The broker's reason in one line: `{"reason": ...}`, the `Message:` line of
 * the plain-text page a broker answers an unexpected server error with (the
 * Java stack trace after it would fill a terminal on every retry), or the
 * first line of any other text, short.
 */
export function brokerReason(text: string): string {
  try {
    const reason = (JSON.parse(text) as { reason?: unknown }).reason;
    if (typeof reason === 'string') return oneLine(reason);
  } catch {
    // not JSON: read the text
  }
  const message = /^\s*Message:\s*(.+)$/m.exec(text)?.[1];
  return oneLine(message ?? text.trim().split('\n', 1)[0] ?? '');
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}
