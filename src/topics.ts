/**
 * Topic and subscription names, in one place. Transports map these logical
 * names to physical ones (Pulsar prefixes `persistent://{tenant}/{namespace}/`).
 */

/** Service and client names become part of topic names, so they are restricted to safe characters. */
export const NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_-]{0,199}$/;

export const taskTopic = (service: string): string => `sheaf-tasks-${service}`;
export const deadLetterTopic = (service: string): string => `sheaf-dead-letters-${service}`;
export const resultTopic = (clientName: string): string => `sheaf-results-${clientName}`;
/** Where the workers of a service announce the attempts they settled (see `src/worker/settled-feed.ts`). */
export const settledTopic = (service: string): string => `sheaf-settled-${service}`;

/** A namespace's job events: creations and seals from clients, final task outcomes from workers (docs/jobs.md). */
export const JOB_EVENTS_TOPIC = 'sheaf-job-events';
/** Each job's status as the active tracker publishes it for clients, keyed by job id (docs/jobs.md). */
export const JOB_STATE_TOPIC = 'sheaf-job-state';
/**
 * The active job tracker's snapshots of each job, keyed by job id, written
 * through an exclusive producer: holding it is what makes a tracker the
 * active one, and a tracker that lost it can write nothing more (docs/jobs.md).
 */
export const JOB_SNAPSHOTS_TOPIC = 'sheaf-job-snapshots';
/**
 * Status requests, read by every job tracker through a non-durable
 * subscription: the one that holds the job answers at once, not behind the
 * backlog of the events topic (docs/jobs.md).
 */
export const JOB_REQUESTS_TOPIC = 'sheaf-job-requests';
/**
 * The trackers' answers to requests (a status, a list), read by clients
 * through non-durable subscriptions: apart from `JOB_STATE_TOPIC`, which
 * carries every job's statuses, an answer does not wait behind thousands of them.
 */
export const JOB_ANSWERS_TOPIC = 'sheaf-job-answers';

const RESULT_TOPIC = /^sheaf-results-[A-Za-z][A-Za-z0-9_-]{0,199}$/;

/**
 * Whether a task's `replyTo` names a client's result topic, the only kind a
 * worker publishes results to: a short name that the transport places in
 * the worker's own tenant and namespace, never a full topic name (another
 * namespace, with the worker's credentials) nor a task, retry or dead-letter
 * topic (another service's queue).
 */
export const isResultTopic = (name: string): boolean => RESULT_TOPIC.test(name);

/** The Shared subscription every worker of a service consumes its task topic with. */
export const WORKER_SUBSCRIPTION = 'sheaf-workers';
/** Keeps dead letters retained until someone inspects or replays them. */
export const DEAD_LETTER_SUBSCRIPTION = 'sheaf-dead-letters';
/** The active job tracker's subscription on the job-events and job-snapshots topics (Failover: one consumer at a time). */
export const JOB_TRACKER_SUBSCRIPTION = 'sheaf-job-tracker';
/** The client's own subscription on its result topic. */
export const CLIENT_SUBSCRIPTION = 'sheaf-client';
