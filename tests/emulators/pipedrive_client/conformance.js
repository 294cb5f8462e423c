'use strict';
// Drives the Pipedrive emulator with Pipedrive's official Node client (`pipedrive` on npm,
// generated from Pipedrive's OpenAPI files) through its v2 namespace — lists with cursors,
// get, create, update, delete, search, fields, pipelines, stages — plus the v1 webhooks and
// users APIs and the client's own OAuth refresh. Every answer is checked against the type the
// client declares for it (schema-check.js).
//
// Usage: node conformance.js BASE_URL API_TOKEN OAUTH_CLIENT_ID OAUTH_SECRET REFRESH_TOKEN
// Prints one JSON object: {calls, problems, facts}; exits 0 even when problems were found (the
// Python test reads and asserts them), non-zero only when the script itself broke.

const { v1, v2 } = require('pipedrive');
const { loadMethodTypes, check } = require('./schema-check');

const [base, apiToken, clientId, clientSecret, refreshToken] = process.argv.slice(2);

const METHODS = [
  ['v2', 'PersonsApi', 'addPerson'], ['v2', 'PersonsApi', 'getPerson'],
  ['v2', 'PersonsApi', 'getPersons'], ['v2', 'PersonsApi', 'updatePerson'],
  ['v2', 'PersonsApi', 'searchPersons'], ['v2', 'PersonsApi', 'deletePerson'],
  ['v2', 'OrganizationsApi', 'addOrganization'], ['v2', 'OrganizationsApi', 'getOrganization'],
  ['v2', 'OrganizationsApi', 'getOrganizations'], ['v2', 'OrganizationsApi', 'updateOrganization'],
  ['v2', 'OrganizationsApi', 'searchOrganization'], ['v2', 'OrganizationsApi', 'deleteOrganization'],
  ['v2', 'DealsApi', 'addDeal'], ['v2', 'DealsApi', 'getDeal'], ['v2', 'DealsApi', 'getDeals'],
  ['v2', 'DealsApi', 'updateDeal'], ['v2', 'DealsApi', 'searchDeals'],
  ['v2', 'DealsApi', 'getArchivedDeals'], ['v2', 'DealsApi', 'deleteDeal'],
  ['v2', 'PipelinesApi', 'addPipeline'], ['v2', 'PipelinesApi', 'getPipeline'],
  ['v2', 'PipelinesApi', 'getPipelines'], ['v2', 'PipelinesApi', 'updatePipeline'],
  ['v2', 'PipelinesApi', 'deletePipeline'],
  ['v2', 'StagesApi', 'addStage'], ['v2', 'StagesApi', 'getStage'], ['v2', 'StagesApi', 'getStages'],
  ['v2', 'StagesApi', 'updateStage'], ['v2', 'StagesApi', 'deleteStage'],
  ['v2', 'PersonFieldsApi', 'getPersonFields'], ['v2', 'PersonFieldsApi', 'addPersonField'],
  ['v2', 'PersonFieldsApi', 'getPersonField'], ['v2', 'PersonFieldsApi', 'updatePersonField'],
  ['v2', 'PersonFieldsApi', 'addPersonFieldOptions'], ['v2', 'PersonFieldsApi', 'deletePersonField'],
  ['v2', 'OrganizationFieldsApi', 'getOrganizationFields'],
  ['v2', 'DealFieldsApi', 'getDealFields'], ['v2', 'DealFieldsApi', 'addDealField'],
  ['v1', 'WebhooksApi', 'addWebhook'], ['v1', 'WebhooksApi', 'getWebhooks'],
  ['v1', 'WebhooksApi', 'deleteWebhook'], ['v1', 'UsersApi', 'getCurrentUser'],
];

async function main() {
  const { checker, types } = loadMethodTypes(METHODS);
  const calls = [];
  const problems = [];
  const facts = {};
  const v2config = new v2.Configuration({ apiKey: apiToken, basePath: `${base}/api/v2` });
  const v1config = new v1.Configuration({ apiKey: apiToken, basePath: `${base}/v1` });
  const api = (ns, cls, config) => new (ns === 'v1' ? v1 : v2)[cls](config);

  async function call(ns, cls, method, params, config) {
    const name = `${ns}.${cls}.${method}`;
    const client = api(ns, cls, config || (ns === 'v1' ? v1config : v2config));
    const answer = params === undefined ? await client[method]() : await client[method](params);
    const found = [];
    check(checker, answer, types.get(name), name, found);
    if (answer.success !== true) found.push(`${name}: success is ${answer.success}`);
    calls.push(name);
    problems.push(...found);
    return answer;
  }

  // Persons: create, get, update, list with cursors, ids and updated_since, search, delete.
  const person = (await call('v2', 'PersonsApi', 'addPerson', {
    AddPersonRequest: {
      name: 'Node Client', emails: [{ value: 'node@example.com', primary: true, label: 'work' }],
      phones: [{ value: '+372 5555555' }], visible_to: 3,
    },
  })).data;
  facts.person = person;
  await call('v2', 'PersonsApi', 'getPerson', { id: person.id, include_option_labels: true });
  facts.updatedPerson = (await call('v2', 'PersonsApi', 'updatePerson', {
    id: person.id, UpdatePersonRequest: { name: 'Node Updated', label_ids: [1] },
  })).data;
  let cursor;
  const seen = [];
  let pages = 0;
  do {
    const page = await call('v2', 'PersonsApi', 'getPersons', { limit: 10, cursor, sort_by: 'id' });
    seen.push(...page.data.map((p) => p.id));
    cursor = page.additional_data.next_cursor;
    pages += 1;
  } while (cursor);
  facts.personPages = pages;
  facts.personIds = seen;
  facts.idsList = (await call('v2', 'PersonsApi', 'getPersons', { ids: `${person.id},999999` }))
    .data.map((p) => p.id);
  facts.updatedSince = (await call('v2', 'PersonsApi', 'getPersons', {
    updated_since: person.update_time, sort_by: 'update_time', sort_direction: 'asc',
  })).data.map((p) => p.id);
  facts.personSearch = (await call('v2', 'PersonsApi', 'searchPersons', {
    term: 'node@example.com', fields: 'email', exact_match: true,
  })).data.items.map((i) => i.item.id);

  // Organizations.
  const org = (await call('v2', 'OrganizationsApi', 'addOrganization', {
    AddOrganizationRequest: { name: 'Node Org', website: 'https://node.example' },
  })).data;
  await call('v2', 'OrganizationsApi', 'getOrganization', { id: org.id });
  await call('v2', 'OrganizationsApi', 'updateOrganization', {
    id: org.id, UpdateOrganizationRequest: { address: { value: 'Tartu mnt 1' } },
  });
  await call('v2', 'OrganizationsApi', 'getOrganizations', { limit: 500 });
  facts.orgSearch = (await call('v2', 'OrganizationsApi', 'searchOrganization', { term: 'node org' }))
    .data.items.map((i) => i.item.id);

  // Pipelines and stages.
  const pipelines = (await call('v2', 'PipelinesApi', 'getPipelines', {})).data;
  facts.pipelineNames = pipelines.map((p) => p.name);
  const pipeline = (await call('v2', 'PipelinesApi', 'addPipeline', {
    AddPipelineRequest: { name: 'Node pipeline', is_deal_probability_enabled: true },
  })).data;
  await call('v2', 'PipelinesApi', 'getPipeline', { id: pipeline.id });
  await call('v2', 'PipelinesApi', 'updatePipeline', {
    id: pipeline.id, UpdatePipelineRequest: { name: 'Node pipeline 2' },
  });
  const stage = (await call('v2', 'StagesApi', 'addStage', {
    AddStageRequest: { name: 'Node stage', pipeline_id: pipeline.id, deal_probability: 50 },
  })).data;
  await call('v2', 'StagesApi', 'getStage', { id: stage.id });
  await call('v2', 'StagesApi', 'updateStage', {
    id: stage.id, UpdateStageRequest: { name: 'Node stage 2', days_to_rotten: 5, is_deal_rot_enabled: true },
  });
  facts.stageIds = (await call('v2', 'StagesApi', 'getStages', { pipeline_id: pipeline.id }))
    .data.map((s) => s.id);

  // Fields, with a custom field nested in custom_fields.
  let fieldPages = 0;
  cursor = undefined;
  do {
    const page = await call('v2', 'PersonFieldsApi', 'getPersonFields', { limit: 5, cursor });
    cursor = page.additional_data.next_cursor;
    fieldPages += 1;
  } while (cursor);
  facts.fieldPages = fieldPages;
  const tier = (await call('v2', 'PersonFieldsApi', 'addPersonField', {
    AddPersonFieldRequest: { field_name: 'Tier', field_type: 'enum', options: [{ label: 'Gold' }] },
  })).data;
  facts.fieldCode = tier.field_code;
  await call('v2', 'PersonFieldsApi', 'getPersonField', { field_code: tier.field_code, include_fields: 'ui_visibility' });
  await call('v2', 'PersonFieldsApi', 'updatePersonField', {
    field_code: tier.field_code, UpdatePersonFieldRequest: { field_name: 'Customer tier' },
  });
  const options = (await call('v2', 'PersonFieldsApi', 'addPersonFieldOptions', {
    field_code: tier.field_code, AddDealFieldOptionsRequestInner: [{ label: 'Silver' }],
  })).data;
  facts.options = options.map((o) => o.label);
  const withTier = (await call('v2', 'PersonsApi', 'updatePerson', {
    id: person.id, UpdatePersonRequest: { custom_fields: { [tier.field_code]: options[0].id } },
  })).data;
  facts.customValue = withTier.custom_fields[tier.field_code];
  const budget = (await call('v2', 'DealFieldsApi', 'addDealField', {
    AddDealFieldRequest: { field_name: 'Budget', field_type: 'monetary' },
  })).data;
  await call('v2', 'OrganizationFieldsApi', 'getOrganizationFields', {});
  await call('v2', 'DealFieldsApi', 'getDealFields', {});

  // Deals: create in the new stage, win, search, archive, delete.
  const deal = (await call('v2', 'DealsApi', 'addDeal', {
    AddDealRequest: {
      title: 'Node deal', value: 1200, currency: 'EUR', person_id: person.id, org_id: org.id,
      stage_id: stage.id, custom_fields: { [budget.field_code]: { value: 99.5, currency: 'EUR' } },
    },
  })).data;
  facts.deal = deal;
  await call('v2', 'DealsApi', 'getDeal', { id: deal.id });
  facts.wonDeal = (await call('v2', 'DealsApi', 'updateDeal', {
    id: deal.id, UpdateDealRequest: { status: 'won' },
  })).data;
  facts.dealSearch = (await call('v2', 'DealsApi', 'searchDeals', { term: 'node deal', person_id: person.id }))
    .data.items.map((i) => i.item.id);
  await call('v2', 'DealsApi', 'getDeals', { pipeline_id: pipeline.id, status: 'won' });
  await call('v2', 'DealsApi', 'updateDeal', { id: deal.id, UpdateDealRequest: { is_archived: true } });
  facts.archived = (await call('v2', 'DealsApi', 'getArchivedDeals', {})).data.map((d) => d.id);
  facts.afterArchive = (await call('v2', 'DealsApi', 'getDeals', {})).data.map((d) => d.id);
  await call('v2', 'DealsApi', 'deleteDeal', { id: deal.id });

  // Errors come back as the rejected body (the client's error interceptor).
  try {
    await api('v2', 'PersonsApi', v2config).getPerson({ id: 999999 });
    facts.notFound = null;
  } catch (err) {
    facts.notFound = err;
  }
  try {
    await api('v2', 'PersonsApi', v2config).addPerson({
      AddPersonRequest: { name: 'Strict', visible_to: '3' },
    });
    facts.strict = null;
  } catch (err) {
    facts.strict = err;
  }

  // v1: webhooks the connector registers and removes; who am I.
  const hook = (await call('v1', 'WebhooksApi', 'addWebhook', {
    AddWebhookRequest: {
      subscription_url: 'https://receiver.example/hook', event_action: '*', event_object: 'person',
      name: 'node', version: '2.0', http_auth_user: 'u', http_auth_password: 'p',
    },
  })).data;
  facts.webhookIds = (await call('v1', 'WebhooksApi', 'getWebhooks')).data.map((h) => h.id);
  await call('v1', 'WebhooksApi', 'deleteWebhook', { id: hook.id });
  facts.me = (await call('v1', 'UsersApi', 'getCurrentUser')).data.id;

  // Deletes, last.
  await call('v2', 'PersonFieldsApi', 'deletePersonField', { field_code: tier.field_code });
  await call('v2', 'StagesApi', 'deleteStage', { id: stage.id });
  await call('v2', 'PipelinesApi', 'deletePipeline', { id: pipeline.id });
  await call('v2', 'OrganizationsApi', 'deleteOrganization', { id: org.id });
  await call('v2', 'PersonsApi', 'deletePerson', { id: person.id });
  facts.deletedPerson = (await call('v2', 'PersonsApi', 'getPerson', { id: person.id })).data.is_deleted;

  // OAuth: the client's own refresh grant, then its api_domain as the base.
  const oauth = new v2.OAuth2Configuration({
    clientId, clientSecret, redirectUri: 'https://crmsync.example/callback', host: base,
  });
  oauth.updateToken({ refresh_token: refreshToken });
  const token = await oauth.tokenRefresh();
  facts.oauthBasePath = oauth.basePath;
  facts.oauthExpiresIn = token.expires_in;
  const bearer = new v2.Configuration({ accessToken: oauth.getAccessToken, basePath: oauth.basePath });
  facts.oauthPersons = (await call('v2', 'PersonsApi', 'getPersons', { limit: 1 }, bearer)).data.length;

  process.stdout.write(JSON.stringify({ calls, problems, facts }));
}

main().catch((err) => {
  const detail = err && err.stack ? err.stack : JSON.stringify(err);
  process.stderr.write(`conformance script failed: ${detail}\n`);
  process.exit(1);
});
