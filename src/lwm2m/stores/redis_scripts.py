"""The Lua scripts behind the cluster-wide rules and indexes of the Redis store.

Each rule is one script, so Redis runs it atomically: two nodes that receive a
Register of one name at the same moment are serialised by Redis, and exactly one
of them sees the name free. The scripts keep every fleet-wide index and counter
in the same step, so the REST API's pages and counts read Redis without a scan,
and they publish one change message per touched key on the prefix's ``changes``
channel, so that nodes drop or refresh what they cache (see :mod:`lwm2m.stores.redis`).

The scripts build their key names from the prefix (``ARGV[1]``), since the
per-node set ``reg:owned:<node>`` is not known in advance; this needs a single
Redis (or a cluster with one hash slot for the prefix), as the store does anyway.

Keys (under the prefix):

- ``registrations`` (id -> JSON, the truth), ``reg:endpoint`` (endpoint -> id),
  ``reg:client`` (id -> client key: who may re-Register the name),
  ``reg:deadline`` (ZSET id -> expires_at), ``reg:owner`` (id -> node id),
- ``reg:owned:<node>`` (set of the ids a node owns: what it loads at start),
- ``reg:names`` (ZSET of endpoint names, all scored 0: pages in name order),
- ``reg:seq`` (a counter: each Register and Update takes the next number and puts it in
  its change message, ``r <id> <node> <number>``, so a node can tell a change message
  older than its own write of the same registration),
- ``reg:address`` (``host port`` -> id), ``reg:tags`` (id -> the tag of :func:`tag`),
- ``reg:stats`` (hash of counters: ``queue``, ``secure``, ``b:<binding>``,
  ``v:<version>``, ``m:<minute of Register>``),
- ``observations`` (id -> JSON), ``obs:reg:<registration id>`` (set of observation ids),
- ``security`` (endpoint -> JSON), ``sec:psk`` (PSK identity hex -> endpoint),
  ``sec:identity`` (endpoint -> its PSK identity hex).

Change messages: ``r <id> [node]``, ``o <id> [node]``, ``s <endpoint> [node]``;
the node is the writer (absent for removals), so a node skips its own writes.
"""

from __future__ import annotations

from lwm2m.stores.records import Registration

# Shared functions, prepended to the scripts that change registrations.
_LIB = """
local function fields(tag)
  local f, start = {}, 1
  while true do
    local i = string.find(tag, '\\t', start, true)
    if not i then
      table.insert(f, string.sub(tag, start))
      return f
    end
    table.insert(f, string.sub(tag, start, i - 1))
    start = i + 1
  end
end
local function bump(stats, field, delta)
  if redis.call('HINCRBY', stats, field, delta) <= 0 then
    redis.call('HDEL', stats, field)
  end
end
local function count(P, tag, delta)
  local f = fields(tag)
  local stats = P .. 'reg:stats'
  if f[1] == '1' then bump(stats, 'queue', delta) end
  if f[2] == '1' then bump(stats, 'secure', delta) end
  bump(stats, 'm:' .. f[3], delta)
  bump(stats, 'b:' .. f[4], delta)
  bump(stats, 'v:' .. f[5], delta)
  return f[6]
end
local function untag(P, id)
  local tag = redis.call('HGET', P .. 'reg:tags', id)
  if tag then
    local address = count(P, tag, -1)
    if redis.call('HGET', P .. 'reg:address', address) == id then
      redis.call('HDEL', P .. 'reg:address', address)
    end
    redis.call('HDEL', P .. 'reg:tags', id)
  end
end
local function retag(P, id, tag)
  untag(P, id)
  local address = count(P, tag, 1)
  redis.call('HSET', P .. 'reg:tags', id, tag)
  redis.call('HSET', P .. 'reg:address', address, id)
end
local function own(P, id, node)
  local owner = redis.call('HGET', P .. 'reg:owner', id)
  if owner ~= node then
    if owner then
      redis.call('SREM', P .. 'reg:owned:' .. owner, id)
    end
    redis.call('HSET', P .. 'reg:owner', id, node)
  end
  redis.call('SADD', P .. 'reg:owned:' .. node, id)
end
local function drop(P, id, endpoint)
  untag(P, id)
  if redis.call('HGET', P .. 'reg:endpoint', endpoint) == id then
    redis.call('HDEL', P .. 'reg:endpoint', endpoint)
    redis.call('ZREM', P .. 'reg:names', endpoint)
  end
  local owner = redis.call('HGET', P .. 'reg:owner', id)
  if owner then
    redis.call('SREM', P .. 'reg:owned:' .. owner, id)
  end
  redis.call('HDEL', P .. 'registrations', id)
  redis.call('HDEL', P .. 'reg:client', id)
  redis.call('ZREM', P .. 'reg:deadline', id)
  redis.call('HDEL', P .. 'reg:owner', id)
  redis.call('PUBLISH', P .. 'changes', 'r ' .. id)
end
"""

#: ARGV: prefix, id, endpoint, json, client key, expires_at, now, grace_s, node id, tag
#: Returns {"conflict"} or {"ok", replaced JSON or nil, write sequence number}.
REGISTER = (
    _LIB
    + """
local P = ARGV[1]
local old_id = redis.call('HGET', P .. 'reg:endpoint', ARGV[3])
local old_json = false
if old_id then
  old_json = redis.call('HGET', P .. 'registrations', old_id)
  if old_json then
    local old_client = redis.call('HGET', P .. 'reg:client', old_id)
    local deadline = tonumber(redis.call('ZSCORE', P .. 'reg:deadline', old_id) or '0')
    if old_client ~= ARGV[5] and deadline + tonumber(ARGV[8]) >= tonumber(ARGV[7]) then
      return {'conflict'}
    end
  end
  drop(P, old_id, ARGV[3])
end
redis.call('HSET', P .. 'registrations', ARGV[2], ARGV[4])
redis.call('HSET', P .. 'reg:endpoint', ARGV[3], ARGV[2])
redis.call('ZADD', P .. 'reg:names', 0, ARGV[3])
redis.call('HSET', P .. 'reg:client', ARGV[2], ARGV[5])
redis.call('ZADD', P .. 'reg:deadline', ARGV[6], ARGV[2])
retag(P, ARGV[2], ARGV[10])
own(P, ARGV[2], ARGV[9])
local seq = redis.call('INCR', P .. 'reg:seq')
redis.call('PUBLISH', P .. 'changes', 'r ' .. ARGV[2] .. ' ' .. ARGV[9] .. ' ' .. seq)
return {'ok', old_json, seq}
"""
)

#: ARGV: prefix, id, json, expires_at, node id, tag
#: Returns {the JSON replaced, write sequence number}, or nil when the registration is gone.
UPDATE = (
    _LIB
    + """
local P = ARGV[1]
local old_json = redis.call('HGET', P .. 'registrations', ARGV[2])
if not old_json then
  return false
end
redis.call('HSET', P .. 'registrations', ARGV[2], ARGV[3])
redis.call('ZADD', P .. 'reg:deadline', ARGV[4], ARGV[2])
retag(P, ARGV[2], ARGV[6])
own(P, ARGV[2], ARGV[5])
local seq = redis.call('INCR', P .. 'reg:seq')
redis.call('PUBLISH', P .. 'changes', 'r ' .. ARGV[2] .. ' ' .. ARGV[5] .. ' ' .. seq)
return {old_json, seq}
"""
)

#: ARGV: prefix, id, latest deadline ("+inf": remove whatever it is)
#: Returns the JSON removed, or nil when it is gone or its deadline moved past the limit
#: (another node took an Update since this node saw it expired).
REMOVE = (
    _LIB
    + """
local P = ARGV[1]
local json = redis.call('HGET', P .. 'registrations', ARGV[2])
if not json then
  return false
end
if ARGV[3] ~= '+inf' then
  local deadline = tonumber(redis.call('ZSCORE', P .. 'reg:deadline', ARGV[2]) or '0')
  if deadline > tonumber(ARGV[3]) then
    return false
  end
end
drop(P, ARGV[2], cjson.decode(json)['endpoint'])
return json
"""
)

#: Indexes and counts registrations written before these indexes existed (an older
#: prefix); each id once, so running it again counts nothing twice.
#: ARGV: prefix, then (id, endpoint, client key, expires_at, tag) per registration.
INDEX = (
    _LIB
    + """
local P = ARGV[1]
for i = 2, #ARGV, 5 do
  local id = ARGV[i]
  if redis.call('HEXISTS', P .. 'reg:tags', id) == 0 then
    redis.call('HSETNX', P .. 'reg:endpoint', ARGV[i + 1], id)
    redis.call('ZADD', P .. 'reg:names', 0, ARGV[i + 1])
    redis.call('HSETNX', P .. 'reg:client', id, ARGV[i + 2])
    redis.call('ZADD', P .. 'reg:deadline', 'NX', ARGV[i + 3], id)
    retag(P, id, ARGV[i + 4])
  end
end
return true
"""
)

#: One page in name order. ARGV: prefix, first rank, last rank (-1: to the end), "1": descending.
#: Returns {total, JSON...}.
PAGE = """
local P = ARGV[1]
local total = redis.call('ZCARD', P .. 'reg:names')
local names
if ARGV[4] == '1' then
  names = redis.call('ZREVRANGE', P .. 'reg:names', ARGV[2], ARGV[3])
else
  names = redis.call('ZRANGE', P .. 'reg:names', ARGV[2], ARGV[3])
end
local result = {total}
if #names == 0 then
  return result
end
local ids = redis.call('HMGET', P .. 'reg:endpoint', unpack(names))
for _, id in ipairs(ids) do
  if id then
    local json = redis.call('HGET', P .. 'registrations', id)
    if json then
      table.insert(result, json)
    end
  end
end
return result
"""

#: The registrations of some endpoint names (a bounded scan's candidates).
#: ARGV: prefix, names... Returns their JSON (the missing ones left out).
BY_NAMES = """
local P = ARGV[1]
local result = {}
for i = 2, #ARGV do
  local id = redis.call('HGET', P .. 'reg:endpoint', ARGV[i])
  if id then
    local json = redis.call('HGET', P .. 'registrations', id)
    if json then
      table.insert(result, json)
    end
  end
end
return result
"""

#: A registration through one of its indexes. ARGV: prefix, index hash name, field.
BY_INDEX = """
local id = redis.call('HGET', ARGV[1] .. ARGV[2], ARGV[3])
if not id then
  return false
end
return redis.call('HGET', ARGV[1] .. 'registrations', id)
"""

#: ARGV: prefix, id, registration id, json, node id. Returns the JSON replaced or nil.
OBSERVATION_ADD = """
local P = ARGV[1]
local old = redis.call('HGET', P .. 'observations', ARGV[2])
redis.call('HSET', P .. 'observations', ARGV[2], ARGV[4])
redis.call('SADD', P .. 'obs:reg:' .. ARGV[3], ARGV[2])
redis.call('PUBLISH', P .. 'changes', 'o ' .. ARGV[2] .. ' ' .. ARGV[5])
return old
"""

#: ARGV: prefix, ids... Returns the JSON of those that existed (each removed once).
OBSERVATION_REMOVE = """
local P = ARGV[1]
local result = {}
for i = 2, #ARGV do
  local json = redis.call('HGET', P .. 'observations', ARGV[i])
  if json then
    local rid = cjson.decode(json)['registration_id']
    redis.call('HDEL', P .. 'observations', ARGV[i])
    redis.call('SREM', P .. 'obs:reg:' .. rid, ARGV[i])
    redis.call('PUBLISH', P .. 'changes', 'o ' .. ARGV[i])
    table.insert(result, json)
  end
end
return result
"""

#: ARGV: prefix, registration id, "1": remove them. Returns the JSON of its observations.
OBSERVATIONS_OF = """
local P = ARGV[1]
local set = P .. 'obs:reg:' .. ARGV[2]
local ids = redis.call('SMEMBERS', set)
local result = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', P .. 'observations', id)
  if json then
    table.insert(result, json)
    if ARGV[3] == '1' then
      redis.call('HDEL', P .. 'observations', id)
      redis.call('PUBLISH', P .. 'changes', 'o ' .. id)
    end
  end
end
if ARGV[3] == '1' then
  redis.call('DEL', set)
end
return result
"""

#: PSK identities unique across nodes. ARGV: prefix, endpoint, json, identity hex ("": none), node.
#: Returns {"conflict", endpoint holding it} or {"ok", replaced JSON or nil}.
SECURITY_PUT = """
local P = ARGV[1]
if ARGV[4] ~= '' then
  local holder = redis.call('HGET', P .. 'sec:psk', ARGV[4])
  if holder and holder ~= ARGV[2] then
    return {'conflict', holder}
  end
end
local old_identity = redis.call('HGET', P .. 'sec:identity', ARGV[2])
if old_identity and redis.call('HGET', P .. 'sec:psk', old_identity) == ARGV[2] then
  redis.call('HDEL', P .. 'sec:psk', old_identity)
end
local old = redis.call('HGET', P .. 'security', ARGV[2])
redis.call('HSET', P .. 'security', ARGV[2], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', P .. 'sec:psk', ARGV[4], ARGV[2])
  redis.call('HSET', P .. 'sec:identity', ARGV[2], ARGV[4])
else
  redis.call('HDEL', P .. 'sec:identity', ARGV[2])
end
redis.call('PUBLISH', P .. 'changes', 's ' .. ARGV[2] .. ' ' .. ARGV[5])
return {'ok', old}
"""

#: ARGV: prefix, endpoint. Returns the JSON removed or nil.
SECURITY_REMOVE = """
local P = ARGV[1]
local old = redis.call('HGET', P .. 'security', ARGV[2])
if not old then
  return false
end
local identity = redis.call('HGET', P .. 'sec:identity', ARGV[2])
if identity and redis.call('HGET', P .. 'sec:psk', identity) == ARGV[2] then
  redis.call('HDEL', P .. 'sec:psk', identity)
end
redis.call('HDEL', P .. 'sec:identity', ARGV[2])
redis.call('HDEL', P .. 'security', ARGV[2])
redis.call('PUBLISH', P .. 'changes', 's ' .. ARGV[2])
return old
"""


def client_key(reg: Registration) -> str:
    """Who may take a name over: the registrar's "same client" rule, as a string for Redis.

    The same DTLS identity (certificate, else PSK identity) or, in NoSec, the same
    IP address; it must agree with ``lwm2m.server.registrar.identity_key``, which
    the stores may not import (layers).
    """
    identity = reg.identity
    if identity is not None:
        if identity.certificate_der is not None:
            return "x509:" + identity.certificate_der.hex()
        if identity.psk_identity is not None:
            return "psk:" + identity.psk_identity.hex()
    return "ip:" + reg.address[0]


#: KEYS: one document hash. Its fields and values, then the hash is gone: one round trip,
#: and of two nodes taking the same namespace each document goes to one of them.
TAKE_ALL = """
local all = redis.call('HGETALL', KEYS[1])
if #all > 0 then
  redis.call('DEL', KEYS[1])
end
return all
"""


def address_key(host: str, port: int) -> str:
    """A registration's source address as ``reg:address`` names it."""
    return f"{host} {int(port)}"


def tag(reg: Registration) -> str:
    """What the scripts count and index of a registration, so they never parse its JSON:
    queue mode, secure, minute of Register, binding, version, address (tab-separated)."""
    binding = reg.binding.replace("\t", " ")
    version = reg.lwm2m_version.replace("\t", " ")
    return "\t".join(
        (
            "1" if reg.queue_mode else "0",
            "1" if reg.secure else "0",
            str(int(reg.registered_at // 60)),
            binding,
            version,
            address_key(*reg.address[:2]),
        )
    )
