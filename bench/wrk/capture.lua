-- POST /v1/api/leads with a different e-mail address (and visitor id) on every request.
-- Script arguments: RUN_PREFIX CAMPAIGN_ID. wrk gives each thread its own Lua state, so the thread
-- number set in setup() keeps the addresses of different threads apart; the run prefix keeps those
-- of different runs (warm-up, each concurrency) apart.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local prefix, campaign, counter = "run", "bench", 0

-- %s placeholders: campaign id, unique id (e-mail local part), unique id (visitor id).
local template = [[{"campaign_id":"%s","source":"landing-page",]] ..
  [["contact":{"firstName":"John","lastName":"Doe","email":"john.doe.%s@acme-corp.com",]] ..
  [["phone":"+1-555-123-4567","company":"Acme Corp"},]] ..
  [["lead_details":{"service_interest":"Nextcloud Installation","urgency":"High (Same day)",]] ..
  [["message":"Need Nextcloud setup for 50 users ASAP","budget_range":"$5000-$10000",]] ..
  [["timeline":"Within 2 weeks"},]] ..
  [["tracking":{"visitor_id":"vis_%s","session_id":"sess_987654321","utm_source":"google",]] ..
  [["utm_medium":"cpc","utm_campaign":"nextcloud-q4-2025","utm_term":"nextcloud installation",]] ..
  [["utm_content":"ad-variant-a","referrer_url":"https://google.com/search?q=nextcloud+installation",]] ..
  [["landing_page_url":"https://nexlink.website/campaigns/nextcloud-installation.html",]] ..
  [["user_agent":"Mozilla/5.0 (X11; Linux x86_64)","ip_address":"192.168.1.1",]] ..
  [["time_on_page_seconds":150},]] ..
  [["form_metadata":{"form_type":"campaign_landing","form_version":"v2.1","consent_given":true,]] ..
  [["timestamp":"2025-10-03T10:30:00Z"}}]]

function init(args)
  prefix = args[1] or prefix
  campaign = args[2] or campaign
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local unique = prefix .. "." .. (tid or 1) .. "." .. counter
  return wrk.format(nil, nil, nil, string.format(template, campaign, unique, unique))
end
