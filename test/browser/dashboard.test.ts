/**
 * The live dashboard in a real headless browser (Debian's Chromium, driven by
 * playwright-core): it opens while a worker runs, the figures change without
 * a reload, and a screenshot goes to docs/dashboard.png for the README.
 * Skipped when no Chromium is installed, unless SHEAF_REQUIRE_BROWSER=1 (CI).
 */
import 'reflect-metadata';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, describe, expect, test } from 'vitest';
import { Batch } from '../../src/service/decorators.js';
import { registerMetrics, startOpsServer, type OpsServer } from '../../src/telemetry/ops-server.js';
import { NonRetryableError } from '../../src/errors.js';
import { startSystem, type System } from '../support/system.js';

const CHROMIUM = process.env.SHEAF_CHROMIUM ?? '/usr/bin/chromium';
const required = process.env.SHEAF_REQUIRE_BROWSER === '1';
const screenshot = new URL('../../docs/dashboard.png', import.meta.url).pathname;

interface Mail {
  send(to: string): Promise<string>;
}

class MailImpl {
  send(_to: string): void {}
  @Batch('send')
  async sendMany(tasks: Map<string, string>): Promise<Map<string, string | Error>> {
    await new Promise((resolve) => setTimeout(resolve, 20)); // a provider call takes a little while
    return new Map(
      [...tasks].map(([id, to]): [string, string | Error] => [
        id,
        to.startsWith('bounce') ? new NonRetryableError(`${to} bounced`) : `sent to ${to}`,
      ]),
    );
  }
}

describe.skipIf(!existsSync(CHROMIUM) && !required)('the live dashboard in Chromium', () => {
  let system: System | undefined;
  let ops: OpsServer | undefined;
  let browser: Browser | undefined;
  let dispatching = true;
  afterAll(async () => {
    dispatching = false;
    await browser?.close();
    await ops?.close();
    await system?.stop();
  });

  test('shows live figures per method and the busiest batch keys, updated without a reload', async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(`SHEAF_REQUIRE_BROWSER=1 but there is no Chromium at ${CHROMIUM} (apt-get install chromium)`);
    const { exporter } = registerMetrics();
    system = await startSystem([
      { name: 'Mail', executor: { factory: () => new MailImpl(), concurrency: 4, batch: { maxMessages: 50, maxSeconds: 0.2 } } },
    ]);
    ops = await startOpsServer({ port: 0, host: '127.0.0.1', worker: system.worker, exporter, dashboard: true });
    const mail = system.client;
    const tenants = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark'];
    // Skewed traffic over several batch keys, with some bounces, until the test ends.
    void (async () => {
      for (let round = 0; dispatching; round++) {
        const calls = tenants.flatMap((tenant, t) =>
          [...Array(6 - t)].map((_, k) =>
            mail
              .dispatch(mail.service<Mail>('Mail'), { batchKey: tenant, fireAndForget: true })
              .send(k === 0 && round % 5 === 0 ? `bounce-${round}` : `user${k}@${tenant}.test`),
          ),
        );
        await Promise.all(calls).catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 25)); // pace the traffic a little
      }
    })();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    await page.goto(`${ops.url}/dashboard`);
    const rate = page.locator('tr[data-method="Mail.send"] td.rate');
    await rate.waitFor({ timeout: 20_000 });
    const first = await page.locator('#succeeded').textContent();
    // The page updates itself: the settled count grows with no reload.
    // (Expressions run in the page, where `document` is; this file is type-checked without the DOM library.)
    await page.waitForFunction(`Number(document.getElementById('succeeded').textContent) > ${Number(first)}`, undefined, {
      timeout: 20_000,
    });
    expect(Number(await rate.textContent())).toBeGreaterThan(0);
    await page.waitForFunction(`document.querySelectorAll('#keys tbody tr').length >= 3`, undefined, { timeout: 20_000 });
    const keys = await page.locator('#keys tbody tr td:first-child').allTextContents();
    expect(keys[0]).toBe('acme'); // the busiest tenant first
    expect(await page.locator('#status').textContent()).toBe('running');
    // A job shows with its progress; it finishes on the page.
    const job = await mail.job({ name: 'newsletter' });
    await Promise.all(tenants.map((tenant) => job.dispatch(mail.service<Mail>('Mail'), { batchKey: tenant }).send(`all@${tenant}.test`)));
    await job.seal();
    await job.done({ timeoutMs: 20_000 });
    const jobRow = page.locator(`#jobs tr[data-job="${job.jobId}"]`);
    await jobRow.waitFor({ timeout: 20_000 });
    await page.waitForFunction(
      `document.querySelector('#jobs tr[data-job="${job.jobId}"] td.state')?.textContent === 'finished'`,
      undefined,
      {
        timeout: 20_000,
      },
    );
    expect(await jobRow.locator('td').nth(1).textContent()).toBe('newsletter');
    // The worker's tracker is the only one here: the active one, its term numbered.
    expect(await page.locator('#job-tracker').textContent()).toMatch(/^job tracker: active \(epoch \d+\)$/);
    await page.screenshot({ path: screenshot, fullPage: true });
    expect(existsSync(screenshot)).toBe(true);
  }, 60_000);
});
