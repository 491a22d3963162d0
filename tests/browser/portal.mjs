// Browser tests of the ehrchain portal against a fresh `ehrchain dev --demo` chain (started
// by scripts/test-browser). Plain Node with playwright-core driving Debian's Chromium.
//
// Each role does its main task from the pages alone, as a user would: the patient uploads a
// file holding a unique plaintext marker and grants the doctor; the doctor opens it (the
// download has the same bytes) and prescribes; the pharmacist dispenses; the insurer officer
// and the regulator approve the claim; the patient pays; the admin approves a doctor that
// registered in the portal, who then signs in and acts; the explorer shows the blocks. Then
// emergency access: the regulator's guardian inbox shows the demo's request, the patient
// names guardians on the Guardians page, an approved doctor without a grant asks from the
// chart, two guardians approve, the doctor opens it and reads the uploaded file, the patient's
// alert lists the read and the patient disputes it, which the regulator sees. Then
// the checks: a revoked doctor's open is refused on the page; a form without its CSRF token
// is refused (403); a foreign Host header is refused (421); no file under the node's data
// dir (the key directory aside) holds the marker. A full-page screenshot of each role's
// dashboard (and of the patient's Guardians page with the alert) goes to SHOTS_DIR.
//
// Environment: PORTAL_URL, API_URL, DATA_DIR (the node's), KEYS_DIR, SHOTS_DIR, CHROMIUM
// (default /usr/bin/chromium). Prints one line per step and, last,
// "browser tests: N passed, N failed"; exits 1 on any failure.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const PORTAL = (process.env.PORTAL_URL || 'http://127.0.0.1:8090').replace(/\/$/, '');
const API = (process.env.API_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const DATA_DIR = process.env.DATA_DIR;
const KEYS_DIR = process.env.KEYS_DIR || (DATA_DIR && path.join(DATA_DIR, 'keys'));
const SHOTS = process.env.SHOTS_DIR || 'docs/portal';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PASSWORD = 'dev';
// Waiting for an element (a missing one fails the step after this long).
const TIMEOUT = 15_000;
// Waiting for a page: an action may encrypt, upload and wait for finality first.
const NAV_TIMEOUT = 60_000;

// The marker: a unique plaintext that must never reach the node's disk.
const MARKER = `ehrchain-browser-marker-${randomBytes(12).toString('hex')}`;
const UPLOAD_TITLE = `Emergency card ${MARKER.slice(-8)}`;
const UPLOAD_BYTES = Buffer.from(
    `EMERGENCY CARD\nAllergies: penicillin\nBlood group: O+\n${MARKER}\n`, 'utf8');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ehrchain-browser-'));

let passed = 0;
let failed = 0;
const failures = [];

/** Runs one named step; a failure is counted and the run goes on. */
async function step(name, fn) {
    const t0 = Date.now();
    try {
        await fn();
        passed++;
        console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
    } catch (e) {
        failed++;
        const msg = (e && e.message ? e.message : String(e)).split('\n').slice(0, 4).join(' | ');
        failures.push(`${name}: ${msg}`);
        console.log(`FAIL ${name}: ${msg}`);
    }
}

/** The account id of a demo keystore (the keystore file names it). */
function accountOf(name) {
    const f = JSON.parse(fs.readFileSync(path.join(KEYS_DIR, `${name}.json`), 'utf8'));
    assert.ok(f.account && f.account.startsWith('ehr'), `no account id in ${name}.json`);
    return f.account;
}

/** The message of the flash box after a Post/Redirect/Get action; throws unless it is ok. */
async function expectOk(page, what) {
    const flash = page.locator('.flash').first();
    await flash.waitFor({ timeout: TIMEOUT }).catch(() => {});
    if (!(await flash.count())) {
        const h1 = await page.locator('h1').first().textContent().catch(() => '?');
        throw new Error(`${what}: no message on the page (${page.url()}, h1 "${h1}")`);
    }
    const cls = (await flash.getAttribute('class')) || '';
    const text = ((await flash.textContent()) || '').trim();
    if (!cls.includes('ok')) throw new Error(`${what}: ${text}`);
    return text;
}

/** Fails with the page's own words when a page is an error page. */
async function expectPage(page, url) {
    const r = await page.goto(PORTAL + url);
    const status = r ? r.status() : 0;
    if (status >= 400) {
        const msg = await page.locator('main').textContent().catch(() => '');
        throw new Error(`GET ${url} answered ${status}: ${(msg || '').replace(/\s+/g, ' ').trim().slice(0, 200)}`);
    }
    return r;
}

async function signIn(browser, name, dashboard, password = PASSWORD) {
    const ctx = await browser.newContext({ acceptDownloads: true });
    ctx.setDefaultTimeout(TIMEOUT);
    ctx.setDefaultNavigationTimeout(NAV_TIMEOUT);
    const page = await ctx.newPage();
    await page.goto(`${PORTAL}/login`);
    await page.getByLabel('Account', { exact: true }).fill(name);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await Promise.all([
        page.waitForURL((u) => !u.pathname.startsWith('/login'), { timeout: NAV_TIMEOUT }).catch(() => {}),
        page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    const where = new URL(page.url()).pathname;
    if (where.startsWith('/login')) {
        const flash = await page.locator('.flash').first().textContent().catch(() => '');
        throw new Error(`${name} could not sign in: ${(flash || '').trim()}`);
    }
    if (dashboard) {
        assert.equal(where, dashboard, `${name} landed on ${where}, not ${dashboard}`);
    }
    return { ctx, page };
}

async function shot(page, role) {
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `${role}.png`), fullPage: true });
}

/** The first table row holding `text`. */
function rowWith(page, text) {
    return page.locator('tr', { hasText: text }).first();
}

/** A raw HTTP request (fetch may not set Host), answering { status, body }. */
function raw(url, { method = 'GET', headers = {}, body } = {}) {
    return new Promise((resolve, reject) => {
        const u = new URL(url);
        const req = http.request(
            { host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers },
            (res) => {
                let data = '';
                res.on('data', (c) => (data += c));
                res.on('end', () => resolve({ status: res.statusCode, body: data, headers: res.headers }));
            });
        req.on('error', reject);
        if (body) req.write(body);
        req.end();
    });
}

/** Every file under `dir`, skipping `skip`. */
function* files(dir, skip) {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (skip && path.resolve(p) === path.resolve(skip)) continue;
        if (e.isDirectory()) yield* files(p, skip);
        else if (e.isFile()) yield p;
    }
}

async function main() {
    assert.ok(DATA_DIR, 'DATA_DIR is not set');
    const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ['--headless', '--no-sandbox', '--disable-background-networking'],
    });
    const ids = {};
    let record = null; // the uploaded record's id
    let alice, drbob, pharma, insurer, regulator, admin;

    await step('demo accounts exist in the keystore', async () => {
        for (const n of ['alice', 'drbob', 'pharma', 'insurer', 'regulator', 'drcarol', 'admin']) {
            ids[n] = accountOf(n);
        }
    });

    await step('public pages: home, sign-in labels, a clear message for a wrong password', async () => {
        const ctx = await browser.newContext();
        const page = await ctx.newPage();
        await page.goto(PORTAL + '/');
        assert.ok(await page.locator('h1').count(), 'the home page has no h1');
        await page.goto(PORTAL + '/login');
        await page.getByLabel('Account', { exact: true }).fill('alice');
        await page.getByLabel('Password', { exact: true }).fill('not-the-password');
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.waitForLoadState();
        const msg = await page.locator('.flash.error').textContent();
        assert.match(msg, /wrong account name or password/i);
        await ctx.close();
    });

    await step('registration: a new doctor registers in the portal and waits for approval', async () => {
        const ctx = await browser.newContext();
        ctx.setDefaultTimeout(TIMEOUT);
        ctx.setDefaultNavigationTimeout(NAV_TIMEOUT);
        const page = await ctx.newPage();
        await page.goto(PORTAL + '/register');
        await page.getByLabel('Role', { exact: true }).selectOption('doctor');
        await page.getByLabel('Account', { exact: true }).fill('drdave');
        await page.getByLabel('Name', { exact: true }).fill('Dr Dave Browser');
        await page.getByLabel('Date of birth', { exact: true }).fill('1979-04-05');
        await page.getByLabel('Address', { exact: true }).fill('2 Test Road');
        await page.getByLabel('E-mail', { exact: true }).fill('dave@example.org');
        await page.getByLabel('Phone', { exact: true }).fill('+44 20 7946 0001');
        await page.getByLabel('Licence number', { exact: true }).fill('GMC-7003');
        await page.getByLabel('Organisation', { exact: true }).fill("St Mary's");
        await page.getByLabel('Password', { exact: true }).fill('drdave-password');
        await page.getByLabel('Repeat password', { exact: true }).fill('drdave-password');
        await page.getByRole('button', { name: 'Register' }).click();
        await page.waitForLoadState();
        const text = await expectOk(page, 'registering drdave');
        assert.match(text, /approve/i, `no word of approval in "${text}"`);
        ids.drdave = accountOf('drdave');
        await ctx.close();
    });

    await step('patient: signs in, dashboard', async () => {
        alice = await signIn(browser, 'alice', '/patient');
        await shot(alice.page, 'patient');
    });

    await step('patient: uploads a file (the plaintext marker) with category and title', async () => {
        const p = alice.page;
        await expectPage(p, '/patient/records');
        const file = path.join(scratch, 'emergency-card.txt');
        fs.writeFileSync(file, UPLOAD_BYTES);
        await p.getByLabel('File', { exact: true }).setInputFiles(file);
        await p.getByLabel('Category', { exact: true }).selectOption('emergency');
        await p.getByLabel('Title', { exact: true }).fill(UPLOAD_TITLE);
        await p.getByRole('button', { name: 'Upload' }).click();
        await p.waitForLoadState();
        await expectOk(p, 'upload');
        await expectPage(p, '/patient/records');
        const link = rowWith(p, UPLOAD_TITLE).locator('a[href^="/records/rec"]').first();
        const href = await link.getAttribute('href');
        record = href.split('/').pop();
        assert.match(record, /^rec[0-9a-f]{32}$/);
    });

    await step('doctor: opening the record before any grant is refused on the page', async () => {
        drbob = await signIn(browser, 'drbob', '/doctor');
        await shot(drbob.page, 'doctor');
        await refusedOpen(drbob.page, record);
    });

    await step('patient: grants drbob the category', async () => {
        const p = alice.page;
        await expectPage(p, '/patient/consent');
        await p.getByLabel('Grantee', { exact: true }).fill('drbob');
        await p.getByLabel('Categories', { exact: true }).selectOption(['emergency']);
        const expires = p.getByLabel('Expires', { exact: true });
        if ((await expires.evaluate((e) => e.tagName)) === 'INPUT') await expires.fill('30d');
        await p.getByRole('button', { name: 'Grant access' }).click();
        await p.waitForLoadState();
        await expectOk(p, 'grant');
    });

    await step('doctor: opens the record (an audited read); the download has the same bytes', async () => {
        const p = drbob.page;
        assert.ok(record, 'no record was uploaded');
        await expectPage(p, `/records/${record}`);
        const [download] = await Promise.all([
            p.waitForEvent('download', { timeout: NAV_TIMEOUT }),
            p.getByRole('button', { name: 'Open', exact: true }).click(),
        ]);
        const out = path.join(scratch, 'downloaded');
        await download.saveAs(out);
        assert.ok(fs.readFileSync(out).equals(UPLOAD_BYTES), 'the downloaded bytes differ from the uploaded file');
    });

    await step('doctor: prescribes for alice, to City Pharmacy', async () => {
        const p = drbob.page;
        await expectPage(p, '/doctor/prescribe');
        await p.getByLabel('Patient', { exact: true }).fill(ids.alice);
        await p.getByLabel('Drug', { exact: true }).fill('Paracetamol');
        await p.getByLabel('Dose', { exact: true }).fill('1 g four times a day');
        await p.getByLabel('Days', { exact: true }).fill('3');
        await p.getByLabel('Quantity', { exact: true }).fill('12');
        const pharmacy = p.getByLabel('Pharmacy', { exact: true });
        const options = await pharmacy.locator('option').evaluateAll((os) => os.map((o) => ({ v: o.value, t: o.textContent })));
        const pick = options.find((o) => o.v === ids.pharma || /City Pharmacy/.test(o.t || ''));
        assert.ok(pick, `City Pharmacy is not among the pharmacies: ${JSON.stringify(options)}`);
        await pharmacy.selectOption(pick.v);
        await p.getByRole('button', { name: 'Prescribe' }).click();
        await p.waitForLoadState();
        await expectOk(p, 'prescribe');
    });

    await step('pharmacist: dispenses a prescription at a price (an invoice)', async () => {
        pharma = await signIn(browser, 'pharma', '/pharmacy');
        const p = pharma.page;
        await shot(p, 'pharmacist');
        const first = p.locator('a[href^="/pharmacy/rx/"]').first();
        await first.click();
        await p.waitForLoadState();
        await p.getByLabel('Price', { exact: true }).fill('30');
        await p.getByRole('button', { name: 'Dispense' }).click();
        await p.waitForLoadState();
        await expectOk(p, 'dispense');
    });

    await step('insurer officer: approves the claim at the first level', async () => {
        insurer = await signIn(browser, 'insurer', '/insurer');
        const p = insurer.page;
        await shot(p, 'insurer');
        await p.getByLabel('Reason', { exact: true }).first().fill('covered medication');
        await p.getByRole('button', { name: 'Approve' }).first().click();
        await p.waitForLoadState();
        await expectOk(p, 'insurer approval');
    });

    await step('regulator: approves the claim at the second level (the insurer pays its share)', async () => {
        regulator = await signIn(browser, 'regulator', '/regulator');
        const p = regulator.page;
        await shot(p, 'regulator');
        await p.getByLabel('Reason', { exact: true }).first().fill('audit ok');
        await p.getByRole('button', { name: 'Approve' }).first().click();
        await p.waitForLoadState();
        await expectOk(p, 'regulator approval');
    });

    await step('patient: pays the rest of the claimed invoice', async () => {
        const p = alice.page;
        await expectPage(p, '/patient/invoices');
        await p.getByRole('button', { name: 'Pay' }).first().click();
        await p.waitForLoadState();
        await expectOk(p, 'pay');
    });

    await step('admin: approves drcarol and the doctor registered in the portal', async () => {
        admin = await signIn(browser, 'admin', '/admin');
        const p = admin.page;
        await shot(p, 'admin');
        for (const who of ['drcarol', 'drdave']) {
            assert.ok(ids[who], `${who} has no account id`);
            await expectPage(p, '/admin');
            await rowWith(p, ids[who]).getByRole('button', { name: 'Approve' }).click();
            await p.waitForLoadState();
            await expectOk(p, `approving ${who}`);
        }
    });

    await step('the approved new doctor signs in and acts (publishes a slot)', async () => {
        const dave = await signIn(browser, 'drdave', '/doctor', 'drdave-password');
        const p = dave.page;
        await expectPage(p, '/doctor/slots');
        // Tomorrow at 14:00 UTC, as the datetime-local field takes it.
        const t = new Date(Date.now() + 24 * 3600 * 1000);
        const day = t.toISOString().slice(0, 10);
        await p.getByLabel(/Starts at/).fill(`${day}T14:00`);
        await p.getByLabel('Minutes', { exact: true }).fill('20');
        await p.getByLabel('Fee', { exact: true }).fill('10');
        await p.getByRole('button', { name: 'Publish slot' }).click();
        await p.waitForLoadState();
        await expectOk(p, 'publishing a slot');
        await dave.ctx.close();
    });

    // Emergency access (break-glass): the demo has alice's guardians (regulator, insurer,
    // pharma; 2 of 3) and drbob's request waiting in their inboxes.
    let emergency = null; // the request drcarol makes
    let drcarol = null;

    await step('guardian: the regulator\'s inbox shows drbob\'s request (who, hospital, reason, note)', async () => {
        assert.ok(regulator, 'the regulator is not signed in');
        const p = regulator.page;
        await expectPage(p, '/guardian');
        const card = p.locator('.card', { hasText: 'drbob' }).first();
        const text = (await card.textContent()).replace(/\s+/g, ' ');
        assert.match(text, /St Mary's/);
        assert.match(text, /unconscious/);
        assert.match(text, /medication list and allergies/);
        assert.ok(await card.getByRole('button', { name: 'Approve' }).count(), 'no Approve button');
    });

    await step('patient: names guardians on the Guardians page (2 of 3, the default categories)', async () => {
        const p = alice.page;
        await expectPage(p, '/patient/guardians');
        for (const who of ['regulator', 'insurer', 'pharma']) {
            await p.getByRole('checkbox', { name: new RegExp(`^${who} \\(`) }).check();
        }
        for (const c of ['vitals', 'lab', 'medication', 'emergency']) {
            assert.ok(await p.getByRole('checkbox', { name: c, exact: true }).isChecked(), `${c} is not checked by default`);
        }
        await p.getByLabel('How many must agree', { exact: true }).fill('2');
        await p.getByLabel('Longest window a doctor may ask for', { exact: true }).selectOption('24h');
        await p.getByRole('button', { name: 'Set guardians' }).click();
        await p.waitForLoadState();
        const text = await expectOk(p, 'setting guardians');
        assert.match(text, /2 of the 3/);
        assert.match(text, /withdrawn/, 'drbob\'s waiting request was not said to be withdrawn');
    });

    await step('doctor: asks for emergency access from the chart of a patient who granted nothing', async () => {
        drcarol = await signIn(browser, 'drcarol', '/doctor');
        const p = drcarol.page;
        await expectPage(p, `/doctor/patients/${ids.alice}`);
        await p.getByLabel('Emergency reason', { exact: true }).selectOption('unconscious');
        await p.getByLabel('Note to the guardians', { exact: true }).fill('Collapsed in the waiting room; need allergies and medication.');
        await p.getByLabel('For how long', { exact: true }).selectOption('1h');
        await p.getByRole('button', { name: 'Ask for emergency access' }).click();
        await p.waitForLoadState();
        const text = await expectOk(p, 'emergency request');
        const m = text.match(/emg[0-9a-f]{32}/);
        assert.ok(m, `no request id in "${text}"`);
        emergency = m[0];
    });

    await step('guardians: the regulator and the insurer officer approve in their inboxes (released)', async () => {
        assert.ok(emergency, 'no emergency request was made');
        const answer = async (page, what) => {
            await expectPage(page, '/guardian');
            await page.locator('.card', { hasText: emergency }).getByRole('button', { name: 'Approve' }).click();
            await page.waitForLoadState();
            return expectOk(page, what);
        };
        assert.match(await answer(regulator.page, 'regulator approving'), /1 of 2 approvals/);
        assert.match(await answer(insurer.page, 'insurer approving'), /released/);
    });

    await step('doctor: opens the released access (shares checked) and reads the emergency card under it', async () => {
        assert.ok(emergency && record, 'nothing to open');
        const p = drcarol.page;
        await expectPage(p, '/doctor/emergency');
        await rowWith(p, emergency.slice(0, 10)).getByRole('button', { name: 'Open', exact: true }).click();
        await p.waitForLoadState();
        assert.match(await expectOk(p, 'open'), /2 good shares/);
        await expectPage(p, `/records/${record}`);
        const [download] = await Promise.all([
            p.waitForEvent('download', { timeout: NAV_TIMEOUT }),
            p.getByRole('button', { name: 'Open', exact: true }).click(),
        ]);
        const out = path.join(scratch, 'emergency-read');
        await download.saveAs(out);
        assert.ok(fs.readFileSync(out).equals(UPLOAD_BYTES), 'the emergency read has other bytes');
    });

    await step('patient: the alert names the doctor and the read; disputes it (the regulator sees it)', async () => {
        const p = alice.page;
        await expectPage(p, '/patient');
        assert.match(await p.locator('.notice.alert').first().textContent(), /Emergency access to your records was released/);
        await expectPage(p, '/patient/guardians');
        const alert = p.locator('.card', { hasText: 'Records read under this access' }).first();
        const text = (await alert.textContent()).replace(/\s+/g, ' ');
        assert.match(text, /drcarol/);
        assert.ok(text.includes(UPLOAD_TITLE), `the read of "${UPLOAD_TITLE}" is not listed: ${text.slice(0, 300)}`);
        await shot(p, 'guardians');
        await alert.getByRole('button', { name: 'Dispute' }).click();
        await p.waitForLoadState();
        assert.match(await expectOk(p, 'dispute'), /disputed/);
        await expectPage(regulator.page, '/regulator');
        assert.ok(await regulator.page.locator(`[title="${emergency}"]`).count(), 'the dispute is not on the regulator\'s page');
    });

    await step('explorer: the chain status and the blocks, a block and a transaction', async () => {
        const ctx = await browser.newContext();
        ctx.setDefaultTimeout(TIMEOUT);
        ctx.setDefaultNavigationTimeout(NAV_TIMEOUT);
        const p = await ctx.newPage();
        await expectPage(p, '/');
        await p.getByRole('link', { name: 'Explorer' }).first().click();
        await p.waitForLoadState();
        assert.equal(await p.locator('h1').textContent(), 'Chain explorer');
        const blockLinks = p.locator('a[href^="/explorer/blocks/"]');
        assert.ok((await blockLinks.count()) > 0, 'no blocks are listed');
        await shot(p, 'explorer');
        await blockLinks.first().click();
        await p.waitForLoadState();
        assert.match(await p.locator('h1').textContent(), /^Block \d+$/);
        assert.match(await p.locator('main').textContent(), /Redacted/);
        const tx = p.locator('a[href^="/explorer/tx/"]').first();
        await tx.click();
        await p.waitForLoadState();
        assert.equal(await p.locator('h1').textContent(), 'Transaction');
        assert.match(await p.locator('main').textContent(), /finalized/);
        // Search: a height, and something that is nothing.
        await expectPage(p, '/explorer');
        await p.getByLabel('Search', { exact: true }).fill('1');
        await p.getByRole('button', { name: 'Search' }).click();
        await p.waitForLoadState();
        assert.equal(await p.locator('h1').textContent(), 'Block 1');
        await p.getByRole('link', { name: 'Chain', exact: true }).click();
        await p.getByLabel('Search', { exact: true }).fill('no-such-thing');
        await p.getByRole('button', { name: 'Search' }).click();
        await p.waitForLoadState();
        assert.equal(await p.locator('h1').textContent(), 'Nothing found');
        // Accounts: the pending and active roles are listed.
        await expectPage(p, '/explorer/accounts');
        assert.match(await p.locator('main').textContent(), /pharmacist/);
        await ctx.close();
    });

    await step('explorer: the admin (a consortium member) sees block bodies and receipts', async () => {
        assert.ok(admin, 'the admin is not signed in');
        const p = admin.page;
        await expectPage(p, '/explorer');
        await p.locator('a[href^="/explorer/blocks/"]').first().click();
        await p.waitForLoadState();
        const main = await p.locator('main').textContent();
        assert.doesNotMatch(main, /Redacted/);
        assert.match(main, /applied|refused/);
    });

    await step('patient: revokes drbob; the revoked doctor\'s open is refused on the page', async () => {
        const p = alice.page;
        await expectPage(p, '/patient/consent');
        await rowWith(p, ids.drbob).getByRole('button', { name: 'Revoke', exact: true }).click();
        await p.waitForLoadState();
        await expectOk(p, 'revoke');
        await refusedOpen(drbob.page, record);
    });

    await step('a form POST without its CSRF token is refused (403)', async () => {
        assert.ok(alice, 'alice is not signed in');
        const r = await alice.page.request.post(`${PORTAL}/patient/consent/grant`, {
            form: { grantee: 'drbob', categories: 'lab' },
            maxRedirects: 0,
        });
        assert.equal(r.status(), 403, `answered ${r.status()}`);
        const wrong = await alice.page.request.post(`${PORTAL}/logout`, {
            form: { csrf: 'f'.repeat(64) },
            maxRedirects: 0,
        });
        assert.equal(wrong.status(), 403, `a wrong token answered ${wrong.status()}`);
        // Still signed in: the refused logout did nothing.
        const me = await alice.page.request.get(`${PORTAL}/dashboard`, { maxRedirects: 0 });
        assert.equal(me.headers()['location'], '/patient');
    });

    await step('a request with a foreign Host header is refused (421)', async () => {
        const r = await raw(`${PORTAL}/login`, { headers: { Host: 'evil.example' } });
        assert.equal(r.status, 421, `answered ${r.status}`);
        const ok = await raw(`${PORTAL}/login`);
        assert.equal(ok.status, 200);
    });

    await step('no file under the node\'s data dir holds the uploaded plaintext marker', async () => {
        assert.ok(record, 'nothing was uploaded, so the check would prove nothing');
        const needle = Buffer.from(MARKER, 'utf8');
        let n = 0;
        for (const f of files(DATA_DIR, KEYS_DIR)) {
            n++;
            const bytes = fs.readFileSync(f);
            assert.equal(bytes.indexOf(needle), -1, `${f} holds the plaintext marker`);
        }
        assert.ok(n > 0, 'the data dir holds no files');
    });

    await browser.close();
}

/** Opens `record` as the signed-in user and expects a refusal on the page, no file. */
async function refusedOpen(page, record) {
    assert.ok(record, 'no record was uploaded');
    await expectPage(page, `/records/${record}`).catch(() => {}); // the record page itself may say "not yours"
    let downloaded = false;
    const onDownload = () => (downloaded = true);
    page.on('download', onDownload);
    const open = page.getByRole('button', { name: 'Open', exact: true });
    await open.click();
    await page.waitForLoadState();
    await page.waitForTimeout(500);
    page.off('download', onDownload);
    assert.ok(!downloaded, 'the refused open still downloaded a file');
    const refusal = page.locator('.flash.error, [role=alert], .error-text').first();
    await refusal.waitFor({ timeout: TIMEOUT });
    const text = ((await refusal.textContent()) || '').trim();
    assert.match(text, /denied|refus|not allowed|no record you may read/i, `no refusal on the page: "${text}"`);
}

try {
    await main();
} catch (e) {
    failed++;
    console.log(`FAIL the run stopped: ${e && e.stack ? e.stack : e}`);
} finally {
    fs.rmSync(scratch, { recursive: true, force: true });
}
console.log(`browser tests: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
