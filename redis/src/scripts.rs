//! The Lua scripts that make every decision on the server, one atomic script
//! per operation.
//!
//! # Layout under the prefix `P`
//!
//! | Key | Type | Holds |
//! |-----|------|-------|
//! | `P lock: key` | hash | one lock: `v` value (JSON), `e` expiry, `t` token, `f` fence, `a` acquired at, `pid`, `s` session |
//! | `P locks` | sorted set | every key with a lock hash, all scored 0, so ordered by key bytes |
//! | `P fence` | string | the last fence handed out (`INCR`) |
//! | `P ticket` | string | the last waiter ticket handed out (`INCR`) |
//! | `P queue: key` | sorted set | the waiters of `key`: member `ticket|session|deadline`, score the ticket |
//! | `P queues` | set | every key with a queue |
//! | `P turn: key` | string | `ticket|since`: whose turn began, and when, on the server's clock (ms) |
//! | `P session: id` | string | present while the locker with that session lives (its TTL is renewed) |
//!
//! Times of locks (`now`, `e`, `a`) are nanoseconds since the Unix epoch,
//! written with 20 digits, so that Lua compares them exactly as strings
//! (Lua numbers are doubles, too coarse for nanoseconds). Wait limits and
//! turns are milliseconds on the server's clock (`TIME`).
//!
//! Every script takes the prefix as `ARGV[1]` and answers with an array
//! whose first element says how it went: `ok` followed by the answer, `!`
//! followed by a message (a key of another type, a damaged record), or
//! `nosession` when the caller's session key has gone.

use redis::Script;

/// What every script starts with: reading a lock hash and judging it.
const PRELUDE: &str = r#"
local P = ARGV[1]

local function num(n)
  return string.format('%.0f', n)
end

local function session_open(s)
  return redis.call('EXISTS', P .. 'session:' .. s) == 1
end

-- The lock hash of `key`: nil when there is none; nil and a message when
-- the key holds something that is not a lock.
local function load(key)
  local k = P .. 'lock:' .. key
  local ty = redis.call('TYPE', k).ok
  if ty == 'none' then
    return nil
  end
  if ty ~= 'hash' then
    return nil, 'the Redis key ' .. k .. ' holds a ' .. ty .. ', not a hostlock lock (a hash)'
  end
  local flat = redis.call('HGETALL', k)
  local h = {}
  for i = 1, #flat, 2 do
    h[flat[i]] = flat[i + 1]
  end
  if not h.v or not h.f or not h.a or not h.pid
      or (h.e and not string.match(h.e, '^%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d$')) then
    return nil, 'the Redis key ' .. k .. ' is a hash without the fields of a hostlock lock'
  end
  return h
end

-- 'live', 'expired' (its expiry is before now) or 'gone' (its session ended).
local function state(h, now)
  if h.e and h.e < now then
    return 'expired'
  end
  if h.s and not session_open(h.s) then
    return 'gone'
  end
  return 'live'
end

-- The reply for one stored lock: state, value, expiry, token, fence,
-- acquired at, pid, whether its session is open ('' when unbound).
local function entry(h, now)
  local alive = ''
  if h.s then
    alive = session_open(h.s) and '1' or '0'
  end
  return {state(h, now), h.v, h.e or '', h.t or '', h.f, h.a, h.pid, alive}
end

local function remove(key)
  redis.call('DEL', P .. 'lock:' .. key)
  redis.call('ZREM', P .. 'locks', key)
end

local function store(key, value, exp, token, now, pid, session)
  local fence = redis.call('INCR', P .. 'fence')
  local k = P .. 'lock:' .. key
  redis.call('DEL', k)
  redis.call('HSET', k, 'v', value, 'f', num(fence), 'a', now, 'pid', pid)
  if exp ~= '' then
    redis.call('HSET', k, 'e', exp)
  end
  if token ~= '' then
    redis.call('HSET', k, 't', token)
  end
  if session ~= '' then
    redis.call('HSET', k, 's', session)
  end
  redis.call('ZADD', P .. 'locks', 0, key)
  return fence
end

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function waiter(member)
  return string.match(member, '^(%d+)|([^|]*)|(%d*)$')
end

local function waiter_gone(session, deadline, ms)
  if deadline ~= '' and tonumber(deadline) <= ms then
    return true
  end
  return session ~= '' and not session_open(session)
end

local function queue_emptied(key)
  if redis.call('EXISTS', P .. 'queue:' .. key) == 0 then
    redis.call('SREM', P .. 'queues', key)
    redis.call('DEL', P .. 'turn:' .. key)
  end
end

-- Whether it is `ticket`'s turn to take the free `key` ('' : whether no one
-- waits). Waiters that are gone leave; so does a first waiter whose turn
-- began more than GRACE ms ago and who has not claimed it. A first waiter
-- whose turn had not begun begins it now.
local GRACE = 1000
local function turn(key, ticket)
  local qk = P .. 'queue:' .. key
  local tk = P .. 'turn:' .. key
  local ms = server_ms()
  while true do
    local first = redis.call('ZRANGE', qk, 0, 0)[1]
    if not first then
      queue_emptied(key)
      return true
    end
    local t, session, deadline = waiter(first)
    if not t then
      redis.call('ZREM', qk, first)
    elseif t == ticket then
      return true
    elseif waiter_gone(session, deadline, ms) then
      redis.call('ZREM', qk, first)
    else
      local current = redis.call('GET', tk)
      local ct, since
      if current then
        ct, since = string.match(current, '^(%d+)|(%d+)$')
      end
      if ct ~= t then
        redis.call('SET', tk, t .. '|' .. num(ms))
        return false
      end
      if ms - tonumber(since) <= GRACE then
        return false
      end
      redis.call('ZREM', qk, first)
      redis.call('DEL', tk)
    end
  end
end

local function leave(key, ticket)
  redis.call('ZREMRANGEBYSCORE', P .. 'queue:' .. key, ticket, ticket)
  local current = redis.call('GET', P .. 'turn:' .. key)
  if current and string.match(current, '^(%d+)|') == ticket then
    redis.call('DEL', P .. 'turn:' .. key)
  end
  queue_emptied(key)
end
"#;

/// ARGV: prefix, key, now.
const READ: &str = r#"
local h, err = load(ARGV[2])
if err then return {'!', err} end
if not h then return {'ok'} end
return {'ok', entry(h, ARGV[3])}
"#;

/// ARGV: prefix, key, now, value, expiry or '', token or '', pid.
const ACQUIRE: &str = r#"
local key, now, exp = ARGV[2], ARGV[3], ARGV[5]
local h, err = load(key)
if err then return {'!', err} end
if h and state(h, now) == 'live' then return {'ok', 0} end
if exp ~= '' and exp < now then
  remove(key)
  return {'ok', 1}
end
store(key, ARGV[4], exp, ARGV[6], now, ARGV[7], '')
return {'ok', 1}
"#;

/// ARGV: prefix, key, now, value, expiry or '', token, pid, session, ticket or ''.
const LEASE: &str = r#"
local key, now, ticket, session = ARGV[2], ARGV[3], ARGV[9], ARGV[8]
if not session_open(session) then return {'nosession'} end
local h, err = load(key)
if err then return {'!', err} end
if h and state(h, now) == 'live' then return {'ok'} end
if not turn(key, ticket) then return {'ok'} end
if ticket ~= '' then leave(key, ticket) end
local fence = store(key, ARGV[4], ARGV[5], ARGV[6], now, ARGV[7], session)
return {'ok', fence}
"#;

/// ARGV: prefix, key, now.
const RELEASE: &str = r#"
local key = ARGV[2]
local h, err = load(key)
if err then return {'!', err} end
if not h then return {'ok', 0} end
local live = state(h, ARGV[3]) == 'live'
remove(key)
return {'ok', live and 1 or 0}
"#;

/// ARGV: prefix, key.
const FORCE_RELEASE: &str = r#"
local key = ARGV[2]
local h, err = load(key)
if err then return {'!', err} end
if h then remove(key) end
return {'ok'}
"#;

/// ARGV: prefix, key, now, token, new expiry.
const TOUCH: &str = r#"
local key, now, token, exp = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local h, err = load(key)
if err then return {'!', err} end
if not h or h.t ~= token or state(h, now) ~= 'live' or not (exp > now) then
  return {'ok', 0}
end
redis.call('HSET', P .. 'lock:' .. key, 'e', exp)
return {'ok', 1}
"#;

/// ARGV: prefix, key, now, token.
const RELEASE_IF_OWNER: &str = r#"
local key, now, token = ARGV[2], ARGV[3], ARGV[4]
local h, err = load(key)
if err then return {'!', err} end
if not h or h.t ~= token then return {'ok', 0} end
local live = state(h, now) == 'live'
remove(key)
return {'ok', live and 1 or 0}
"#;

/// ARGV: prefix, key, now, token, new expiry or ''.
const DETACH: &str = r#"
local key, now, token, exp = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local h, err = load(key)
if err then return {'!', err} end
if not h or h.t ~= token or state(h, now) ~= 'live' then return {'ok', 0} end
if exp ~= '' and not (exp > now) then return {'ok', 0} end
local k = P .. 'lock:' .. key
if exp == '' then
  redis.call('HDEL', k, 'e')
else
  redis.call('HSET', k, 'e', exp)
end
redis.call('HDEL', k, 's')
return {'ok', 1}
"#;

/// ARGV: prefix, now.
const CLEANUP: &str = r#"
local now = ARGV[2]
local removed = 0
for _, key in ipairs(redis.call('ZRANGE', P .. 'locks', 0, -1)) do
  local h, err = load(key)
  if not h and not err then
    redis.call('ZREM', P .. 'locks', key)
  elseif h and state(h, now) ~= 'live' then
    remove(key)
    removed = removed + 1
  end
end
local ms = server_ms()
for _, key in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  local qk = P .. 'queue:' .. key
  for _, member in ipairs(redis.call('ZRANGE', qk, 0, -1)) do
    local t, session, deadline = waiter(member)
    if not t or waiter_gone(session, deadline, ms) then
      redis.call('ZREM', qk, member)
    end
  end
  queue_emptied(key)
end
return {'ok', removed}
"#;

/// ARGV: prefix, now, '1' to include entries that do not count.
const LIST: &str = r#"
local now, all = ARGV[2], ARGV[3] == '1'
local out = {'ok'}
for _, key in ipairs(redis.call('ZRANGE', P .. 'locks', 0, -1)) do
  local h, err = load(key)
  if err then
    table.insert(out, {key, '!', err})
  elseif h then
    local e = entry(h, now)
    if all or e[1] == 'live' then
      table.insert(e, 1, key)
      table.insert(out, e)
    end
  end
end
return out
"#;

/// ARGV: prefix, key, session, wait limit in ms or ''.
const ENQUEUE: &str = r#"
local key, session, limit = ARGV[2], ARGV[3], ARGV[4]
if not session_open(session) then return {'nosession'} end
local ticket = num(redis.call('INCR', P .. 'ticket'))
local deadline = ''
if limit ~= '' then deadline = num(server_ms() + tonumber(limit)) end
redis.call('ZADD', P .. 'queue:' .. key, ticket, ticket .. '|' .. session .. '|' .. deadline)
redis.call('SADD', P .. 'queues', key)
return {'ok', ticket}
"#;

/// ARGV: prefix, key, ticket.
const DEQUEUE: &str = r#"
leave(ARGV[2], ARGV[3])
return {'ok'}
"#;

/// ARGV: prefix, key.
const WAITERS: &str = r#"
return {'ok', redis.call('ZCARD', P .. 'queue:' .. ARGV[2])}
"#;

/// ARGV: prefix, key, now, ticket or ''. Answers whether the key is free for
/// the ticket, and how many waiters are queued ahead of it (without a
/// ticket: how many are queued), so that a waiter sees the queue move.
const READY: &str = r#"
local key, ticket = ARGV[2], ARGV[4]
local h, err = load(key)
if err then return {'!', err} end
local ready = 0
if not (h and state(h, ARGV[3]) == 'live') and turn(key, ticket) then
  ready = 1
end
local qk = P .. 'queue:' .. key
local ahead
if ticket == '' then
  ahead = redis.call('ZCARD', qk)
else
  ahead = redis.call('ZCOUNT', qk, '-inf', '(' .. ticket)
end
return {'ok', ready, ahead}
"#;

/// The scripts, each loaded once per server (`EVALSHA`, falling back to
/// `EVAL` when the server does not know it, after a restart say).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) read: Script,
    pub(crate) acquire: Script,
    pub(crate) lease: Script,
    pub(crate) release: Script,
    pub(crate) force_release: Script,
    pub(crate) touch: Script,
    pub(crate) release_if_owner: Script,
    pub(crate) detach: Script,
    pub(crate) cleanup: Script,
    pub(crate) list: Script,
    pub(crate) enqueue: Script,
    pub(crate) dequeue: Script,
    pub(crate) waiters: Script,
    pub(crate) ready: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            read: script(READ),
            acquire: script(ACQUIRE),
            lease: script(LEASE),
            release: script(RELEASE),
            force_release: script(FORCE_RELEASE),
            touch: script(TOUCH),
            release_if_owner: script(RELEASE_IF_OWNER),
            detach: script(DETACH),
            cleanup: script(CLEANUP),
            list: script(LIST),
            enqueue: script(ENQUEUE),
            dequeue: script(DEQUEUE),
            waiters: script(WAITERS),
            ready: script(READY),
        }
    }
}
