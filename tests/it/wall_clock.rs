//! Wall-clock steps: the injectable `Clock` (token times) moves back or forward on its
//! own, while cooldowns and key-set ages run on tokio's monotonic clock, driven here with
//! `tokio::time::pause`/`advance` (no sleeps).

use std::time::{Duration, Instant, UNIX_EPOCH};

use reqwest::StatusCode;
use smart_auth::testing::JwksBehaviour;
use smart_auth::{Clock as _, ManualClock, RefreshPolicy};

use crate::support::{App, app, assert_retry_after};

const HOURS: Duration = Duration::from_secs(5 * 3600);

/// Moves tokio's clock, the one every cooldown and cache age runs on, forward by `by`
/// (the wall clock stays). Only between requests: nothing may be waiting on I/O.
pub async fn advance_monotonic(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

/// Lets `by` pass on both clocks, as time passes on a host whose clock is not set.
pub async fn pass_time(clock: &ManualClock, by: Duration) {
    clock.advance(by);
    advance_monotonic(by).await;
}

async fn status(app: &App, token: &str) -> StatusCode {
    app.get_with_token(token).await.status
}

/// A token no earlier request carried (so the token cache cannot answer for it).
fn fresh_token(app: &App, n: u32) -> String {
    app.issuer.token().claim("jti", format!("token-{n}")).sign()
}

/// Lets a background refresh run to its end (30 s at most).
pub async fn settle(app: &App) {
    let verifier = app.layer.issuers().iter().next().unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while verifier.key_cache_status().fetching {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the refresh did not end");
}

// The cooldown is an hour here (the longest allowed), so the real time a loaded runner
// takes between steps cannot end it early: only `advance_monotonic` does.
#[tokio::test]
async fn unknown_kid_cooldown_ends_on_time_whatever_the_wall_clock_does() {
    // Keys fresh for six hours: no refresh for their age inside the cooldown.
    let policy = RefreshPolicy::default()
        .unknown_kid_cooldown(Duration::from_secs(3600))
        .default_ttl(Duration::from_secs(6 * 3600))
        .ttl_bounds(Duration::from_secs(60), Duration::from_secs(6 * 3600));
    let app = app(|b| b.refresh_policy(policy)).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, &app.issuer.token().kid("unknown-0").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.issuer.jwks_fetches(),
        2,
        "the first unknown kid refetches"
    );
    // The wall clock jumps forward two hours: the one-hour cooldown has not passed.
    app.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(
        status(&app, &app.issuer.token().kid("unknown-1").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.issuer.jwks_fetches(), 2, "no early refetch");
    // The wall clock is set back five hours: the cooldown still ends an hour after it
    // began.
    app.clock.rewind(HOURS);
    advance_monotonic(Duration::from_secs(50 * 60)).await;
    assert_eq!(
        status(&app, &app.issuer.token().kid("unknown-2").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.issuer.jwks_fetches(), 2, "50 min: still cooling down");
    advance_monotonic(Duration::from_secs(10 * 60)).await;
    assert_eq!(
        status(&app, &app.issuer.token().kid("unknown-3").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.issuer.jwks_fetches(), 3, "1 h: one more refetch");
}

// The keys live six hours here, so the real time a loaded runner takes between steps
// cannot make them due: only `advance_monotonic` does.
#[tokio::test]
async fn key_set_ttl_runs_on_the_monotonic_clock() {
    const TTL: Duration = Duration::from_secs(6 * 3600);
    let policy = RefreshPolicy::default()
        .default_ttl(TTL)
        .ttl_bounds(Duration::from_secs(60), TTL);
    let app = app(|b| b.refresh_policy(policy)).await;
    assert_eq!(status(&app, &fresh_token(&app, 0)).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 1);
    // A wall clock set forward past the 6 h TTL does not make the keys due...
    app.clock.advance(TTL + Duration::from_secs(3600));
    assert_eq!(status(&app, &fresh_token(&app, 1)).await, StatusCode::OK);
    settle(&app).await;
    assert_eq!(app.issuer.jwks_fetches(), 1, "no refresh from a wall jump");
    // ...and one set back does not keep them fresh: 6 h after the fetch they are due.
    app.clock.rewind(HOURS);
    advance_monotonic(Duration::from_secs(5 * 3600)).await;
    assert_eq!(status(&app, &fresh_token(&app, 2)).await, StatusCode::OK);
    settle(&app).await;
    assert_eq!(app.issuer.jwks_fetches(), 1, "5 h: still fresh");
    advance_monotonic(Duration::from_secs(3600)).await;
    assert_eq!(status(&app, &fresh_token(&app, 3)).await, StatusCode::OK);
    settle(&app).await;
    assert_eq!(app.issuer.jwks_fetches(), 2, "6 h: refreshed");
}

// The failure cooldown is an hour here (the longest allowed), so the real time a loaded
// runner takes between steps cannot end it early; `Retry-After` is checked allowing for
// that real time (`assert_retry_after`).
#[tokio::test]
async fn failure_cooldown_and_max_stale_run_on_the_monotonic_clock() {
    let policy = RefreshPolicy::default()
        .max_stale(Duration::from_secs(3600))
        .failure_cooldown(Duration::from_secs(3600));
    let app = app(|b| b.refresh_policy(policy)).await;
    assert_eq!(status(&app, &fresh_token(&app, 0)).await, StatusCode::OK);
    app.issuer.set_jwks_behaviour(JwksBehaviour::Status(500));
    // Max stale (1 h here) counts from the fetch on the monotonic clock: a wall clock set
    // back five hours does not keep the old keys usable past it.
    app.clock.rewind(HOURS);
    advance_monotonic(Duration::from_secs(3601)).await;
    let failed = Instant::now();
    let answer = app.get_with_token(&fresh_token(&app, 1)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.issue_code(), "transient");
    // `Retry-After` is the failure cooldown just started.
    assert_retry_after(answer.retry_after.as_deref(), 3600, failed, "failed");
    let fetches = app.issuer.jwks_fetches();
    // The failure cooldown is not stretched by another step back, nor ended early by a
    // step forward.
    app.issuer.set_jwks_behaviour(JwksBehaviour::Normal);
    app.clock.rewind(HOURS);
    advance_monotonic(Duration::from_secs(50 * 60)).await;
    // What is left of the cooldown, counted on the monotonic clock.
    let answer = app.get_with_token(&fresh_token(&app, 2)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_retry_after(answer.retry_after.as_deref(), 600, failed, "step back");
    app.clock.advance(Duration::from_secs(3 * 3600));
    let answer = app.get_with_token(&fresh_token(&app, 3)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_retry_after(answer.retry_after.as_deref(), 600, failed, "step forward");
    assert_eq!(
        app.issuer.jwks_fetches(),
        fetches,
        "no fetch inside the cooldown"
    );
    advance_monotonic(Duration::from_secs(10 * 60)).await;
    assert_eq!(status(&app, &fresh_token(&app, 4)).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), fetches + 1);
}

// The token cache ends its entries on the configured (wall) clock. One set back must not
// keep an entry in use past what the monotonic clock allows its key set: the keys are
// due after ten minutes here, and the issuer has withdrawn the token's key by then.
#[tokio::test]
async fn a_clock_set_back_does_not_keep_a_cached_token_past_its_key_set() {
    const TTL: Duration = Duration::from_secs(600);
    let policy = RefreshPolicy::default()
        .default_ttl(TTL)
        .ttl_bounds(Duration::from_secs(60), TTL);
    let app = app(|b| b.refresh_policy(policy)).await;
    // Issued two hours ago, for four hours: a wall clock an hour back is inside its
    // window, so only when the entry was stored tells the step.
    let now = app
        .clock
        .now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let issued = now - 2 * 3600;
    let token = app
        .issuer
        .token()
        .claim("iat", issued)
        .claim("exp", issued + 4 * 3600)
        .sign();
    for _ in 0..3 {
        assert_eq!(status(&app, &token).await, StatusCode::OK);
    }
    assert_eq!(app.issuer.jwks_fetches(), 1);
    app.issuer.rotate_keys();
    app.clock.rewind(Duration::from_secs(3600));
    advance_monotonic(TTL + Duration::from_secs(1)).await;
    // The keys are due: the token is verified afresh, which starts their refresh.
    assert_eq!(
        status(&app, &token).await,
        StatusCode::OK,
        "stale keys serve"
    );
    settle(&app).await;
    assert_eq!(app.issuer.jwks_fetches(), 2, "the due keys were refreshed");
    assert_eq!(
        status(&app, &token).await,
        StatusCode::UNAUTHORIZED,
        "its key was withdrawn"
    );
}
