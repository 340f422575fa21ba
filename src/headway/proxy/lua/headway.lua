-- headway's routing inside the proxy: where each app's requests go, changed without a reload.
--
-- headway posts the whole routing state (one line per app and environment) to the control endpoint; it is
-- kept in a shared dictionary that every worker reads, and that survives a reload. At start-up the state is
-- read from the file headway writes beside the config, so a restarted proxy serves what it served before.
--
-- State format, one record per line, fields separated by single spaces, text fields URI-escaped:
--   v <version>
--   r <key> <release> <deploy> <peers|-> <canary release|-> <canary deploy> <canary peers|-> <weight> <sticky> <maint>
--     <allowed|-> <certificate version|->
-- where <allowed> lists the networks a maintenance window lets through, as hex bytes/prefix bits
-- (0a090909/32,20010db8/32): compared with the client's binary address, IPv4 and IPv6 alike.

local M = {}
local bit = require("bit")

local dict = ngx.shared.headway
local cached_version, cached_routes = nil, {}
local next_index = {}
-- a peer that failed to connect (or to answer in time) is passed over for DOWN_SECONDS while others remain;
-- after that one request at a time tries it again until one gets an answer: a machine that died costs a slow
-- (retried) request every few seconds, not one per round of the balancer
local DOWN_SECONDS = 5
local SUSPECT_SECONDS = 600
local PROBE_SECONDS = 30

local function passable(addr)
    if dict:get("down:" .. addr) then
        return false
    end
    if dict:get("suspect:" .. addr) then
        return dict:add("probe:" .. addr, true, PROBE_SECONDS) == true
    end
    return true
end

-- peers as role -> list; a peer without a role ("ip:port") serves every path of its route
local function peers_of(field)
    local out = {}
    if field == nil or field == "-" then
        return out
    end
    for item in field:gmatch("[^,]+") do
        local role, addr = item:match("^([%w-]+)@(.+)$")
        if not role then
            role, addr = "", item
        end
        local host, port = addr:match("^(.+):(%d+)$")
        if host then
            local list = out[role]
            if list == nil then
                list = {}
                out[role] = list
            end
            list[#list + 1] = { addr = addr, host = host, port = tonumber(port) }
        end
    end
    return out
end

local empty = {}

local function peers_for(by_role, role)
    return by_role[role] or by_role[""] or empty
end

local function has_peers(by_role)
    return next(by_role) ~= nil
end

local function networks_of(field)
    local out = {}
    if field == nil or field == "-" then
        return out
    end
    for hex, bits in field:gmatch("(%x+)/(%d+)") do
        local bytes = {}
        for pair in hex:gmatch("%x%x") do
            bytes[#bytes + 1] = tonumber(pair, 16)
        end
        out[#out + 1] = { bytes = bytes, bits = tonumber(bits) }
    end
    return out
end

local function allowed(networks)
    local addr = ngx.var.binary_remote_addr
    if addr == nil then
        return false
    end
    for _, net in ipairs(networks) do
        if #net.bytes == #addr then
            local ok, left, i = true, net.bits, 1
            while left > 0 and ok do
                local mask = left >= 8 and 0xff or bit.band(0xff, bit.lshift(0xff, 8 - left))
                if bit.band(addr:byte(i), mask) ~= bit.band(net.bytes[i], mask) then
                    ok = false
                end
                left, i = left - 8, i + 1
            end
            if ok then
                return true
            end
        end
    end
    return false
end

local function unescape(field)
    if field == nil or field == "-" then
        return ""
    end
    return ngx.unescape_uri(field)
end

-- returns routes, version; version is nil when the text is not a state
function M.parse(text)
    local routes, version = {}, nil
    for line in text:gmatch("[^\n]+") do
        local f = {}
        for word in line:gmatch("%S+") do
            f[#f + 1] = word
        end
        if f[1] == "v" and f[2] then
            version = f[2]
        elseif f[1] == "r" and #f >= 11 then
            routes[f[2]] = {
                release = unescape(f[3]),
                deploy = f[4],
                peers = peers_of(f[5]),
                canary_release = unescape(f[6]),
                canary_deploy = f[7],
                canary_peers = peers_of(f[8]),
                weight = tonumber(f[9]) or 0,
                sticky = f[10],
                maintenance = f[11] == "1",
                allow = networks_of(f[12]),
                cert = f[13] ~= "-" and f[13] or nil,
            }
        elseif f[1] ~= nil then
            return {}, nil
        end
    end
    return routes, version
end

local function routes()
    local version = dict:get("version")
    if version ~= cached_version then
        local parsed, parsed_version = M.parse(dict:get("state") or "")
        cached_routes, cached_version = parsed, parsed_version
    end
    return cached_routes
end

-- init_by_lua (master process): the state headway last wrote, unless the dictionary already holds a newer
-- one (a reload keeps the dictionary)
function M.load_file(path)
    local fh = io.open(path, "r")
    if not fh then
        return
    end
    local text = fh:read("*a")
    fh:close()
    local _, version = M.parse(text)
    if version and not dict:get("version") then
        dict:set("state", text)
        dict:set("version", version)
    end
end

-- access phase of an app's locations: maintenance, canary split, stopped environments; `role` names the peers
-- that serve this location ("" where the route has one role)
function M.access(key, exempt, role)
    role = role or ""
    local r = routes()[key]
    if r == nil then
        ngx.status = 503
        ngx.header["Content-Type"] = "text/plain"
        ngx.say("no release is routed here yet")
        return ngx.exit(ngx.HTTP_SERVICE_UNAVAILABLE)
    end
    if r.maintenance and not exempt and not allowed(r.allow) then
        return ngx.exit(ngx.HTTP_SERVICE_UNAVAILABLE) -- error_page 503 shows the maintenance page
    end
    local peers, release = r.peers, r.release
    if r.weight > 0 and has_peers(r.canary_peers) then
        local id
        local cookie = ngx.var.cookie_headway_id
        if r.sticky == "cookie" then
            id = cookie or ngx.var.request_id
            if not cookie then
                ngx.ctx.set_cookie = "headway_id=" .. id .. "; Path=/; HttpOnly; SameSite=Lax"
            end
        elseif r.sticky == "ip" then
            id = ngx.var.remote_addr
        else
            id = ngx.var.request_id
        end
        if ngx.crc32_long(id) % 100 < r.weight then
            peers, release = r.canary_peers, r.canary_release
        end
    end
    ngx.var.headway_release = release
    peers = peers_for(peers, role)
    if #peers == 0 then
        ngx.status = 503
        ngx.header["Content-Type"] = "text/plain"
        ngx.say(key:gsub("%-%-", "/", 1) .. " is stopped")
        return ngx.exit(ngx.HTTP_SERVICE_UNAVAILABLE)
    end
    ngx.ctx.key = key .. "@" .. role
    ngx.ctx.peers = peers
end

-- balancer phase: round robin over the chosen peers (passing over those down); a retry moves to the next one
function M.balance()
    local balancer = require("ngx.balancer")
    local ctx = ngx.ctx
    local peers = ctx.peers
    if peers == nil or #peers == 0 then
        return ngx.exit(ngx.HTTP_BAD_GATEWAY)
    end
    local n = #peers
    if ctx.index == nil then
        local i = (next_index[ctx.key] or 0) % n + 1
        next_index[ctx.key] = i
        for _ = 1, n do
            if passable(peers[i].addr) then
                break
            end
            i = i % n + 1
        end
        ctx.index = i
        if n > 1 then
            balancer.set_more_tries(math.min(n, 3) - 1)
        end
    else
        dict:set("down:" .. ctx.peer, true, DOWN_SECONDS) -- the try before this one failed
        dict:set("suspect:" .. ctx.peer, true, SUSPECT_SECONDS)
        dict:delete("probe:" .. ctx.peer)
        ctx.index = ctx.index % n + 1
    end
    local peer = peers[ctx.index]
    if ctx.peer then
        dict:incr("a:" .. ctx.peer, -1, 0)
    end
    dict:incr("a:" .. peer.addr, 1, 0)
    ctx.peer = peer.addr
    local ok, err = balancer.set_current_peer(peer.host, peer.port)
    if not ok then
        ngx.log(ngx.ERR, "headway: cannot route to ", peer.addr, ": ", err)
        return ngx.exit(ngx.HTTP_BAD_GATEWAY)
    end
end

-- header filter: the sticky-canary cookie, beside the app's own cookies
function M.header()
    local cookie = ngx.ctx.set_cookie
    if cookie then
        local existing = ngx.header["Set-Cookie"]
        if existing == nil then
            ngx.header["Set-Cookie"] = cookie
        elseif type(existing) == "table" then
            existing[#existing + 1] = cookie
            ngx.header["Set-Cookie"] = existing
        else
            ngx.header["Set-Cookie"] = { existing, cookie }
        end
    end
end

-- log phase: the request is over, its peer has one request fewer in flight
function M.log()
    local peer = ngx.ctx.peer
    if peer then
        dict:incr("a:" .. peer, -1, 0)
        local status = (ngx.var.upstream_status or ""):match("(%d+)%s*$")
        if status and status ~= "502" and status ~= "504" then -- the last peer tried answered: it is up
            dict:delete("suspect:" .. peer)
            dict:delete("probe:" .. peer)
        end
    end
end

-- TLS handshake: the route's certificate as headway last gave it, so a renewed certificate serves from the next
-- handshake on without a reload. The PEM text lives in the shared dictionary (the workers cannot read the 0600
-- key file; the master loads the files at start-up, headway posts renewals). Parsed once per version and worker;
-- on any problem the certificate nginx loaded with its config serves instead.
local certificates = {}

local function read(path)
    local fh = io.open(path, "r")
    if not fh then
        return nil
    end
    local text = fh:read("*a")
    fh:close()
    return text
end

local function store_certificate(key, version, cert_pem, key_pem)
    dict:set("cc:" .. key, cert_pem)
    dict:set("ck:" .. key, key_pem)
    dict:set("cv:" .. key, version) -- last: a worker that sees the version finds both parts
end

-- init_by_lua (master, which can read the key files): every routed certificate into the dictionary
function M.load_certificates(root)
    local parsed = M.parse(dict:get("state") or "")
    for key, r in pairs(parsed) do
        if r.cert and dict:get("cv:" .. key) ~= r.cert then
            local cert_pem = read(root .. "/certs/" .. key .. "/fullchain.pem")
            local key_pem = read(root .. "/certs/" .. key .. "/privkey.pem")
            if cert_pem and key_pem then
                store_certificate(key, r.cert, cert_pem, key_pem)
            end
        end
    end
end

function M.certificate(key)
    local version = dict:get("cv:" .. key)
    if version == nil then
        return
    end
    local ssl = require("ngx.ssl")
    local c = certificates[key]
    if c == nil or c.version ~= version then
        local cert, err = ssl.parse_pem_cert(dict:get("cc:" .. key) or "")
        local pkey, err2 = ssl.parse_pem_priv_key(dict:get("ck:" .. key) or "")
        if not cert or not pkey then
            ngx.log(ngx.ERR, "headway: certificate of ", key, " not usable: ", err or err2)
            return
        end
        c = { version = version, cert = cert, key = pkey }
        certificates[key] = c
    end
    local ok, err = ssl.clear_certs()
    if ok then
        ok, err = ssl.set_cert(c.cert)
    end
    if ok then
        ok, err = ssl.set_priv_key(c.key)
    end
    if not ok then
        ngx.log(ngx.ERR, "headway: cannot set the certificate of ", key, ": ", err)
    end
end

-- control endpoint: POST /certificate?key=K&version=V with the chain, a line "--", and the key
function M.put_certificate()
    ngx.req.read_body()
    local body = ngx.req.get_body_data() or ""
    local key, version = ngx.var.arg_key, ngx.var.arg_version
    local cert_pem, key_pem = body:match("^(.-)\n%-%-\n(.*)$")
    if not key or not version or not cert_pem or not key_pem then
        ngx.status = 400
        ngx.say("not a certificate")
        return ngx.exit(400)
    end
    store_certificate(key, version, cert_pem, key_pem)
    ngx.say(version)
end

function M.certificate_version(key)
    return dict:get("cv:" .. key)
end

-- control endpoint: GET shows the state served now; POST replaces it
function M.control()
    if ngx.req.get_method() == "POST" then
        ngx.req.read_body()
        local text = ngx.req.get_body_data()
        if text == nil then
            local path = ngx.req.get_body_file()
            if path then
                local fh = io.open(path, "r")
                if fh then
                    text = fh:read("*a")
                    fh:close()
                end
            end
        end
        local _, version = M.parse(text or "")
        if version == nil then
            ngx.status = 400
            ngx.say("not a routing state")
            return ngx.exit(400)
        end
        dict:set("state", text)
        dict:set("version", version)
        ngx.say(version)
        return
    end
    ngx.header["Content-Type"] = "text/plain"
    ngx.print(dict:get("state") or "")
end

-- control endpoint: requests in flight to the given peers (?peers=ip:port,ip:port)
function M.active()
    local total = 0
    for addr in (ngx.var.arg_peers or ""):gmatch("[^,]+") do
        total = total + math.max(0, dict:get("a:" .. addr) or 0)
    end
    ngx.header["Content-Type"] = "text/plain"
    ngx.say(total)
end

return M
