//! Key sets fetched from clients' registered `jwks_uri`, cached.
//!
//! An assertion names its client in the unverified `iss`, so anyone can make the server
//! look for that client's keys. Fetching on every attempt would let one caller drive
//! unbounded traffic at the client's key server; instead each URL is fetched at most once
//! per time-to-live (concurrent lookups share one fetch), and a failed fetch is remembered
//! for a shorter time. Key rotation at the client is seen once the entry expires.
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

/// One URL's fetch: its result once the first lookup has fetched it.
type Slot = Arc<OnceCell<Option<Cached>>>;

/// A fetched key set and until when it may be used.
#[derive(Clone)]
struct Cached {
    keys: Arc<KeySet>,
    /// The fetch time plus the lifetime the client's `Cache-Control` allows; `None` when
    /// the response said nothing about freshness.
    fresh_until: Option<i64>,
}

pub(crate) struct JwksCache {
    entries: Mutex<ExpiringMap<String, Slot>>,
    ttl_secs: i64,
}

impl JwksCache {
    pub(crate) fn new(capacity: usize, ttl_secs: i64) -> Self {
        Self {
            entries: Mutex::new(ExpiringMap::new(capacity)),
            ttl_secs,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ExpiringMap<String, Slot>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key set published at `uri`, fetched unless a fresh copy (or a recent failure)
    /// is cached.
    pub(crate) async fn get(
        &self,
        fetcher: &Fetcher,
        uri: &str,
        now: i64,
    ) -> Result<Arc<KeySet>, OAuthError> {
        let slot = {
            let mut entries = self.lock();
            match entries.get(&uri.to_owned(), now) {
                Some(slot) => Arc::clone(slot),
                None => {
                    let slot = Slot::default();
                    entries
                        .insert(
                            uri.to_owned(),
                            Arc::clone(&slot),
                            now.saturating_add(self.ttl_secs),
                            now,
                        )
                        .map_err(|full| OAuthError::store_full(full.retry_after_secs))?;
                    slot
                }
            }
        };
        let fetched = slot.get_or_init(|| fetch(fetcher, uri, now)).await.clone();
        match fetched {
            Some(cached) => {
                if let Some(fresh_until) = cached.fresh_until {
                    self.shorten(uri, &slot, fresh_until, now);
                }
                Ok(cached.keys)
            }
            None => {
                self.remember_failure_briefly(uri, &slot, now);
                Err(OAuthError::invalid_client(
                    "the client's JWKS could not be fetched or holds no usable public key",
                ))
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
            .get_with_deadline(&key, now)
            .is_some_and(|(stored, current)| Arc::ptr_eq(stored, slot) && current > deadline);
        if !shorten {
            return;
        }
        if deadline <= now {
            entries.remove(&key);
        } else {
            // Replacing an existing key never needs room.
            let _ = entries.insert(key, Arc::clone(slot), deadline, now);
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
