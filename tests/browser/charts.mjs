// Looks at the UI's charts in Debian's chromium: on each page, the bars drawn (their
// data-count per status or reason, and their drawn heights) against the counts the test made,
// the runs page's counts against /api/runs, and a screenshot of each page.
// Started by tests/it/charts.rs.
//
// usage: node tests/browser/charts.mjs <admin url> <expected JSON> <screenshot dir>
//   expected: {"/ui/workflows": {"chart": "runs-chart", "key": "status", "counts": {...}}, ...}

import { chromium } from 'playwright-core';
import path from 'node:path';

const [admin, expectedText, shots] = process.argv.slice(2);
if (!admin || !expectedText || !shots) {
  console.error('usage: node charts.mjs <admin url> <expected JSON> <screenshot dir>');
  process.exit(2);
}
const expected = JSON.parse(expectedText);

function check(condition, message) {
  if (!condition) throw new Error(message);
  console.log('ok -', message);
}

const same = (a, b) => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

// What the chart with `id` draws: counts per key, and each bar's height per count.
async function drawn(page, id, key) {
  return page.evaluate(([id, key]) => {
    const svg = document.getElementById(id);
    const counts = {};
    const perCount = [];
    for (const rect of svg.querySelectorAll('rect.bar')) {
      const name = rect.getAttribute(`data-${key}`);
      const count = Number(rect.getAttribute('data-count'));
      counts[name] = (counts[name] || 0) + count;
      const box = rect.getBoundingClientRect();
      perCount.push(box.height / count);
    }
    return {
      counts,
      perCount,
      role: svg.getAttribute('role'),
      label: svg.getAttribute('aria-label'),
      width: svg.getBoundingClientRect().width,
    };
  }, [id, key]);
}

async function look(page, url, { chart, key, counts }, shot) {
  await page.goto(`${admin}${url}`);
  await page.waitForSelector(`svg#${chart}`);
  const seen = await drawn(page, chart, key);
  check(same(seen.counts, counts), `${url}: the bars count ${JSON.stringify(seen.counts)}, as stored`);
  check(seen.role === 'img' && seen.label.length > 10, `${url}: an image with a label: "${seen.label}"`);
  check(seen.width > 600, `${url}: the chart spans the page (${Math.round(seen.width)} px)`);
  // Every bar is drawn as tall as its count: the same pixels per run on one chart.
  const [first, ...rest] = seen.perCount;
  check(first > 0 && rest.every((h) => Math.abs(h - first) < 0.05),
    `${url}: bar heights proportional to counts (${first.toFixed(2)} px each)`);
  await page.locator(`svg#${chart}`).scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(shots, `${shot}.png`), fullPage: true });
  console.log(`screenshot ${shot}.png of ${url}`);
  return seen;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The tests run as root in CI, where chromium's sandbox cannot start.
  args: ['--no-sandbox'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(20000);

  const all = await look(page, '/ui/workflows', expected['/ui/workflows'], 'workflows');
  // The same counts as the API lists.
  const api = await (await fetch(`${admin}/api/runs?limit=500`)).json();
  const byStatus = {};
  for (const run of api.runs) byStatus[run.status] = (byStatus[run.status] || 0) + 1;
  check(same(all.counts, byStatus), `/api/runs agrees: ${JSON.stringify(byStatus)}`);
  // A bar's hover text gives its exact count.
  const title = await page.locator('svg#runs-chart rect.bar title').first().textContent();
  check(/UTC: \d+ \w+ runs/.test(title), `a bar says what it counts: "${title}"`);

  // The link to the day view keeps the counts, in 15-minute bars.
  await Promise.all([page.waitForURL(/window=day/), page.click('#window-day')]);
  const minutes = await page.locator('svg#runs-chart').getAttribute('data-bucket-minutes');
  check(minutes === '15', 'the day view has 15-minute bars');
  await look(page, '/ui/workflows?window=day', expected['/ui/workflows'], 'workflows-day');

  // From the workflows list to one workflow's page: its chart and p50/p95.
  await page.goto(`${admin}/ui/workflows`);
  await Promise.all([page.waitForURL('**/ui/workflows/charts'),
    page.click('tr.workflow-row[data-workflow="charts"] a.workflow-link')]);
  await look(page, '/ui/workflows/charts', expected['/ui/workflows/charts'], 'workflow-charts');
  const p50 = (await page.locator('#p50').textContent()).trim();
  const p95 = (await page.locator('#p95').textContent()).trim();
  check(p50.length > 0 && p95.length > 0, `p50 ${p50}, p95 ${p95}`);

  await look(page, '/ui/rejected', expected['/ui/rejected'], 'rejected');
  check((await page.locator('tr.rejected-row').count()) === 3, 'the rejected list stays below the chart');
  console.log('charts browser test passed');
} finally {
  await browser.close();
}
