//! The issuer's signing keys: discovery, fetching, caching and refreshing.
//! The behaviour is documented on [`RefreshPolicy`]. Keys given directly
//! ([`StaticKeys`]) skip all of it: they are never fetched nor refreshed.

mod keyset;
mod static_keys;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::algorithm::SigningAlgorithm;
use arc_swap::ArcSwapOption;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use reqwest::Url;

use crate::clock::Clock;
use crate::error::{AuthError, ConfigError, ErrorKind};
use crate::fetch::{self, FetchError, Fetcher};
use crate::metrics::{self, Refresh};

#[cfg(feature = "fuzzing")]
pub(crate) use keyset::MAX_CANDIDATES;
#[cfg(feature = "dev-server")]
pub(crate) use keyset::SECRET_MEMBERS;
pub(crate) use keyset::{
    Candidates, KeySet, KeySetError, RSA_MODULUS_BITS, Selection, VerificationKey,
};
pub use static_keys::StaticKeys;

/// How the key cache refreshes.
///
/// Every age, TTL and cooldown below is measured on tokio's monotonic clock
/// ([`tokio::time::Instant`]), never on the configured [`Clock`](crate::Clock): setting the
/// host's wall clock back cannot keep keys fresh or a cooldown running, and setting it
/// forward cannot expire them early. The wall clock only stamps [`KeyCacheStatus`], and
/// the deadlines of the [token cache](crate::TokenCachePolicy): an entry there keeps how long
/// its key set may still be relied on as a wall-clock time, fixed when it is stored. A
/// wall clock set forward ends the entry early; one set back to before the entry was
/// stored makes the token verified afresh, against the key set as the monotonic clock
/// finds it (due keys are refreshed then); a smaller step back, less than the entry's
/// age (and so less than the token cache's `max_age`), lengthens it by the step.
///
/// - **Cold start.** The first request discovers `jwks_uri` and fetches the key set; every
///   request that arrives meanwhile waits for that same fetch (single flight).
/// - **Hit.** A request whose `kid` is in the current key set uses it without taking any
///   lock: the set is read through an atomic pointer.
/// - **Expiry.** Keys are fresh for the TTL (default 10 min, or the server's freshness
///   lifetime, `Cache-Control: max-age` or else `Expires` − `Date` (RFC 9111 section
///   4.2.1), less the copy's `Age`, clamped to [1 min, 1 h], so that a key the issuer
///   withdraws without a new `kid` appearing is dropped within the hour). The first request
///   after that (or, for a copy a cache in between served stale, after half of what
///   `max_stale` leaves it) starts a refresh in the background and, like every other
///   request, keeps using the current keys; nobody waits.
/// - **Unknown `kid`.** The request waits for a refetch, but at most one such refetch
///   starts per 30 s. Inside that cooldown an unknown `kid` is refused at once (401),
///   unless a fetch is already running (a refresh, or another request's refetch): then it
///   waits for that fetch's result, since the fetch may bring the key of a rotation: at
///   most the fetch timeout for each request the fetch makes (the key set; before it, up
///   to three metadata locations whenever the key set's location is discovered: at first,
///   after a failed fetch, and for an unknown `kid`, since the issuer may publish its new
///   keys at a new location). A signature that fails with the key of a known `kid` (or,
///   for a token without one, with the key for its algorithm) makes the same refetch (the
///   issuer may have put another key under that `kid`, or rotated the one key of an issuer
///   that names none), and so does a `kid` that names only keys of another type than the
///   token's algorithm needs (the issuer may have reused the `kid` for a new key type).
/// - **Failure.** After a failed fetch, no new fetch starts for 10 s. The last good keys
///   keep being used for up to 24 h after they were fetched (max stale); only with no
///   usable keys at all is the answer 503.
///
/// No lock is held across network I/O: the fetch runs as its own task and its result is
/// shared by everyone waiting for it.
///
/// None of this applies to keys given with
/// [`static_keys`](crate::SmartAuthBuilder::static_keys): they are never fetched and never
/// refreshed, and a token naming an unknown `kid` is refused at once (401), with no
/// network I/O and no cooldown.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use smart_auth::RefreshPolicy;
///
/// let policy = RefreshPolicy::default()
///     .default_ttl(Duration::from_secs(300))
///     .max_stale(Duration::from_secs(3600));
/// assert_eq!(policy.get_default_ttl(), Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    default_ttl: Duration,
    min_ttl: Duration,
    max_ttl: Duration,
    unknown_kid_cooldown: Duration,
    failure_cooldown: Duration,
    max_stale: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            unknown_kid_cooldown: Duration::from_secs(30),
            failure_cooldown: Duration::from_secs(10),
            max_stale: Duration::from_secs(24 * 3600),
        }
    }
}

impl RefreshPolicy {
    /// How long keys stay fresh when the server gives no freshness lifetime (neither
    /// `Cache-Control: max-age` nor `Expires` with `Date`; default 10 min, at most 7 days;
    /// less the copy's `Age`, and held to the [TTL bounds](Self::ttl_bounds) like a
    /// `max-age`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::RefreshPolicy;
    ///
    /// let policy = RefreshPolicy::default().default_ttl(Duration::from_secs(300));
    /// assert_eq!(policy.get_default_ttl(), Duration::from_secs(300));
    /// ```
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }
    /// The bounds a server's `max-age` is clamped to (default 1 min to 1 h; the lower
    /// bound at least 1 s, the upper at most 7 days).
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, RefreshPolicy, TokenVerifier};
    ///
    /// let verifier = |policy| {
    ///     TokenVerifier::builder("https://auth.example.org")
    ///         .audience("https://fhir.example.org/r4")
    ///         .refresh_policy(policy)
    ///         .build()
    /// };
    /// // A server's `max-age` is held between 5 minutes and 2 hours.
    /// let bounded = RefreshPolicy::default().ttl_bounds(Duration::from_secs(300), Duration::from_secs(7200));
    /// assert!(verifier(bounded).is_ok());
    /// // The lower bound must not pass the upper one.
    /// let upside_down = RefreshPolicy::default().ttl_bounds(Duration::from_secs(600), Duration::from_secs(60));
    /// assert!(matches!(verifier(upside_down), Err(ConfigError::InvalidLimit { field: "ttl_bounds" })));
    /// ```
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_ttl = min;
        self.max_ttl = max;
        self
    }
    /// The least time between two refetches caused by unknown `kid`s (default 30 s, at
    /// least 1 s: tokens with made-up `kid`s must not turn into a stream of fetches; at
    /// most 1 h).
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, RefreshPolicy, TokenVerifier};
    ///
    /// let builder = || TokenVerifier::builder("https://auth.example.org").audience("https://fhir.example.org");
    /// let policy = RefreshPolicy::default().unknown_kid_cooldown(Duration::from_secs(120));
    /// assert!(builder().refresh_policy(policy).build().is_ok());
    /// // Under a second, made-up `kid`s could keep the key set endpoint busy.
    /// let eager = RefreshPolicy::default().unknown_kid_cooldown(Duration::from_millis(100));
    /// let error = builder().refresh_policy(eager).build().unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "unknown_kid_cooldown" }));
    /// ```
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.unknown_kid_cooldown = cooldown;
        self
    }
    /// How long after a failed fetch no new fetch starts (default 10 s, at least 1 s, at
    /// most 1 h).
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, RefreshPolicy, TokenVerifier};
    ///
    /// let builder = || TokenVerifier::builder("https://auth.example.org").audience("https://fhir.example.org");
    /// let policy = RefreshPolicy::default().failure_cooldown(Duration::from_secs(30));
    /// assert!(builder().refresh_policy(policy).build().is_ok());
    /// // Milliseconds meant, seconds given: two days without a fetch is refused.
    /// let stuck = RefreshPolicy::default().failure_cooldown(Duration::from_secs(172_800));
    /// let error = builder().refresh_policy(stuck).build().unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "failure_cooldown" }));
    /// ```
    pub fn failure_cooldown(mut self, cooldown: Duration) -> Self {
        self.failure_cooldown = cooldown;
        self
    }
    /// How long after their fetch keys may still be used while refreshing fails
    /// (default 24 h; at least 1 s, at most 7 days). A copy a cache in between served
    /// stale (its `Age` beyond its lifetime: an origin down behind a CDN with
    /// `stale-if-error`) counts that time too, so refetching the old copy does not renew
    /// it, and one served stale for so long that this leaves it less than the minimum TTL
    /// ([`ttl_bounds`](Self::ttl_bounds); half of this when that is shorter) is a failed
    /// fetch: it would be due again at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, RefreshPolicy, TokenVerifier};
    ///
    /// let builder = || TokenVerifier::builder("https://auth.example.org").audience("https://fhir.example.org");
    /// // Withdrawn keys stop counting 2 h after their fetch, even while the issuer is down.
    /// let policy = RefreshPolicy::default().max_stale(Duration::from_secs(2 * 3600));
    /// assert!(builder().refresh_policy(policy).build().is_ok());
    /// let weeks = RefreshPolicy::default().max_stale(Duration::from_secs(30 * 24 * 3600));
    /// let error = builder().refresh_policy(weeks).build().unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "max_stale" }));
    /// ```
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// How long a copy a cache in between served may have been stale: as long as leaves
    /// it usable for the minimum TTL (or half of `max_stale`, when that is shorter: a tight
    /// `max_stale` still takes a copy served briefly stale). A copy left less would be due
    /// again at once, and every request would wait for another fetch of it.
    fn stale_copy_limit(&self) -> Duration {
        self.max_stale - self.min_ttl.min(self.max_stale / 2)
    }

    /// The TTL used when the server gives no freshness lifetime (no `max-age`, no
    /// `Expires`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::RefreshPolicy;
    ///
    /// assert_eq!(RefreshPolicy::default().get_default_ttl(), Duration::from_secs(600));
    /// ```
    pub fn get_default_ttl(&self) -> Duration {
        self.default_ttl
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.min_ttl > self.max_ttl || self.max_ttl.is_zero() {
            return Err(ConfigError::InvalidLimit {
                field: "ttl_bounds",
            });
        }
        let second = Duration::from_secs(1);
        let lower_bounds = [
            (self.default_ttl, "default_ttl"),
            (self.min_ttl, "ttl_bounds"),
            (self.unknown_kid_cooldown, "unknown_kid_cooldown"),
            (self.failure_cooldown, "failure_cooldown"),
        ];
        if let Some((_, field)) = lower_bounds.into_iter().find(|(d, _)| *d < second) {
            return Err(ConfigError::InvalidLimit { field });
        }
        // Keys unusable at once would be fetched again by the requests themselves, one
        // fetch after another.
        if self.max_stale < second {
            return Err(ConfigError::InvalidLimit { field: "max_stale" });
        }
        // Ceilings: a value meant in other units (milliseconds given as seconds) would
        // answer 503 for days after one failed fetch, or keep withdrawn keys for weeks.
        let hour = Duration::from_secs(3600);
        let week = Duration::from_secs(7 * 24 * 3600);
        let upper_bounds = [
            (self.default_ttl, week, "default_ttl"),
            (self.max_ttl, week, "ttl_bounds"),
            (self.max_stale, week, "max_stale"),
            (self.unknown_kid_cooldown, hour, "unknown_kid_cooldown"),
            (self.failure_cooldown, hour, "failure_cooldown"),
        ];
        if let Some((_, _, field)) = upper_bounds.into_iter().find(|(d, max, _)| d > max) {
            return Err(ConfigError::InvalidLimit { field });
        }
        Ok(())
    }

    /// The TTL of a fetched set: what is left of its freshness lifetime (`max-age`, or
    /// `Expires` − `Date`, less its `Age`: `freshness_left`), or without a stated lifetime
    /// what is left of the default TTL after its `Age` (RFC 9111 section 4.2: fresh while
    /// the lifetime exceeds the age), held to the bounds.
    fn ttl_for(&self, freshness_left: Option<Duration>, age: Duration) -> Duration {
        freshness_left
            .unwrap_or_else(|| self.default_ttl.saturating_sub(age))
            .clamp(self.min_ttl, self.max_ttl)
    }
}

/// A view of the key cache, for health checks and metrics. Get it from
/// [`TokenVerifier::key_cache_status`](crate::TokenVerifier::key_cache_status).
///
/// ```
/// # fn report(verifier: &smart_auth::TokenVerifier) {
/// let status = verifier.key_cache_status();
/// if status.keys == 0 {
///     println!("no keys yet");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyCacheStatus {
    /// How many usable keys the cached set holds (0 before the first fetch). With
    /// [`StaticKeys`], how many were given.
    pub keys: usize,
    /// When the cached set was fetched, as the configured [`Clock`](crate::Clock) read it.
    /// `None` before the first fetch, and always with [`StaticKeys`] (never fetched).
    pub fetched_at: Option<SystemTime>,
    /// `fetched_at` plus the set's TTL (no later than `max_stale` leaves a copy served
    /// stale). Informational: the cache itself measures the
    /// set's age on the monotonic clock, so a wall clock set since does not change it.
    /// `None` with [`StaticKeys`], which do not expire.
    pub fresh_until: Option<SystemTime>,
    /// Whether a fetch is running now.
    pub fetching: bool,
    /// When the latest fetch failed (as the configured clock read it; the system clock's
    /// time when a hook panicked in the fetch, the configured clock among them), if it
    /// failed.
    pub last_failure: Option<SystemTime>,
}

/// Where the key set comes from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// Discover `jwks_uri` from the issuer's metadata.
    Discover { issuer: String },
    /// A configured `jwks_uri`.
    Fixed(Url),
    /// Keys given in the configuration: never fetched, never refreshed.
    Static(StaticKeys),
}

/// A key set with the time it was fetched.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) keys: KeySet,
    /// When it was fetched, on the monotonic clock: its TTL is measured from here.
    fetched: Instant,
    /// How long a cache in between had already served it stale when it was fetched
    /// (`Fetched::stale_for`): `max_stale` counts from when its origin last vouched for
    /// it, so that a cache answering for an origin that is down cannot keep withdrawn keys
    /// trusted by serving its old copy again and again.
    stale_when_fetched: Duration,
    /// The wall-clock time of the fetch, for [`KeyCacheStatus`] only.
    fetched_at: SystemTime,
    ttl: Duration,
    /// Unique per fetched set within one store, so that a result obtained with one set
    /// can tell whether the set has been replaced since. A fetch that brings back the same
    /// document keeps the generation: the keys did not change, and a new generation would
    /// void every cached verification (which anyone could force every unknown-kid cooldown).
    generation: u64,
    /// The fingerprint of the fetched keys ([`KeySet::fingerprint`]; `None` for static
    /// keys).
    document_digest: Option<[u8; 32]>,
    /// SHA-256 of the fetched document's bytes (`None` for static keys): a refetch that
    /// brings back the very same bytes reuses the parsed keys.
    body_digest: Option<[u8; 32]>,
}

impl Snapshot {
    /// How long after its fetch the set is fresh: its TTL, and no longer than `max_stale`
    /// leaves a copy that was already stale when fetched (past that it is no longer
    /// usable at all).
    fn fresh_for(&self, max_stale: Duration) -> Duration {
        self.ttl
            .min(max_stale.saturating_sub(self.stale_when_fetched))
    }

    /// When a background refresh is due: at the TTL, or halfway through what `max_stale`
    /// leaves a copy that was stale when fetched, when that comes first (at its end the
    /// set is unusable, and requests would wait for the fetch).
    fn refresh_due_after(&self, max_stale: Duration) -> Duration {
        self.ttl
            .min(max_stale.saturating_sub(self.stale_when_fetched) / 2)
    }
}

/// The generation of a static key set, the only one its store ever has.
const STATIC_GENERATION: u64 = 1;
/// How long a verification with static keys may be relied on: far beyond any token
/// cache's max age, which is then the limit.
const STATIC_FRESH_FOR: Duration = Duration::from_secs(365 * 24 * 3600);

type FetchResult = Result<Arc<Snapshot>, FetchError>;
type SharedFetch = Shared<BoxFuture<'static, FetchResult>>;

#[derive(Default)]
struct RefreshState {
    in_flight: Option<SharedFetch>,
    /// The task of the fetch in flight. It clears `in_flight` when it ends, unless it was
    /// dropped first (its runtime shut down) or panicked: a slot whose task has finished
    /// is empty (see [`RefreshState::fetch_in_flight`]).
    in_flight_task: Option<tokio::task::AbortHandle>,
    /// When the latest fetch failed (monotonic), if it failed: the failure cooldown.
    last_failure: Option<Instant>,
    /// The same moment on the wall clock, for [`KeyCacheStatus`] only.
    last_failure_at: Option<SystemTime>,
    last_unknown_kid_fetch: Option<Instant>,
}

/// Whether two readings of the installed key set are the same install (an install stores a
/// new snapshot, also for an unchanged document).
fn same_snapshot(before: &Option<Arc<Snapshot>>, after: &Option<Arc<Snapshot>>) -> bool {
    match (before, after) {
        (Some(before), Some(after)) => Arc::ptr_eq(before, after),
        (None, None) => true,
        _ => false,
    }
}

impl RefreshState {
    /// The fetch in flight, if its task still runs. One that ended without clearing its
    /// slot is forgotten: no one may poll it (a background refresh), and while it counted
    /// as in progress no refresh would start until the keys passed `max_stale`.
    fn fetch_in_flight(&mut self) -> Option<&SharedFetch> {
        if self
            .in_flight_task
            .as_ref()
            .is_some_and(tokio::task::AbortHandle::is_finished)
        {
            self.in_flight = None;
            self.in_flight_task = None;
        }
        self.in_flight.as_ref()
    }
}

/// Why a fetch is wanted, which decides whether the caller waits and which cooldowns apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// No usable keys: wait for a fetch unless one failed just now.
    Keys,
    /// An unknown `kid`: wait for a fetch, at most one per cooldown.
    UnknownKid,
    /// The keys passed their TTL: start a fetch, don't wait.
    Refresh,
}

/// The cache of one issuer's keys.
pub(crate) struct KeyStore {
    source: KeySource,
    /// The set of [`KeySource::Static`], installed once: when present, the only keys used,
    /// and nothing below it (fetching, cooldowns, `current`) is ever touched.
    static_keys: Option<Arc<Snapshot>>,
    fetcher: Fetcher,
    policy: RefreshPolicy,
    clock: Arc<dyn Clock>,
    current: ArcSwapOption<Snapshot>,
    /// The key set's location as last discovered (kept as the fallback while discovery
    /// fails).
    discovered_jwks_uri: ArcSwapOption<Url>,
    /// Set when a fetch failed: the next fetch discovers the location again.
    rediscover: std::sync::atomic::AtomicBool,
    state: Mutex<RefreshState>,
    next_generation: AtomicU64,
    /// The generation of `current`, readable without loading it.
    current_generation: AtomicU64,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", &self.source)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The keys that may have signed a token (one, as a rule; more when its header does not
/// tell them apart): the snapshot keeps them alive.
pub(crate) struct ChosenKey {
    snapshot: Arc<Snapshot>,
    candidates: Candidates,
}

impl ChosenKey {
    /// Whether `verify` accepts some candidate, tried in the set's order: the first refusal
    /// other than [`ErrorKind::InvalidSignature`] ends the trial, else the signature is
    /// invalid with every candidate.
    pub(crate) fn verify(
        &self,
        verify: impl Fn(&VerificationKey) -> Result<(), ErrorKind>,
    ) -> Result<(), ErrorKind> {
        for index in self.candidates.iter() {
            match verify(self.snapshot.keys.get(index)) {
                Err(ErrorKind::InvalidSignature) => {}
                verdict => return verdict,
            }
        }
        Err(ErrorKind::InvalidSignature)
    }

    /// Whether some candidate is none of `other`'s keys.
    fn has_key_outside(&self, other: &Self) -> bool {
        self.candidates.iter().any(|index| {
            let key = self.snapshot.keys.get(index);
            !other
                .candidates
                .iter()
                .any(|theirs| key.is_same_key_as(other.snapshot.keys.get(theirs)))
        })
    }

    /// The generation of the key set the key comes from.
    pub(crate) fn generation(&self) -> u64 {
        self.snapshot.generation
    }
}

impl KeyStore {
    pub(crate) fn new(
        source: KeySource,
        fetcher: Fetcher,
        policy: RefreshPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let static_keys = match &source {
            KeySource::Static(keys) => Some(Arc::new(Snapshot {
                keys: keys.keys.clone(),
                fetched: Instant::now(),
                stale_when_fetched: Duration::ZERO,
                fetched_at: clock.now(),
                ttl: Duration::MAX,
                generation: STATIC_GENERATION,
                document_digest: None,
                body_digest: None,
            })),
            KeySource::Discover { .. } | KeySource::Fixed(_) => None,
        };
        let generation = if static_keys.is_some() {
            STATIC_GENERATION
        } else {
            0
        };
        Self {
            source,
            static_keys,
            fetcher,
            policy,
            clock,
            current: ArcSwapOption::empty(),
            discovered_jwks_uri: ArcSwapOption::empty(),
            rediscover: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(RefreshState::default()),
            next_generation: AtomicU64::new(generation + 1),
            current_generation: AtomicU64::new(generation),
        }
    }

    /// Fetches the keys now unless usable ones are cached (or the keys are static).
    pub(crate) async fn warm_up(self: &Arc<Self>) -> Result<(), AuthError> {
        if self.static_keys.is_some() || self.usable_snapshot(Instant::now()).is_some() {
            return Ok(());
        }
        match self.fetch_for(Need::Keys) {
            Some(fetch) => fetch
                .await
                .map(drop)
                .map_err(|error| self.keys_unavailable(Some(error))),
            None => Err(self.keys_unavailable(None)),
        }
    }

    /// The key for a token's `kid` and `alg`.
    pub(crate) async fn key_for(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: SigningAlgorithm,
    ) -> Result<ChosenKey, AuthError> {
        if let Some(keys) = &self.static_keys {
            // An unknown `kid` is final; a key configured without one serves any `kid`.
            let selection = keys.keys.select_configured(kid, alg);
            return chosen(Arc::clone(keys), selection);
        }
        let now = Instant::now();
        let Some(snapshot) = self.usable_snapshot(now) else {
            let Some(fetch) = self.fetch_for(Need::Keys) else {
                tracing::debug!("no usable keys and a fetch failed recently: answering 503");
                return Err(self.keys_unavailable(None));
            };
            let snapshot = fetch
                .await
                .map_err(|error| self.keys_unavailable(Some(error)))?;
            return choose(snapshot, kid, alg);
        };
        let age = now.saturating_duration_since(snapshot.fetched);
        if age >= snapshot.refresh_due_after(self.policy.max_stale) {
            if self.fetch_for(Need::Refresh).is_some() {
                // The fetch runs on its own task; this request goes on with the current keys.
                tracing::debug!("keys passed their TTL: refreshing in the background");
            } else {
                metrics::jwks_stale_keys_used();
                tracing::debug!(
                    age_secs = age.as_secs(),
                    "using stale keys while refreshing is cooling down"
                );
            }
        }
        match snapshot.keys.select(kid, alg) {
            // A `kid` no key carries, or one that names only keys that may not verify this
            // `alg`: the issuer may have rotated to a new key, or put a key of another type
            // under the same `kid` (RFC 7517 section 4.5 does not tie a `kid` to one key).
            selection @ (Selection::NotFound | Selection::Unusable) => {
                let Some(fetch) = self.fetch_for(Need::UnknownKid) else {
                    // The refetch another request started may have ended between reading
                    // the keys and now: its keys decide.
                    if let Some(newer) = self.newer_snapshot(&snapshot) {
                        return choose(newer, kid, alg);
                    }
                    if self.last_fetch_failed() {
                        // The issuer may have rotated to this key while its key set cannot
                        // be fetched: unknown is not proven, so 503 (ask again later), not
                        // 401 (which tells the client its token is bad). Retry-After
                        // covers both cooldowns: no refetch for this `kid` starts before.
                        tracing::debug!("unknown kid while fetching keys fails: answering 503");
                        return Err(self.unknown_kid_unavailable(None));
                    }
                    metrics::jwks_unknown_kid_refetch_skipped();
                    tracing::debug!(
                        "unknown kid inside the refetch cooldown: refused without fetching"
                    );
                    return chosen(snapshot, selection);
                };
                tracing::debug!("unknown kid: refetching the key set");
                match fetch.await {
                    Ok(snapshot) => choose(snapshot, kid, alg),
                    // The refetch failed: the old keys are still good for other tokens, but
                    // whether this one names a new key cannot be known now.
                    Err(error) => Err(self.unknown_kid_unavailable(Some(error))),
                }
            }
            selection => chosen(snapshot, selection),
        }
    }

    /// After a signature failed to verify with `previous`, a fetched key named by `kid` (or,
    /// for a token without one, a fetched key without one for its `alg`): the issuer may
    /// have replaced the key under the same `kid` (RFC 7517 section 4.5 does not tie a
    /// `kid` to one key for ever), after a compromise say, or rotated the one key of an
    /// issuer that names none (AD FS). A refetch, which
    /// shares the unknown-`kid` cooldown (a flood of bad signatures costs the issuer no
    /// more than a flood of made-up `kid`s), that finds another key under that `kid`
    /// gives it; otherwise `None`, and the refusal stands. The new set also replaces the
    /// one in use, so tokens cached under the old key are no longer served.
    pub(crate) async fn replaced_key(
        self: &Arc<Self>,
        previous: &ChosenKey,
        kid: Option<&str>,
        alg: SigningAlgorithm,
    ) -> Option<ChosenKey> {
        if self.static_keys.is_some() {
            return None;
        }
        // Keys installed since `previous` was chosen (by a refetch another request started,
        // which may have ended a moment ago) may hold the new key already.
        if let Some(newer) = self.newer_snapshot(&previous.snapshot)
            && let Ok(chosen) = choose(newer, kid, alg)
            && chosen.has_key_outside(previous)
        {
            return Some(chosen);
        }
        let fetch = self.fetch_for(Need::UnknownKid)?;
        tracing::debug!("a signature failed with a known key: refetching the key set");
        let chosen = choose(fetch.await.ok()?, kid, alg).ok()?;
        chosen.has_key_outside(previous).then_some(chosen)
    }

    /// The generation of the key set in use (0 before the first fetch): it changes each
    /// time a fetched set is installed. One atomic load.
    pub(crate) fn current_generation(&self) -> u64 {
        self.current_generation.load(Ordering::Relaxed)
    }

    /// Until when a verification may rely on `key`'s key set as it is, without a
    /// refresh: until a refresh of the set is due (its TTL, or halfway through what
    /// `max_stale` leaves a copy served stale, when that comes first). The time left is
    /// measured on the monotonic clock and then stated as a wall-clock time (the token
    /// cache's currency): the wall clock now plus what is left, so a wall clock set back
    /// between the fetch and now does not lengthen it (one set back after now does, for
    /// the entry that keeps this deadline).
    pub(crate) fn fresh_until(&self, key: &ChosenKey) -> SystemTime {
        let now = self.clock.now();
        if self.static_keys.is_some() {
            // Static keys never change: only the token cache's own limits apply.
            return now.checked_add(STATIC_FRESH_FOR).unwrap_or(now);
        }
        let snapshot = &key.snapshot;
        // Until a refresh is due: at the TTL, or halfway through what `max_stale` leaves a
        // copy served stale. Past that, tokens are verified afresh, which starts the
        // refresh (cache hits never look at the key set).
        let fresh_for = snapshot.refresh_due_after(self.policy.max_stale);
        let age = Instant::now().saturating_duration_since(snapshot.fetched);
        now.checked_add(fresh_for.saturating_sub(age))
            .unwrap_or(now)
    }

    pub(crate) fn status(&self) -> KeyCacheStatus {
        if let Some(keys) = &self.static_keys {
            return KeyCacheStatus {
                keys: keys.keys.len(),
                fetched_at: None,
                fresh_until: None,
                fetching: false,
                last_failure: None,
            };
        }
        let snapshot = self.current.load_full();
        let mut state = self.lock_state();
        let fetching = state.fetch_in_flight().is_some();
        KeyCacheStatus {
            keys: snapshot.as_ref().map_or(0, |s| s.keys.len()),
            fetched_at: snapshot.as_ref().map(|s| s.fetched_at),
            fresh_until: snapshot
                .as_ref()
                .and_then(|s| s.fetched_at.checked_add(s.fresh_for(self.policy.max_stale))),
            fetching,
            last_failure: state.last_failure_at,
        }
    }

    /// The refresh bookkeeping. Held only for a few instructions, never across I/O; a
    /// poisoned lock still holds consistent data (every update is a single assignment).
    fn lock_state(&self) -> std::sync::MutexGuard<'_, RefreshState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The usable key set in use, when it is another than `than` (installed since `than`
    /// was read).
    fn newer_snapshot(&self, than: &Arc<Snapshot>) -> Option<Arc<Snapshot>> {
        self.usable_snapshot(Instant::now())
            .filter(|current| !Arc::ptr_eq(current, than))
    }

    fn usable_snapshot(&self, now: Instant) -> Option<Arc<Snapshot>> {
        self.current.load_full().filter(|snapshot| {
            now.saturating_duration_since(snapshot.fetched)
                .saturating_add(snapshot.stale_when_fetched)
                <= self.policy.max_stale
        })
    }

    /// How long a cache in between had served a document fetched now stale: its `Age`
    /// beyond its lifetime, or without a stated lifetime beyond the default TTL.
    fn stale_when_fetched(&self, fetched: &fetch::Fetched) -> Duration {
        fetched
            .stale_for
            .unwrap_or_else(|| fetched.age.saturating_sub(self.policy.default_ttl))
    }

    /// The 503 answer when no usable key can be had: `Retry-After` is what is left of the
    /// failure cooldown (all of it right after a failed fetch).
    fn keys_unavailable(&self, error: Option<FetchError>) -> AuthError {
        let since_failure = self
            .lock_state()
            .last_failure
            .map(|at| Instant::now().saturating_duration_since(at));
        let wait = since_failure
            .map_or(self.policy.failure_cooldown, |elapsed| {
                self.policy.failure_cooldown.saturating_sub(elapsed)
            })
            .max(Duration::from_secs(1));
        let unavailable = AuthError::new(ErrorKind::KeysUnavailable).with_retry_after(wait);
        match error {
            Some(error) => unavailable.with_source(error),
            None => unavailable,
        }
    }

    /// The 503 answer for a token whose `kid` the keys lack while they cannot be fetched:
    /// `Retry-After` covers both cooldowns, since no refetch for it starts before either
    /// ends.
    fn unknown_kid_unavailable(&self, error: Option<FetchError>) -> AuthError {
        let unavailable = self.keys_unavailable(error);
        let wait = unavailable
            .retry_after()
            .unwrap_or_default()
            .max(self.unknown_kid_cooldown_left());
        unavailable.with_retry_after(wait)
    }

    /// What is left of the unknown-`kid` refetch cooldown (zero when none runs).
    fn unknown_kid_cooldown_left(&self) -> Duration {
        self.lock_state()
            .last_unknown_kid_fetch
            .map_or(Duration::ZERO, |at| {
                self.policy
                    .unknown_kid_cooldown
                    .saturating_sub(Instant::now().saturating_duration_since(at))
            })
    }

    /// Whether the last fetch failed (a success clears the failure).
    fn last_fetch_failed(&self) -> bool {
        self.lock_state().last_failure.is_some()
    }

    /// Joins the fetch in flight, or starts one if the cooldowns allow it.
    fn fetch_for(self: &Arc<Self>, need: Need) -> Option<SharedFetch> {
        let now = Instant::now();
        let mut state = self.lock_state();
        if let Some(in_flight) = state.fetch_in_flight() {
            return Some(in_flight.clone());
        }
        let cooling = |since: Option<Instant>, cooldown: Duration| {
            since.is_some_and(|at| now.saturating_duration_since(at) < cooldown)
        };
        if cooling(state.last_failure, self.policy.failure_cooldown) {
            return None;
        }
        if need == Need::UnknownKid {
            if cooling(
                state.last_unknown_kid_fetch,
                self.policy.unknown_kid_cooldown,
            ) {
                return None;
            }
            state.last_unknown_kid_fetch = Some(now);
        }
        match need {
            Need::Keys => {}
            Need::Refresh => metrics::jwks_refresh(Refresh::Ttl),
            Need::UnknownKid => metrics::jwks_refresh(Refresh::UnknownKid),
        }
        let store = Arc::clone(self);
        let keys_before = self.current.load_full();
        let task = tokio::spawn(async move {
            // A panic in a hook the fetch calls (a custom clock, a metrics recorder) is
            // caught in the task, so that it counts whether or not anyone awaits the fetch
            // (a background refresh does not).
            let fetched = AssertUnwindSafe(Arc::clone(&store).fetch_and_install(need))
                .catch_unwind()
                .await;
            fetched.unwrap_or_else(|_| store.after_panic(&keys_before))
        });
        state.in_flight_task = Some(task.abort_handle());
        let store = Arc::clone(self);
        let shared = async move {
            task.await.unwrap_or_else(|_| {
                // Cancelled with its runtime (a runtime that went away says nothing about
                // the issuer): the slot is freed, unless a newer fetch holds it already.
                store.lock_state().fetch_in_flight();
                Err(FetchError::TaskFailed)
            })
        }
        .boxed()
        .shared();
        state.in_flight = Some(shared.clone());
        Some(shared)
    }

    /// After a fetch task's panic: the keys it installed before it panicked (a recorder
    /// called after the install), which its waiters get, or else a failed fetch, so that
    /// the next request does not start one again at once. The slot is cleared either way
    /// (the task holds it: no newer fetch can).
    fn after_panic(&self, keys_before: &Option<Arc<Snapshot>>) -> FetchResult {
        let now_installed = self.current.load_full();
        let mut state = self.lock_state();
        state.in_flight = None;
        state.in_flight_task = None;
        match now_installed {
            Some(keys) if !same_snapshot(keys_before, &Some(Arc::clone(&keys))) => Ok(keys),
            _ => {
                state.last_failure = Some(Instant::now());
                // The system clock: the configured one may be what panicked.
                state.last_failure_at = Some(SystemTime::now());
                self.rediscover.store(true, Ordering::Relaxed);
                Err(FetchError::TaskFailed)
            }
        }
    }

    /// The body of a fetch task: fetch, install, and clear the in-flight slot.
    async fn fetch_and_install(self: Arc<Self>, need: Need) -> FetchResult {
        let result = self.fetch_snapshot(need).await;
        let now = Instant::now();
        let now_wall = self.clock.now();
        let mut state = self.lock_state();
        state.in_flight = None;
        state.in_flight_task = None;
        // The state first (the keys installed), then the metrics, once the lock is
        // released: a recorder that panics must not cost the keys just fetched.
        match &result {
            Ok(snapshot) => {
                state.last_failure = None;
                state.last_failure_at = None;
                self.rediscover.store(false, Ordering::Relaxed);
                self.current.store(Some(Arc::clone(snapshot)));
                self.current_generation
                    .store(snapshot.generation, Ordering::Relaxed);
                tracing::debug!(
                    keys = snapshot.keys.len(),
                    ttl_secs = snapshot.ttl.as_secs(),
                    "installed a fresh key set"
                );
            }
            Err(error) => {
                // The issuer may have moved its keys (the old location answering an error
                // page, or no key set at all): discover them again next time.
                self.rediscover.store(true, Ordering::Relaxed);
                state.last_failure = Some(now);
                state.last_failure_at = Some(now_wall);
                let stale = self.current.load().is_some();
                tracing::warn!(%error, using_stale_keys = stale, "fetching the issuer's key set failed");
            }
        }
        drop(state);
        metrics::jwks_fetched(result.is_ok());
        result
    }

    async fn fetch_snapshot(&self, need: Need) -> FetchResult {
        let jwks_uri = match &self.source {
            // Never reached: `key_for` and `warm_up` answer from the static set first.
            KeySource::Static(_) => return Err(FetchError::TaskFailed),
            KeySource::Fixed(uri) => uri.clone(),
            KeySource::Discover { issuer } => {
                let known = self.discovered_jwks_uri.load_full();
                let moved = need == Need::UnknownKid || self.rediscover.load(Ordering::Relaxed);
                match known {
                    Some(uri) if !moved => Url::clone(&uri),
                    // After a failed fetch, or for a key the set lacks (the metadata may name
                    // a new location while the old one still serves the old keys): discover
                    // again, falling back on the known location if discovery fails.
                    known => match fetch::discover_jwks_uri(&self.fetcher, issuer).await {
                        Ok(uri) => {
                            self.discovered_jwks_uri.store(Some(Arc::new(uri.clone())));
                            uri
                        }
                        Err(error) => match known {
                            Some(uri) => {
                                tracing::debug!(%error, "discovering the key set's location again failed: using the known one");
                                Url::clone(&uri)
                            }
                            None => return Err(error),
                        },
                    },
                }
            }
        };
        let refreshing = self.current.load().is_some();
        let fetched = self
            .fetcher
            .get(
                &jwks_uri,
                "application/jwk-set+json, application/json",
                refreshing,
            )
            .await?;
        // A copy a cache in between has served stale for longer than keys may be used
        // stale vouches for nothing: a failed fetch (cooldown, the keys in use kept). So
        // does one that would be usable only briefly (`stale_copy_limit`).
        if self.stale_when_fetched(&fetched) > self.policy.stale_copy_limit() {
            return Err(FetchError::ServedStale);
        }
        let body_digest = Some(crate::digest::sha256(&fetched.body));
        let current = self.current.load_full();
        // The same bytes as the set in use (a refresh, or a refetch anyone can start with a
        // made-up `kid` every cooldown): the keys parsed then, not parsed again.
        if let Some(current) = current.filter(|current| current.body_digest == body_digest) {
            return Ok(Arc::new(Snapshot {
                keys: current.keys.clone(),
                fetched: Instant::now(),
                stale_when_fetched: self.stale_when_fetched(&fetched),
                fetched_at: self.clock.now(),
                ttl: self.policy.ttl_for(fetched.max_age, fetched.age),
                generation: current.generation,
                document_digest: current.document_digest,
                body_digest,
            }));
        }
        let keys = match KeySet::parse(&fetched.body) {
            Ok(keys) => keys,
            // A set without a usable key (none listed, none usable, or every key skipped for
            // a repeated member) replaces a set in use: the issuer has withdrawn the keys it
            // held (after a compromise, say), and keys it no longer publishes must not stay
            // trusted until the stale limit; keys it publishes broken are no keys either.
            // Before any set is in use, the same document stays an error (503), the sign of
            // a misconfiguration.
            Err(KeySetError::NoUsableKey) if refreshing => {
                tracing::warn!(
                    "the issuer's key set holds no usable signing key: every token is refused \
                     until it publishes one"
                );
                KeySet::default()
            }
            Err(error) => return Err(FetchError::KeySet(error)),
        };
        // The keys, not the document's bytes: the same keys in another order or spacing
        // (issuers behind several servers) keep the generation and the cached tokens.
        let document_digest = Some(keys.fingerprint());
        let generation = match self.current.load().as_deref() {
            Some(current)
                if document_digest.is_some() && current.document_digest == document_digest =>
            {
                current.generation
            }
            _ => self.next_generation.fetch_add(1, Ordering::Relaxed),
        };
        Ok(Arc::new(Snapshot {
            keys,
            fetched: Instant::now(),
            stale_when_fetched: self.stale_when_fetched(&fetched),
            fetched_at: self.clock.now(),
            ttl: self.policy.ttl_for(fetched.max_age, fetched.age),
            generation,
            document_digest,
            body_digest,
        }))
    }
}

fn choose(
    snapshot: Arc<Snapshot>,
    kid: Option<&str>,
    alg: SigningAlgorithm,
) -> Result<ChosenKey, AuthError> {
    let selection = snapshot.keys.select(kid, alg);
    chosen(snapshot, selection)
}

/// The keys a selection found in `snapshot`, or why there are none: a `kid` no key carries
/// is unknown, and so is a key the set cannot single out among too many; a key that may
/// not verify the token's `alg` refuses the algorithm.
fn chosen(snapshot: Arc<Snapshot>, selection: Selection) -> Result<ChosenKey, AuthError> {
    let candidates = match selection {
        Selection::Found(index) => Candidates::one(index),
        Selection::Several(candidates) => candidates,
        Selection::Unusable => return Err(AuthError::new(ErrorKind::UnsupportedAlgorithm)),
        Selection::NotFound | Selection::Ambiguous => {
            return Err(AuthError::new(ErrorKind::UnknownKey));
        }
    };
    Ok(ChosenKey {
        snapshot,
        candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy served stale is taken while it leaves the minimum TTL of `max_stale`, or
    /// half of `max_stale` when that is shorter: never nothing.
    #[test]
    fn stale_copies_leave_the_minimum_ttl_or_half_the_limit() {
        let secs = Duration::from_secs;
        let limit = |max_stale| {
            RefreshPolicy::default()
                .max_stale(max_stale)
                .stale_copy_limit()
        };
        assert_eq!(limit(secs(24 * 3600)), secs(24 * 3600 - 60));
        assert_eq!(limit(secs(3600)), secs(3540));
        assert_eq!(limit(secs(120)), secs(60));
        assert_eq!(limit(secs(90)), secs(45));
        assert_eq!(limit(secs(30)), secs(15));
        assert_eq!(limit(secs(1)), Duration::from_millis(500));
    }

    /// A key set a cache in between serves stale (its `Age` beyond its `max-age`, while
    /// the issuer is down) counts as old as it is: `max_stale` runs from when the issuer
    /// last vouched for it, not from each refetch of the old copy, and a copy already
    /// older than that is a failed fetch.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn a_copy_served_stale_counts_its_age() {
        use std::sync::atomic::AtomicU64;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let issuer = crate::testing::TestIssuer::start().await;
        let body = issuer.jwks().to_string();
        let age = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/jwks", listener.local_addr().unwrap())).unwrap();
        let served_age = Arc::clone(&age);
        let cache = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     cache-control: max-age=600\r\nage: {}\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    served_age.load(Ordering::SeqCst),
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        let timeout = Duration::from_secs(5);
        let fetcher = Fetcher {
            client: fetch::default_client(timeout).unwrap(),
            timeout,
            max_body: 1024 * 1024,
        };
        let hour = Duration::from_secs(3600);
        let store = Arc::new(KeyStore::new(
            KeySource::Fixed(url),
            fetcher,
            RefreshPolicy::default().max_stale(hour),
            Arc::new(crate::clock::SystemClock),
        ));
        let fresh = store.fetch_for(Need::Keys).unwrap().await;
        assert!(fresh.is_ok(), "{fresh:?}");
        let now = Instant::now();
        assert!(
            store
                .usable_snapshot(now + hour - Duration::from_secs(5))
                .is_some()
        );
        // Served 3,000 s past its lifetime: usable for what is left of the hour.
        age.store(600 + 3000, Ordering::SeqCst);
        let stale = store.fetch_for(Need::Refresh).unwrap().await;
        assert!(stale.is_ok(), "{stale:?}");
        let now = Instant::now();
        assert!(
            store
                .usable_snapshot(now + Duration::from_secs(590))
                .is_some()
        );
        assert!(
            store
                .usable_snapshot(now + Duration::from_secs(610))
                .is_none()
        );
        // Served stale so long that the hour leaves it exactly the minimum TTL (60 s):
        // still taken.
        age.store(600 + 3540, Ordering::SeqCst);
        let last = store.fetch_for(Need::Refresh).unwrap().await;
        assert!(last.is_ok(), "{last:?}");
        // A token verified with it is cached until a refresh is due, halfway through the
        // 60 s left (hits never look at the key set, so none would start the refresh).
        let kid = issuer.current_kid(SigningAlgorithm::RS256);
        let chosen = store
            .key_for(Some(&kid), SigningAlgorithm::RS256)
            .await
            .unwrap();
        let cached_for = store
            .fresh_until(&chosen)
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(
            cached_for <= Duration::from_secs(30) && cached_for > Duration::from_secs(20),
            "{cached_for:?}"
        );
        // One second more, and it would be due again before the minimum TTL: no keys from
        // it (nor from one served stale for longer than the hour); the set in use stays.
        age.store(600 + 3541, Ordering::SeqCst);
        let too_old = store.fetch_for(Need::Refresh).unwrap().await;
        assert_eq!(too_old.err(), Some(FetchError::ServedStale));
        assert!(store.usable_snapshot(Instant::now()).is_some());
        assert!(store.status().last_failure.is_some());
        cache.abort();
    }

    /// A key store for the test issuer's key set, with the default policy and `clock`.
    #[cfg(feature = "testing")]
    fn store_for(issuer: &crate::testing::TestIssuer, clock: impl Clock) -> Arc<KeyStore> {
        let timeout = Duration::from_secs(5);
        let fetcher = Fetcher {
            client: fetch::default_client(timeout).unwrap(),
            timeout,
            max_body: 1024 * 1024,
        };
        Arc::new(KeyStore::new(
            KeySource::Fixed(Url::parse(&issuer.jwks_uri()).unwrap()),
            fetcher,
            RefreshPolicy::default(),
            Arc::new(clock),
        ))
    }

    /// A fetch whose runtime shut down while it ran (a synchronous wrapper's runtime per
    /// call, a worker restarted) leaves no slot behind: the status no longer says
    /// fetching, and the next refresh starts instead of joining a fetch no one runs.
    #[cfg(feature = "testing")]
    #[test]
    fn a_fetch_dropped_with_its_runtime_leaves_no_slot() {
        use crate::testing::{JwksBehaviour, TestIssuer};
        let main = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let issuer = main.block_on(TestIssuer::start());
        // Every fetch waits at the gate until it opens.
        issuer.set_jwks_behaviour(JwksBehaviour::Gated);
        let store = store_for(&issuer, crate::clock::SystemClock);
        let doomed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        doomed.block_on(async {
            assert!(store.fetch_for(Need::Refresh).is_some());
        });
        assert!(store.status().fetching, "the fetch's task is alive");
        drop(doomed);
        assert!(
            !store.status().fetching,
            "its runtime is gone, and the slot with it"
        );
        let fetched = main.block_on(async {
            let fetch = store.fetch_for(Need::Refresh).expect("a new fetch starts");
            assert!(store.status().fetching);
            issuer.open_jwks_gate();
            fetch.await
        });
        assert!(fetched.is_ok(), "{fetched:?}");
        assert!(!store.status().fetching);
    }

    /// A background refresh whose task panics (in a hook it calls: here the clock) counts
    /// as a failed fetch although no request awaits it: the failure cooldown starts, and
    /// the next refresh waits for its end.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn a_refresh_that_panics_unawaited_starts_the_cooldown() {
        /// A clock that fails inside tasks (the fetch's), not in the test itself.
        #[derive(Debug)]
        struct PanicsInTasks;
        impl Clock for PanicsInTasks {
            fn now(&self) -> SystemTime {
                assert!(tokio::task::try_id().is_none(), "a clock with a bug");
                SystemTime::now()
            }
        }
        let issuer = crate::testing::TestIssuer::start().await;
        let store = store_for(&issuer, PanicsInTasks);
        // Started and left: no one awaits a background refresh.
        drop(store.fetch_for(Need::Refresh).expect("a refresh starts"));
        tokio::time::timeout(Duration::from_secs(30), async {
            while store.status().fetching {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the refresh task ends");
        assert!(store.status().last_failure.is_some(), "counted as failed");
        assert!(
            store.fetch_for(Need::Refresh).is_none(),
            "the cooldown holds the next refresh"
        );
    }

    #[test]
    fn ttl_clamps_max_age() {
        let policy = RefreshPolicy::default();
        assert_eq!(
            policy.ttl_for(None, Duration::ZERO),
            Duration::from_secs(600)
        );
        assert_eq!(
            policy.ttl_for(Some(Duration::ZERO), Duration::ZERO),
            Duration::from_secs(60)
        );
        assert_eq!(
            policy.ttl_for(Some(Duration::from_secs(120)), Duration::ZERO),
            Duration::from_secs(120)
        );
        assert_eq!(
            policy.ttl_for(Some(Duration::from_secs(10 * 86400)), Duration::ZERO),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn invalid_policies_are_config_errors() {
        let inverted =
            RefreshPolicy::default().ttl_bounds(Duration::from_secs(10), Duration::from_secs(5));
        assert!(inverted.validate().is_err());
        assert!(
            RefreshPolicy::default()
                .default_ttl(Duration::ZERO)
                .validate()
                .is_err()
        );
        assert!(RefreshPolicy::default().validate().is_ok());
        let short = Duration::from_millis(999);
        let one = Duration::from_secs(1);
        for (policy, field) in [
            (RefreshPolicy::default().default_ttl(short), "default_ttl"),
            (
                RefreshPolicy::default().ttl_bounds(Duration::ZERO, one),
                "ttl_bounds",
            ),
            (
                RefreshPolicy::default().unknown_kid_cooldown(Duration::ZERO),
                "unknown_kid_cooldown",
            ),
            (
                RefreshPolicy::default().failure_cooldown(short),
                "failure_cooldown",
            ),
        ] {
            assert_eq!(
                policy.validate().unwrap_err(),
                ConfigError::InvalidLimit { field }
            );
        }
        // Values meant in other units: refused above their ceilings, accepted at them.
        let hour = Duration::from_secs(3600);
        let week = Duration::from_secs(7 * 24 * 3600);
        let over = |d: Duration| d + Duration::from_millis(1);
        for (policy, field) in [
            (
                RefreshPolicy::default().default_ttl(over(week)),
                "default_ttl",
            ),
            (
                RefreshPolicy::default().ttl_bounds(one, over(week)),
                "ttl_bounds",
            ),
            (
                RefreshPolicy::default().max_stale(Duration::MAX),
                "max_stale",
            ),
            (
                RefreshPolicy::default().unknown_kid_cooldown(over(hour)),
                "unknown_kid_cooldown",
            ),
            (
                RefreshPolicy::default().failure_cooldown(Duration::from_secs(600_000)),
                "failure_cooldown",
            ),
        ] {
            assert_eq!(
                policy.validate().unwrap_err(),
                ConfigError::InvalidLimit { field }
            );
        }
        let at_the_ceilings = RefreshPolicy::default()
            .default_ttl(week)
            .ttl_bounds(one, week)
            .max_stale(week)
            .unknown_kid_cooldown(hour)
            .failure_cooldown(hour);
        assert!(at_the_ceilings.validate().is_ok());
        // Keys unusable at once: refused.
        for max_stale in [Duration::ZERO, short] {
            assert_eq!(
                RefreshPolicy::default()
                    .max_stale(max_stale)
                    .validate()
                    .unwrap_err(),
                ConfigError::InvalidLimit { field: "max_stale" }
            );
        }
        // A default TTL outside the bounds is held to them, as a `max-age` is.
        let bounded = || {
            RefreshPolicy::default().ttl_bounds(Duration::from_secs(900), Duration::from_secs(3600))
        };
        let long = bounded().default_ttl(Duration::from_secs(25 * 3600));
        assert!(long.validate().is_ok());
        assert_eq!(
            long.ttl_for(None, Duration::ZERO),
            Duration::from_secs(3600)
        );
        assert!(bounded().validate().is_ok());
        assert_eq!(
            bounded().ttl_for(None, Duration::ZERO),
            Duration::from_secs(900)
        );
        let tight = RefreshPolicy::default()
            .default_ttl(one)
            .ttl_bounds(one, one)
            .unknown_kid_cooldown(one)
            .failure_cooldown(one)
            .max_stale(one);
        assert!(tight.validate().is_ok());
    }
}
