"""The Lua scripts behind the cluster-wide registration rules of the Redis store.

Each rule is one script, so Redis runs it atomically: two nodes that receive a
Register of one name at the same moment are serialised by Redis, and exactly one
of them sees the name free. The scripts also publish one change message per
touched key on the prefix's ``changes`` channel, so that every node's view
learns of the change (see :mod:`lwm2m.stores.redis`).

Keys (under the store's prefix): ``registrations`` (id -> JSON), ``reg:endpoint``
(endpoint -> id), ``reg:client`` (id -> client key: who may re-Register the
name), ``reg:deadline`` (ZSET id -> expires_at), ``reg:owner`` (id -> node id).
"""

from __future__ import annotations

from lwm2m.stores.records import Registration

#: KEYS: registrations, reg:endpoint, reg:client, reg:deadline, reg:owner, changes
#: ARGV: id, endpoint, json, client key, expires_at, now, grace_s, node id
#: Returns {"conflict"} or {"ok", replaced JSON or nil}.
REGISTER = """
local old_id = redis.call('HGET', KEYS[2], ARGV[2])
local old_json = false
if old_id then
  old_json = redis.call('HGET', KEYS[1], old_id)
  if old_json then
    local old_client = redis.call('HGET', KEYS[3], old_id)
    local deadline = tonumber(redis.call('ZSCORE', KEYS[4], old_id) or '0')
    if old_client ~= ARGV[4] and deadline + tonumber(ARGV[7]) >= tonumber(ARGV[6]) then
      return {'conflict'}
    end
  end
  redis.call('HDEL', KEYS[1], old_id)
  redis.call('HDEL', KEYS[3], old_id)
  redis.call('ZREM', KEYS[4], old_id)
  redis.call('HDEL', KEYS[5], old_id)
  redis.call('PUBLISH', KEYS[6], 'r ' .. old_id)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[8])
redis.call('PUBLISH', KEYS[6], 'r ' .. ARGV[1])
return {'ok', old_json}
"""

#: KEYS: registrations, reg:deadline, reg:owner, changes
#: ARGV: id, json, expires_at, node id
#: Returns the JSON replaced, or nil when the registration is gone.
UPDATE = """
local old_json = redis.call('HGET', KEYS[1], ARGV[1])
if not old_json then
  return false
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('PUBLISH', KEYS[4], 'r ' .. ARGV[1])
return old_json
"""

#: KEYS: registrations, reg:endpoint, reg:client, reg:deadline, reg:owner, changes
#: ARGV: id, latest deadline ("+inf": remove whatever it is)
#: Returns the JSON removed, or nil when it is gone or its deadline moved past the limit
#: (another node took an Update since this node saw it expired).
REMOVE = """
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then
  return false
end
if ARGV[2] ~= '+inf' then
  local deadline = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[1]) or '0')
  if deadline > tonumber(ARGV[2]) then
    return false
  end
end
local endpoint = cjson.decode(json)['endpoint']
if redis.call('HGET', KEYS[2], endpoint) == ARGV[1] then
  redis.call('HDEL', KEYS[2], endpoint)
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('PUBLISH', KEYS[6], 'r ' .. ARGV[1])
return json
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
