// Drives the admin UI in Debian's chromium: runs list -> failed run -> its event -> back ->
// Replay, checking what each page shows. Started by tests/it/ui.rs with a server holding real runs.
//
// usage: node tests/browser/ui.mjs <admin url> <failed run id> <header value> <screenshot path> <webhook url>

import { chromium } from 'playwright-core';

const [admin, failedRun, headerValue, screenshot, webhook] = process.argv.slice(2);
if (!admin || !failedRun || !headerValue || !screenshot || !webhook) {
  console.error('usage: node ui.mjs <admin url> <failed run id> <header value> <screenshot path> <webhook url>');
  process.exit(2);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
  console.log('ok -', message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The tests run as root in CI, where chromium's sandbox cannot start.
  args: ['--no-sandbox'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.setDefaultTimeout(20000);

  // The runs list: both runs, the failed one in its colour.
  await page.goto(`${admin}/ui/runs`);
  check((await page.title()).startsWith('Runs'), 'the runs list opens');
  await page.waitForSelector('tr.run-row');
  const rows = await page.locator('tr.run-row').count();
  check(rows === 2, `the list shows both runs (${rows})`);
  const failedRow = page.locator(`tr.run-row[data-run="${failedRun}"]`);
  check((await failedRow.locator('.status').textContent()).trim() === 'failed', 'the failed run says failed');
  check((await failedRow.locator('.status').getAttribute('class')).includes('status-failed'), 'in the failed colour');
  check(await page.locator('#auto-refresh').isChecked(), 'auto-refresh is on');

  // Filters: the status filter narrows the list to the failed run.
  await page.selectOption('#filter-status', 'failed');
  await Promise.all([page.waitForURL(/status=failed/), page.click('form.filters button[type=submit]')]);
  check((await page.locator('tr.run-row').count()) === 1, 'the status filter keeps only the failed run');

  // The run page: status, the steps in order, the failed step's error in red.
  await Promise.all([page.waitForURL(`**/ui/runs/${failedRun}`), failedRow.locator('a.run-link').click()]);
  check((await page.locator('#run-status').textContent()).trim() === 'failed', 'the run page says failed');
  const steps = await page.locator('li.step .step-name').allTextContents();
  check(JSON.stringify(steps) === JSON.stringify(['check', 'summary', 'deliver']), `the steps in order: ${steps}`);
  const error = page.locator('li[data-step="deliver"] pre.step-error');
  check((await error.textContent()).includes('500'), 'the failed step shows its error');
  const colour = await error.evaluate((el) => getComputedStyle(el).color);
  check(colour === 'rgb(180, 35, 24)', `the error is red (${colour})`);
  const input = await page.locator('li[data-step="deliver"] pre.step-input').textContent();
  check(input.includes('"url"'), 'the step input is shown as JSON');
  check((await page.locator('#run-attempt').textContent()).trim() === '1', 'first attempt');

  // The event page: method, path, a header, the body, and a curl command that repeats it.
  await Promise.all([page.waitForURL('**/event'), page.click('#event-link')]);
  check((await page.locator('#event-method').textContent()).trim() === 'POST', 'the event method');
  check((await page.locator('#event-path').textContent()).trim() === '/hooks/orders/acme', 'the event path');
  const values = await page.locator('#headers .header-value').allTextContents();
  check(values.includes(headerValue), `the header value ${headerValue} is shown`);
  const body = await page.locator('#event-body').textContent();
  check(body.includes('"order": 42'), 'the body is pretty-printed');
  const curl = await page.locator('#curl').textContent();
  check(curl.startsWith('curl -X POST ') && curl.includes(`x-shop-domain: ${headerValue}`) && curl.includes('--data-binary'),
    'copy as curl repeats method, header and body');

  // Back to the run, and Replay.
  await Promise.all([page.waitForURL(`**/ui/runs/${failedRun}`), page.goBack()]);
  check((await page.locator('#run-status').textContent()).trim() === 'failed', 'back on the run page');
  // On the latest definition: the workflow has not changed, so it is the run's own version.
  const version = (await page.locator('#run-version').textContent()).trim();
  await page.check('#replay-latest');
  await Promise.all([page.waitForURL(/replayed=2/), page.click('#replay')]);
  check((await page.locator('#notice').textContent()).includes('attempt 2'), 'the replay is queued as attempt 2');

  // The new attempt finishes: reload until the page says so.
  let status = '';
  for (let i = 0; i < 100; i++) {
    await page.goto(`${admin}/ui/runs/${failedRun}`);
    status = (await page.locator('#run-status').textContent()).trim();
    if (status === 'succeeded') break;
    await page.waitForTimeout(200);
  }
  check(status === 'succeeded', `the replayed run succeeded (${status})`);
  check((await page.locator('#run-attempt').textContent()).trim() === '2', 'attempt 2 is shown');
  check((await page.locator('#run-version').textContent()).trim() === version, `still version ${version}`);
  check(!(await page.locator('#run-replayed-from').count()), 'no earlier version to show');
  check(!(await page.locator('pre.step-error').count()), 'no step error is left');
  await page.screenshot({ path: screenshot, fullPage: true });

  // The workflows page lists the workflow with its trigger.
  await page.click('header nav a[href="/ui/workflows"]');
  await page.waitForSelector('tr.workflow-row[data-workflow="orders"]');
  const trigger = await page.locator('tr.workflow-row[data-workflow="orders"]').textContent();
  check(trigger.includes('POST /hooks/orders/{tenant}'), 'the workflows page shows the trigger');

  // The rejected requests page: the request to a path no workflow binds, and why.
  await Promise.all([page.waitForURL('**/ui/rejected'), page.click('header nav a[href="/ui/rejected"]')]);
  const refused = page.locator('tr.rejected-row[data-reason="no_route"]');
  check((await refused.count()) >= 1, 'the rejected page lists the refused request');
  check((await refused.first().textContent()).includes('/hooks/nowhere'), 'with its path');
  check((await page.locator('#reject-counts').textContent()).includes('no_route: 1'), 'and the count per reason');

  // Auto-refresh: a webhook arriving while the list is open shows up without a reload.
  await page.goto(`${admin}/ui/runs`);
  check((await page.locator('tr.run-row').count()) === 2, 'two runs before');
  const sent = await fetch(`${webhook}/hooks/orders/acme`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ order: 9 }),
  });
  check(sent.status === 202, 'a third webhook is accepted');
  const { run_ids: [third] } = await sent.json();
  await page.waitForSelector(`tr.run-row[data-run="${third}"]`, { timeout: 20000 });
  check((await page.locator('tr.run-row').count()) === 3, 'the new run appeared by itself');

  // Start by hand from the workflows page: a run on a typed-in payload, marked as started in the UI.
  await page.goto(`${admin}/ui/workflows`);
  const row = page.locator('tr.workflow-row[data-workflow="orders"]');
  await row.locator('details.start summary').click();
  await row.locator('textarea[name=payload]').fill('{"order": 5}');
  await Promise.all([page.waitForURL(/\/ui\/runs\/[0-9a-f-]+$/), row.locator('form.start-form button').click()]);
  let started = '';
  for (let i = 0; i < 100; i++) {
    started = (await page.locator('#run-status').textContent()).trim();
    if (started === 'succeeded') break;
    await page.waitForTimeout(200);
    await page.reload();
  }
  check(started === 'succeeded', `the run started by hand succeeded (${started})`);
  await Promise.all([page.waitForURL('**/event'), page.click('#event-link')]);
  check((await page.locator('#event-trigger').getAttribute('data-kind')) === 'manual', 'its event says manual');
  check((await page.locator('#event-trigger').textContent()).includes('(ui)'), 'started in the UI');
  check((await page.locator('#curl').count()) === 0, 'no curl for a run nobody sent');
  console.log('browser test passed');
} finally {
  await browser.close();
}
