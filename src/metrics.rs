//! Counters and gauges through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`), so any exporter works: Prometheus, StatsD, OpenTelemetry.
//!
//! The crate only records. Install a recorder (an exporter) in your application, before
//! the first request: events recorded while no recorder is installed are dropped, as the
//! facade documents. Descriptions (Prometheus `# HELP`) are registered each time a layer or
//! verifier is built.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `smart_auth_requests_accepted_total` | counter | `source` = `cache` \| `verified` | Requests the layer passed on with verified claims: answered from the verified-token cache, or after a full verification. |
//! | `smart_auth_requests_refused_total` | counter | `kind` = [`ErrorKind::metric_label`](crate::ErrorKind::metric_label) | Requests the layer refused, by reason (`missing_token`, `expired`, `invalid_signature`, `insufficient_scope`, `keys_unavailable`, ...). |
//! | `smart_auth_requests_unauthenticated_total` | counter | `reason` = `public_path` \| `no_credentials` | Requests passed on without verification: a public path, or no credentials where the layer makes them optional. |
//! | `smart_auth_jwks_fetches_total` | counter | `outcome` = `ok` \| `error` | Fetches of an issuer's key set (with discovery when needed), by result. |
//! | `smart_auth_jwks_refreshes_total` | counter | `trigger` = `ttl` \| `unknown_kid` | Fetches started to replace a key set in use: it passed its TTL, or a token named a `kid` it lacks (or one whose signature failed with the key of a known `kid`: the issuer may have replaced that key). Each is also counted in `smart_auth_jwks_fetches_total`. |
//! | `smart_auth_jwks_stale_keys_used_total` | counter | | Verifications that used a key set past its TTL because refreshing it failed (within `max_stale`). |
//! | `smart_auth_jwks_unknown_kid_refetches_skipped_total` | counter | | Tokens with an unknown `kid` refused without a refetch, because a cooldown was running. |
//! | `smart_auth_token_cache_hits_total` | counter | | Verified-token cache lookups answered from the cache. |
//! | `smart_auth_token_cache_misses_total` | counter | | Verified-token cache lookups that found no usable entry (the token is then verified afresh). |
//! | `smart_auth_token_cache_entries` | gauge | | Tokens held by all verified-token caches of the process. |
//! | `smart_auth_introspection_calls_total` | counter | `outcome` = `active` \| `inactive` \| `error` | Calls to the token introspection endpoint, by answer. `inactive` is every answer that refuses the token: `"active": false`, a status only the token can cause (400, 409, 410, 413, 422), an answer naming a member twice, and an active answer the crate refuses (another issuer or audience, not an access token). `error` is a failed call (the endpoint down, throttling, a broken answer) or a failed discovery of the endpoint. |
//! | `smart_auth_introspection_cache_hits_total` | counter | | Introspections answered from the introspection cache, without a call. |
//!
//! Every label value is one of a fixed set written in this crate: never a token, a client
//! id, a path or a URL, so the number of series stays bounded. There is no `issuer` label:
//! per-issuer key state is in [`TokenVerifier::key_cache_status`](crate::TokenVerifier::key_cache_status).
//! The constants of this module are the names, for dashboards and tests.
//!
//! **Cost.** Without the feature, every recording call is an empty inline function. With
//! it, a recording call allocates nothing and formats nothing: the key (name and labels)
//! of every series is a `static` built at compile time, and each event asks the installed
//! recorder for that key's handle and adds one. Handles are not cached by this crate, so a
//! recorder installed after the layer was built, or a thread-local recorder in a test, sees
//! every event. BENCHMARKS.md ("Metrics cost") has the measured cost per request.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use metrics_exporter_prometheus::PrometheusBuilder;
//!
//! // Before the layer serves its first request.
//! let prometheus = PrometheusBuilder::new().install_recorder()?;
//! let auth = smart_auth::SmartAuthLayer::builder("https://auth.example.org")
//!     .audience("https://api.example.org/fhir")
//!     .build()?;
//! // ... serve requests through `auth`, then:
//! let text = prometheus.render();
//! assert!(text.contains(smart_auth::metrics::REQUESTS_ACCEPTED));
//! # drop(auth); Ok(()) }
//! ```
//!
//! See `examples/metrics.rs` for a server with a `/metrics` route.
//!
//! The name constants are for reading the exported series, as in this test, which counts
//! one refused request with a recorder of its own thread (the constants share this
//! example):
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use smart_auth::SmartAuthLayer;
//! use smart_auth::metrics::{REQUESTS_ACCEPTED, REQUESTS_REFUSED};
//! use tower::ServiceExt as _;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let recorder = PrometheusBuilder::new().build_recorder();
//! let prometheus = recorder.handle();
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! metrics::with_local_recorder(&recorder, || {
//!     runtime.block_on(async {
//!         let auth = SmartAuthLayer::builder("https://auth.example.org")
//!             .audience("https://api.example.org/fhir")
//!             .build()?;
//!         let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(auth);
//!         // No token: refused before any key is needed.
//!         let request = http::Request::get("/fhir/Patient/1").body(Body::empty())?;
//!         app.oneshot(request).await?;
//!         Ok::<_, Box<dyn std::error::Error>>(())
//!     })
//! })?;
//!
//! let text = prometheus.render();
//! assert!(text.contains(&format!("{REQUESTS_REFUSED}{{kind=\"missing_token\"}} 1")));
//! assert!(!text.contains(&format!("{REQUESTS_ACCEPTED}{{")));
//! # Ok(()) }
//! ```

// Without the feature the module is private and only its empty recording calls are used.
#![cfg_attr(not(feature = "metrics"), allow(dead_code, unreachable_pub))]

use crate::error::ErrorKind;

/// Requests passed on with verified claims; label `source` = `cache` | `verified`.
pub const REQUESTS_ACCEPTED: &str = "smart_auth_requests_accepted_total";
/// Requests refused; label `kind` = [`ErrorKind::metric_label`].
pub const REQUESTS_REFUSED: &str = "smart_auth_requests_refused_total";
/// Requests passed on unverified; label `reason` = `public_path` | `no_credentials`.
pub const REQUESTS_UNAUTHENTICATED: &str = "smart_auth_requests_unauthenticated_total";
/// Key set fetches; label `outcome` = `ok` | `error`.
pub const JWKS_FETCHES: &str = "smart_auth_jwks_fetches_total";
/// Fetches started to replace a key set in use; label `trigger` = `ttl` | `unknown_kid`.
pub const JWKS_REFRESHES: &str = "smart_auth_jwks_refreshes_total";
/// Verifications with keys past their TTL because refreshing failed.
pub const JWKS_STALE_KEYS_USED: &str = "smart_auth_jwks_stale_keys_used_total";
/// Unknown `kid`s refused without a refetch because of a cooldown.
pub const JWKS_UNKNOWN_KID_REFETCHES_SKIPPED: &str =
    "smart_auth_jwks_unknown_kid_refetches_skipped_total";
/// Verified-token cache hits.
pub const TOKEN_CACHE_HITS: &str = "smart_auth_token_cache_hits_total";
/// Verified-token cache misses.
pub const TOKEN_CACHE_MISSES: &str = "smart_auth_token_cache_misses_total";
/// Tokens held by the verified-token caches (a gauge).
pub const TOKEN_CACHE_ENTRIES: &str = "smart_auth_token_cache_entries";
/// Introspection endpoint calls; label `outcome` = `active` | `inactive` | `error`.
pub const INTROSPECTION_CALLS: &str = "smart_auth_introspection_calls_total";
/// Introspections answered from the introspection cache.
pub const INTROSPECTION_CACHE_HITS: &str = "smart_auth_introspection_cache_hits_total";

/// Where an accepted request's claims came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Cache,
    Verified,
}

/// Why a request was passed on without verification.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unverified {
    PublicPath,
    NoCredentials,
}

/// Why a fetch replaces a key set in use.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refresh {
    Ttl,
    UnknownKid,
}

/// What one call to the introspection endpoint answered.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "introspection"), allow(dead_code))]
pub(crate) enum Introspected {
    Active,
    Inactive,
    Error,
}

pub(crate) use record::*;

#[cfg(feature = "metrics")]
mod record {
    use std::sync::atomic::{AtomicU64, Ordering};

    use ::metrics::{Key, Label, Level, Metadata, Unit};

    use super::*;

    static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

    /// A `static` key of a series: its name and label pairs, hashed at compile time.
    macro_rules! key {
        ($name:expr $(, $label:literal => $value:expr)*) => {{
            static LABELS: [Label; <[&str]>::len(&[$($label),*])] =
                [$(Label::from_static_parts($label, $value)),*];
            static KEY: Key = Key::from_static_parts($name, &LABELS);
            &KEY
        }};
    }

    /// The `kind` label of every [`ErrorKind`], at its `index()`; the array's length
    /// keeps it complete.
    static REFUSED_LABELS: [[Label; 1]; ErrorKind::COUNT] = {
        macro_rules! labels {
            ($($index:literal)*) => {
                [$([Label::from_static_parts("kind", ErrorKind::ALL[$index].metric_label())]),*]
            };
        }
        labels!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21)
    };

    static REFUSED_KEYS: [Key; ErrorKind::COUNT] = {
        macro_rules! keys {
            ($($index:literal)*) => {
                [$(Key::from_static_parts(REQUESTS_REFUSED, &REFUSED_LABELS[$index])),*]
            };
        }
        keys!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21)
    };

    #[inline]
    fn count(key: &'static Key) {
        ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
    }

    #[inline]
    fn entries() -> ::metrics::Gauge {
        ::metrics::with_recorder(|recorder| {
            recorder.register_gauge(key!(TOKEN_CACHE_ENTRIES), &METADATA)
        })
    }

    /// Registers the description of every metric with the installed recorder.
    pub(crate) fn describe() {
        use ::metrics::{describe_counter, describe_gauge};
        describe_counter!(
            REQUESTS_ACCEPTED,
            Unit::Count,
            "Requests passed on with verified claims, by source (cache or verified)."
        );
        describe_counter!(
            REQUESTS_REFUSED,
            Unit::Count,
            "Requests refused, by error kind."
        );
        describe_counter!(
            REQUESTS_UNAUTHENTICATED,
            Unit::Count,
            "Requests passed on without verification (public path, or optional credentials absent)."
        );
        describe_counter!(JWKS_FETCHES, Unit::Count, "Key set fetches, by outcome.");
        describe_counter!(
            JWKS_REFRESHES,
            Unit::Count,
            "Fetches started to replace a key set in use, by trigger (ttl or unknown_kid)."
        );
        describe_counter!(
            JWKS_STALE_KEYS_USED,
            Unit::Count,
            "Verifications that used keys past their TTL because refreshing failed."
        );
        describe_counter!(
            JWKS_UNKNOWN_KID_REFETCHES_SKIPPED,
            Unit::Count,
            "Unknown kids refused without a refetch because a cooldown was running."
        );
        describe_counter!(TOKEN_CACHE_HITS, Unit::Count, "Verified-token cache hits.");
        describe_counter!(
            TOKEN_CACHE_MISSES,
            Unit::Count,
            "Verified-token cache lookups without a usable entry."
        );
        describe_gauge!(
            TOKEN_CACHE_ENTRIES,
            Unit::Count,
            "Tokens held by the verified-token caches."
        );
        describe_counter!(
            INTROSPECTION_CALLS,
            Unit::Count,
            "Token introspection endpoint calls, by outcome."
        );
        describe_counter!(
            INTROSPECTION_CACHE_HITS,
            Unit::Count,
            "Introspections answered from the introspection cache."
        );
    }

    #[inline]
    pub(crate) fn accepted(source: Source) {
        count(match source {
            Source::Cache => key!(REQUESTS_ACCEPTED, "source" => "cache"),
            Source::Verified => key!(REQUESTS_ACCEPTED, "source" => "verified"),
        });
    }

    #[inline]
    pub(crate) fn refused(kind: ErrorKind) {
        count(&REFUSED_KEYS[kind.index()]);
    }

    #[inline]
    pub(crate) fn unauthenticated(reason: Unverified) {
        count(match reason {
            Unverified::PublicPath => key!(REQUESTS_UNAUTHENTICATED, "reason" => "public_path"),
            Unverified::NoCredentials => {
                key!(REQUESTS_UNAUTHENTICATED, "reason" => "no_credentials")
            }
        });
    }

    #[inline]
    pub(crate) fn jwks_fetched(ok: bool) {
        count(if ok {
            key!(JWKS_FETCHES, "outcome" => "ok")
        } else {
            key!(JWKS_FETCHES, "outcome" => "error")
        });
    }

    #[inline]
    pub(crate) fn jwks_refresh(trigger: Refresh) {
        count(match trigger {
            Refresh::Ttl => key!(JWKS_REFRESHES, "trigger" => "ttl"),
            Refresh::UnknownKid => key!(JWKS_REFRESHES, "trigger" => "unknown_kid"),
        });
    }

    #[inline]
    pub(crate) fn jwks_stale_keys_used() {
        count(key!(JWKS_STALE_KEYS_USED));
    }

    #[inline]
    pub(crate) fn jwks_unknown_kid_refetch_skipped() {
        count(key!(JWKS_UNKNOWN_KID_REFETCHES_SKIPPED));
    }

    #[inline]
    pub(crate) fn token_cache_lookup(hit: bool) {
        count(if hit {
            key!(TOKEN_CACHE_HITS)
        } else {
            key!(TOKEN_CACHE_MISSES)
        });
    }

    #[inline]
    #[cfg_attr(not(feature = "introspection"), allow(dead_code))]
    pub(crate) fn introspection_call(outcome: Introspected) {
        count(match outcome {
            Introspected::Active => key!(INTROSPECTION_CALLS, "outcome" => "active"),
            Introspected::Inactive => key!(INTROSPECTION_CALLS, "outcome" => "inactive"),
            Introspected::Error => key!(INTROSPECTION_CALLS, "outcome" => "error"),
        });
    }

    #[inline]
    #[cfg_attr(not(feature = "introspection"), allow(dead_code))]
    pub(crate) fn introspection_cache_hit() {
        count(key!(INTROSPECTION_CACHE_HITS));
    }

    /// One token cache's share of the entries gauge: the cache's entry count as last
    /// reported, taken off when the cache itself is dropped (its entries then go without
    /// notice).
    #[derive(Debug, Default)]
    pub(crate) struct CacheEntries(AtomicU64);

    impl CacheEntries {
        pub(crate) fn new() -> Self {
            Self::default()
        }

        /// Moves the gauge by the change of this cache's count since the last report.
        #[inline]
        pub(crate) fn held(&self, count: impl FnOnce() -> u64) {
            let count = count();
            let before = self.0.swap(count, Ordering::Relaxed);
            // Lossy only beyond 2^53 entries.
            #[allow(clippy::cast_precision_loss)]
            if count >= before {
                entries().increment((count - before) as f64);
            } else {
                entries().decrement((before - count) as f64);
            }
        }
    }

    impl Drop for CacheEntries {
        fn drop(&mut self) {
            // Lossy only beyond 2^53 entries.
            #[allow(clippy::cast_precision_loss)]
            let left = self.0.load(Ordering::Relaxed) as f64;
            if left != 0.0 {
                entries().decrement(left);
            }
        }
    }
}

/// Without the feature: nothing is recorded, and every call compiles to nothing.
#[cfg(not(feature = "metrics"))]
#[allow(clippy::inline_always)]
mod record {
    use super::*;

    #[inline(always)]
    pub(crate) fn describe() {}
    #[inline(always)]
    pub(crate) fn accepted(_: Source) {}
    #[inline(always)]
    pub(crate) fn refused(_: ErrorKind) {}
    #[inline(always)]
    pub(crate) fn unauthenticated(_: Unverified) {}
    #[inline(always)]
    pub(crate) fn jwks_fetched(_: bool) {}
    #[inline(always)]
    pub(crate) fn jwks_refresh(_: Refresh) {}
    #[inline(always)]
    pub(crate) fn jwks_stale_keys_used() {}
    #[inline(always)]
    pub(crate) fn jwks_unknown_kid_refetch_skipped() {}
    #[inline(always)]
    pub(crate) fn token_cache_lookup(_: bool) {}
    #[inline(always)]
    #[cfg_attr(not(feature = "introspection"), allow(dead_code))]
    pub(crate) fn introspection_call(_: Introspected) {}
    #[inline(always)]
    #[cfg_attr(not(feature = "introspection"), allow(dead_code))]
    pub(crate) fn introspection_cache_hit() {}

    /// A token cache's share of the entries gauge: nothing without the feature.
    #[derive(Debug)]
    pub(crate) struct CacheEntries(());

    impl CacheEntries {
        #[inline(always)]
        pub(crate) fn new() -> Self {
            Self(())
        }
        /// The count is not even computed.
        #[inline(always)]
        pub(crate) fn held(&self, _count: impl FnOnce() -> u64) {}
    }
}
