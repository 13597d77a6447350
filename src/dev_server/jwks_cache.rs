//! Key sets fetched from clients' registered `jwks_uri`, cached.
//!
//! An assertion names its client in the unverified `iss`, so anyone can make the server
//! look for that client's keys. Fetching on every attempt would let one caller drive
//! unbounded traffic at the client's key server; instead each URL is fetched at most once
//! per time-to-live (concurrent lookups share one fetch), and a failed fetch is remembered
//! for a shorter time.
//!
//! Key rotation: an assertion whose `kid` the cached set lacks makes the server fetch the
//! set again, so a client's new key works at once. Such a refetch happens at most once
//! per [`REFETCH_COOLDOWN_SECS`] per URL, whatever `kid`s callers send, and only when the
//! set was fetched for an earlier lookup (a lookup that waited for a fetch already has the
//! newest set). Lookups that arrive meanwhile use the set it is to replace, and those that
//! lack a key in it wait for the refetch instead of starting another one. A failed refetch
//! keeps that set (for a failed fetch's time): anyone can ask for a refetch, and it must not
//! take away or hold up the keys the client uses.
//!
//! An entry never outlives what the client's key server allows (SMART Backend Services:
//! the client's key set is not cached beyond its `Cache-Control`): its lifetime is the
//! smaller of the configured time-to-live and the response's `max-age`. `max-age=0`,
//! `no-cache` and `no-store` leave nothing cached, so the next lookup fetches again; the
//! client asked for that, and concurrent lookups still share one fetch.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use super::clients::check_public_key_set;
use super::expiring::ExpiringMap;
use super::oauth::OAuthError;
use crate::fetch::Fetcher;
use crate::jwks::KeySet;

/// How long a failed fetch is remembered.
const FAILURE_TTL_SECS: i64 = 10;

/// The least time between two fetches of one URL made for an unknown `kid`.
const REFETCH_COOLDOWN_SECS: i64 = 10;

/// One URL's fetch: its result once the first lookup has fetched it.
type Slot = Arc<OnceCell<Option<Cached>>>;

/// `deadline`, or the end of the freshness the key server gave `slot`'s set when that
/// comes first: a set kept after a failed refetch, or served while one runs, lives no
/// longer than the client's `Cache-Control` allows either.
fn within_freshness(slot: &Slot, deadline: i64) -> i64 {
    match slot.get() {
        Some(Some(Cached {
            fresh_until: Some(fresh_until),
            ..
        })) => deadline.min(*fresh_until),
        _ => deadline,
    }
}

/// A fetched key set and until when it may be used.
#[derive(Clone)]
struct Cached {
    keys: Arc<KeySet>,
    /// The fetch time plus the lifetime the client's `Cache-Control` allows; `None` when
    /// the response said nothing about freshness.
    fresh_until: Option<i64>,
}

struct Entries {
    /// Each URL's current fetch.
    slots: ExpiringMap<String, Slot>,
    /// The URLs fetched again for an unknown `kid` within the last
    /// [`REFETCH_COOLDOWN_SECS`].
    refetched: ExpiringMap<String, ()>,
    /// The slot a refetch replaced, served while the refetch is in flight (and put back
    /// if it fails), for [`FAILURE_TTL_SECS`].
    previous: ExpiringMap<String, Slot>,
}

pub(crate) struct JwksCache {
    entries: Mutex<Entries>,
    ttl_secs: i64,
}

impl JwksCache {
    pub(crate) fn new(capacity: usize, ttl_secs: i64) -> Self {
        Self {
            entries: Mutex::new(Entries {
                slots: ExpiringMap::new(capacity),
                refetched: ExpiringMap::new(capacity),
                previous: ExpiringMap::new(capacity),
            }),
            ttl_secs,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key set published at `uri`, fetched unless a fresh copy (or a recent failure)
    /// is cached. When `lacks_key` says a set fetched for an earlier lookup lacks the key
    /// the caller needs, the set is fetched again (see the module docs for the limits).
    pub(crate) async fn get(
        &self,
        fetcher: &Fetcher,
        uri: &str,
        now: i64,
        lacks_key: impl Fn(&KeySet) -> bool,
    ) -> Result<Arc<KeySet>, OAuthError> {
        let (slot, fetched_before) = self.current_slot(uri, now)?;
        let keys = self.resolve(fetcher, uri, &slot, now).await?;
        if !fetched_before || !lacks_key(&keys) {
            return Ok(keys);
        }
        match self.refetch_slot(uri, &slot, now)? {
            Some(fresh) => match self.resolve(fetcher, uri, &fresh, now).await {
                Ok(keys) => Ok(keys),
                // Anyone can ask for a refetch (an assertion with a made-up `kid`): one
                // that fails must not take away the keys the client signs with. They are
                // kept for a failure's time, then fetched as usual.
                Err(_) => {
                    self.restore(uri, &fresh, slot, now);
                    Ok(keys)
                }
            },
            None => Ok(keys),
        }
    }

    /// Puts `previous` back as `uri`'s entry for [`FAILURE_TTL_SECS`] when the entry is
    /// still the failed refetch `failed`.
    fn restore(&self, uri: &str, failed: &Slot, previous: Slot, now: i64) {
        let mut entries = self.lock();
        let key = uri.to_owned();
        if entries
            .slots
            .get(&key, now)
            .is_none_or(|current| Arc::ptr_eq(current, failed))
        {
            // Replacing `uri`'s entry needs no room; if it expired meanwhile and the map
            // is full, the next lookup fetches.
            let deadline = within_freshness(&previous, now.saturating_add(FAILURE_TTL_SECS));
            let _ = entries.slots.insert(key, previous, deadline, now);
        }
    }

    /// `uri`'s live slot (a new, empty one when there is none), and whether it was already
    /// filled by an earlier lookup.
    fn current_slot(&self, uri: &str, now: i64) -> Result<(Slot, bool), OAuthError> {
        let mut entries = self.lock();
        let slot = match entries.slots.get(&uri.to_owned(), now) {
            Some(slot) => Arc::clone(slot),
            None => {
                let slot = Slot::default();
                entries
                    .slots
                    .insert(
                        uri.to_owned(),
                        Arc::clone(&slot),
                        now.saturating_add(self.ttl_secs),
                        now,
                    )
                    .map_err(|full| OAuthError::store_full(full.retry_after_secs))?;
                slot
            }
        };
        if !slot.initialized()
            && let Some(previous) = entries.previous.get(&uri.to_owned(), now)
            && previous.initialized()
        {
            // A refetch is in flight: the keys it is to replace serve meanwhile, so that a
            // refetch anyone can start (a made-up `kid`) never holds up the client.
            return Ok((Arc::clone(previous), true));
        }
        let filled = slot.initialized();
        Ok((slot, filled))
    }

    /// The slot to read after `used` lacked a key: one another lookup put in its place
    /// (its fetch is shared, not repeated), else a new one replacing it when `uri` was not
    /// refetched within the cooldown, else `None`.
    fn refetch_slot(&self, uri: &str, used: &Slot, now: i64) -> Result<Option<Slot>, OAuthError> {
        let mut entries = self.lock();
        let key = uri.to_owned();
        if let Some(current) = entries.slots.get(&key, now)
            && !Arc::ptr_eq(current, used)
        {
            return Ok(Some(Arc::clone(current)));
        }
        // A full cooldown record counts as a recent refetch: never more fetches.
        let cooldown_over = entries
            .refetched
            .insert_new(
                key.clone(),
                (),
                now.saturating_add(REFETCH_COOLDOWN_SECS),
                now,
            )
            .unwrap_or(false);
        if !cooldown_over {
            return Ok(None);
        }
        let slot = Slot::default();
        // Without room the refetch still runs; lookups meanwhile then wait for it.
        let _ = entries.previous.insert(
            key.clone(),
            Arc::clone(used),
            within_freshness(used, now.saturating_add(FAILURE_TTL_SECS)),
            now,
        );
        // Replacing `uri`'s entry never needs room; a new entry (the old one expired
        // meanwhile) may not find any.
        entries
            .slots
            .insert(
                key,
                Arc::clone(&slot),
                now.saturating_add(self.ttl_secs),
                now,
            )
            .map_err(|full| OAuthError::store_full(full.retry_after_secs))?;
        tracing::debug!(
            uri,
            "fetching a client's key set again: an assertion names a kid it lacks"
        );
        Ok(Some(slot))
    }

    /// The key set of `slot`, fetched by this lookup unless another already did; the
    /// entry's life is then cut to what the key server's `Cache-Control` allows, or to
    /// [`FAILURE_TTL_SECS`] after a failure.
    async fn resolve(
        &self,
        fetcher: &Fetcher,
        uri: &str,
        slot: &Slot,
        now: i64,
    ) -> Result<Arc<KeySet>, OAuthError> {
        let fetched = slot.get_or_init(|| fetch(fetcher, uri, now)).await.clone();
        match fetched {
            Some(cached) => {
                if let Some(fresh_until) = cached.fresh_until {
                    self.shorten(uri, slot, fresh_until, now);
                }
                Ok(cached.keys)
            }
            None => {
                self.remember_failure_briefly(uri, slot, now);
                // The answer of an unknown client: the caller is not authenticated yet,
                // and a different one would tell that this id exists. The cause is in the
                // log (and in the fetch's own debug event).
                tracing::debug!(
                    jwks_uri = uri,
                    "a client's JWKS could not be fetched or holds no usable public key"
                );
                Err(super::assertion::no_registered_key())
            }
        }
    }

    /// Shortens the life of a failed entry, so the client's key server is asked again
    /// soon (but not on every attempt).
    fn remember_failure_briefly(&self, uri: &str, slot: &Slot, now: i64) {
        self.shorten(uri, slot, now.saturating_add(FAILURE_TTL_SECS), now);
    }

    /// Brings the deadline of `uri`'s entry forward to `deadline` when that entry is
    /// still `slot` and would live longer; a deadline not after `now` drops the entry.
    fn shorten(&self, uri: &str, slot: &Slot, deadline: i64, now: i64) {
        let mut entries = self.lock();
        let key = uri.to_owned();
        let shorten = entries
            .slots
            .get_with_deadline(&key, now)
            .is_some_and(|(stored, current)| Arc::ptr_eq(stored, slot) && current > deadline);
        if !shorten {
            return;
        }
        if deadline <= now {
            entries.slots.remove(&key);
        } else {
            // Replacing an existing key never needs room.
            let _ = entries.slots.insert(key, Arc::clone(slot), deadline, now);
        }
    }
}

/// Fetches and checks the key set at `uri`, at `now`.
async fn fetch(fetcher: &Fetcher, uri: &str, now: i64) -> Option<Cached> {
    let url = reqwest::Url::parse(uri).ok()?;
    let fetched = fetcher
        .get(&url, "application/jwk-set+json, application/json", true)
        .await
        .ok()?;
    let document = crate::json::object_with_unique_members(&fetched.body).ok()?;
    let document = serde_json::Value::Object(document);
    check_public_key_set(&document).ok()?;
    let keys = Arc::new(KeySet::parse(&fetched.body).ok()?);
    Some(Cached {
        keys,
        fresh_until: fetched.max_age.map(|max_age| {
            now.saturating_add(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX))
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set kept after a failed refetch (or served while one runs) ends with its
    /// freshness, when that comes before the failure's time.
    #[test]
    fn kept_sets_end_with_their_freshness() {
        let empty = Slot::default();
        assert_eq!(within_freshness(&empty, 50), 50, "nothing fetched yet");
        let filled = |fresh_until| {
            let slot = Slot::default();
            let cached = Cached {
                keys: Arc::new(KeySet::default()),
                fresh_until,
            };
            assert!(slot.set(Some(cached)).is_ok());
            slot
        };
        assert_eq!(within_freshness(&filled(Some(40)), 50), 40);
        assert_eq!(within_freshness(&filled(Some(60)), 50), 50);
        assert_eq!(within_freshness(&filled(None), 50), 50, "no max-age");
        let failed = Slot::default();
        assert!(failed.set(None).is_ok());
        assert_eq!(within_freshness(&failed, 50), 50, "a failed fetch");
    }
}
