//! Wall-clock steps: the injectable `Clock` (token times) moves back or forward on its
//! own, while cooldowns and key-set ages run on tokio's monotonic clock, driven here with
//! `tokio::time::pause`/`advance` (no sleeps).

use std::time::Duration;

use reqwest::StatusCode;
use smart_auth::testing::JwksBehaviour;
use smart_auth::{ManualClock, RefreshPolicy};

use crate::support::{App, app};

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

/// Lets a background refresh run to its end.
pub async fn settle(app: &App) {
    let verifier = app.layer.issuers().iter().next().unwrap();
    for _ in 0..100_000 {
        if !verifier.key_cache_status().fetching {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the refresh did not end");
}

#[tokio::test]
async fn unknown_kid_cooldown_ends_on_time_whatever_the_wall_clock_does() {
    let app = app(|b| b).await;
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
    // The wall clock jumps forward an hour: the 30 s cooldown has not passed.
    app.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        status(&app, &app.issuer.token().kid("unknown-1").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.issuer.jwks_fetches(), 2, "no early refetch");
    // The wall clock is set back five hours: the cooldown still ends 30 s after it began.
    app.clock.rewind(HOURS);
    advance_monotonic(Duration::from_secs(25)).await;
    assert_eq!(
        status(&app, &app.issuer.token().kid("unknown-2").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.issuer.jwks_fetches(), 2, "25 s: still cooling down");
    advance_monotonic(Duration::from_secs(5)).await;
    assert_eq!(
        status(&app, &app.issuer.token().kid("unknown-3").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.issuer.jwks_fetches(), 3, "30 s: one more refetch");
}

#[tokio::test]
async fn key_set_ttl_runs_on_the_monotonic_clock() {
    let app = app(|b| b).await;
    assert_eq!(status(&app, &fresh_token(&app, 0)).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 1);
    // A wall clock set forward past the 10 min TTL does not make the keys due...
    app.clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(status(&app, &fresh_token(&app, 1)).await, StatusCode::OK);
    settle(&app).await;
    assert_eq!(app.issuer.jwks_fetches(), 1, "no refresh from a wall jump");
    // ...and one set back does not keep them fresh: 10 min after the fetch they are due.
    app.clock.rewind(HOURS);
    advance_monotonic(Duration::from_secs(590)).await;
    assert_eq!(status(&app, &fresh_token(&app, 2)).await, StatusCode::OK);
    settle(&app).await;
    assert_eq!(app.issuer.jwks_fetches(), 1, "9 min 50 s: still fresh");
    advance_monotonic(Duration::from_secs(10)).await;
    assert_eq!(status(&app, &fresh_token(&app, 3)).await, StatusCode::OK);
    settle(&app).await;
    assert_eq!(app.issuer.jwks_fetches(), 2, "10 min: refreshed");
}

#[tokio::test]
async fn failure_cooldown_and_max_stale_run_on_the_monotonic_clock() {
    let policy = RefreshPolicy::default()
        .max_stale(Duration::from_secs(3600))
        .failure_cooldown(Duration::from_secs(60));
    let app = app(|b| b.refresh_policy(policy)).await;
    assert_eq!(status(&app, &fresh_token(&app, 0)).await, StatusCode::OK);
    app.issuer.set_jwks_behaviour(JwksBehaviour::Status(500));
    // Max stale (1 h here) counts from the fetch on the monotonic clock: a wall clock set
    // back five hours does not keep the old keys usable past it.
    app.clock.rewind(HOURS);
    advance_monotonic(Duration::from_secs(3601)).await;
    let answer = app.get_with_token(&fresh_token(&app, 1)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.issue_code(), "transient");
    // `Retry-After` is the failure cooldown just started.
    assert_eq!(answer.retry_after.as_deref(), Some("60"));
    let fetches = app.issuer.jwks_fetches();
    // The failure cooldown (60 s here) is not stretched by another step back, nor ended
    // early by a step forward.
    app.issuer.set_jwks_behaviour(JwksBehaviour::Normal);
    app.clock.rewind(HOURS);
    advance_monotonic(Duration::from_secs(50)).await;
    // What is left of the cooldown, counted on the monotonic clock.
    let answer = app.get_with_token(&fresh_token(&app, 2)).await;
    assert_eq!(
        (answer.status, answer.retry_after.as_deref()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("10"))
    );
    app.clock.advance(Duration::from_secs(3600));
    let answer = app.get_with_token(&fresh_token(&app, 3)).await;
    assert_eq!(
        (answer.status, answer.retry_after.as_deref()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("10"))
    );
    assert_eq!(
        app.issuer.jwks_fetches(),
        fetches,
        "no fetch inside the cooldown"
    );
    advance_monotonic(Duration::from_secs(10)).await;
    assert_eq!(status(&app, &fresh_token(&app, 4)).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), fetches + 1);
}
