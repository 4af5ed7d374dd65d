//! The Lua scripts that make each shared write one atomic step in Redis. A key of ours holding
//! something else (another program's value, a hand edit) is replaced rather than left to fail
//! every write after it: what Redis holds is input like any other.

use std::sync::LazyLock;

use redis::Script;

/// A script on `KEYS[1]`, which must hold a `kind` (or nothing): anything else there is dropped
/// first.
fn of_type(kind: &str, body: &str) -> Script {
    Script::new(&format!(
        "local t = redis.call('TYPE', KEYS[1]).ok\n\
         if t ~= '{kind}' and t ~= 'none' then redis.call('DEL', KEYS[1]) end\n{body}"
    ))
}

/// KEYS[1] registration hash; ARGV: data, updated (ms), ttl (ms), channel, event. Writes only a
/// newer registration (1), else nothing (0).
pub(crate) static WRITE_REGISTRATION: LazyLock<Script> = LazyLock::new(|| {
    of_type(
        "hash",
        r"
local cur = tonumber(redis.call('HGET', KEYS[1], 'updated') or '0') or 0
if cur >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'updated', ARGV[2], 'data', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1",
    )
});

/// KEYS[1] ban key; ARGV: until (ms), ttl (ms), channel, event. Only lengthens a ban.
pub(crate) static WRITE_BAN: LazyLock<Script> = LazyLock::new(|| {
    of_type(
        "string",
        r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1",
    )
});

/// KEYS[1] nonce set; ARGV: nc, ttl (ms). 1: first use of this count anywhere; 0: a replay.
pub(crate) static CLAIM_NONCE: LazyLock<Script> = LazyLock::new(|| {
    of_type(
        "set",
        r"
local fresh = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return fresh",
    )
});

/// KEYS[1] the trunk's calls; ARGV: member, now (ms), lease end (ms), max (0: none). Drops
/// lapsed leases, then counts the call in (1) unless the trunk is full (0).
pub(crate) static ACQUIRE_CALL: LazyLock<Script> = LazyLock::new(|| {
    of_type(
        "zset",
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local max = tonumber(ARGV[4])
if max > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= max then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1",
    )
});
