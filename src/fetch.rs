//! Bounded HTTP GETs for metadata and key sets, and issuer discovery.
//!
//! Every fetch: `https` only (plain `http` to loopback hosts), no redirects, a timeout that
//! covers connecting and reading the whole body, and a body cap enforced while streaming
//! (a `Content-Length` header is never trusted).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http::header::{ACCEPT, CACHE_CONTROL};
use reqwest::{Client, Url};
use serde_json::{Map, Value};

use crate::json::{StrictJsonError, object_with_unique_members};

/// Why a fetch failed. It never contains response bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    InsecureUrl,
    /// The request was never sent: no connection could be made (refused, no route, a
    /// name that does not resolve, a failed TLS handshake), or the credentials to send
    /// it with could not be had.
    NotSent(String),
    /// The request was sent, and the exchange failed after that (a reset, a connection
    /// closed before the answer was complete).
    Transport(String),
    TimedOut,
    Redirected,
    Status(u16),
    TooLarge,
    /// A copy a cache in between served stale for so long that too little of the time keys
    /// may be used stale is left (less than the minimum TTL).
    ServedStale,
    NotJsonObject,
    /// A JSON object without the boolean `active` member every RFC 7662 introspection
    /// answer has (section 2.2).
    #[cfg(feature = "introspection")]
    NotIntrospectionAnswer,
    /// A JSON object that names some member twice (RFC 8725 section 3.1).
    DuplicateMember,
    IssuerMismatch,
    /// An OpenID Connect or RFC 8414 metadata document without the `issuer` member those
    /// specifications require.
    IssuerMissing,
    NoMetadata,
    InvalidJwksUri,
    KeySet(crate::jwks::KeySetError),
    TaskFailed,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InsecureUrl => f.write_str("refusing a non-https URL outside loopback"),
            Self::NotSent(reason) => write!(f, "request not sent: {reason}"),
            Self::Transport(reason) => write!(f, "request failed: {reason}"),
            Self::TimedOut => f.write_str("request timed out"),
            Self::Redirected => f.write_str("refusing to follow a redirect"),
            Self::Status(status) => write!(f, "unexpected HTTP status {status}"),
            Self::TooLarge => f.write_str("response body exceeds the size limit"),
            Self::ServedStale => f.write_str(
                "response is a cached copy served stale for so long that too little of the stale limit is left",
            ),
            Self::NotJsonObject => f.write_str("response is not a JSON object"),
            #[cfg(feature = "introspection")]
            Self::NotIntrospectionAnswer => {
                f.write_str("response is no introspection answer (no boolean `active`)")
            }
            Self::DuplicateMember => {
                f.write_str("response is a JSON object that names a member twice")
            }
            Self::IssuerMismatch => {
                f.write_str("discovery document names a different issuer than configured")
            }
            Self::IssuerMissing => f.write_str(
                "OpenID Connect or OAuth authorization server metadata without an issuer",
            ),
            Self::NoMetadata => f.write_str("no usable discovery document was found"),
            Self::InvalidJwksUri => f.write_str("the discovered jwks_uri is not a valid https URL"),
            Self::KeySet(error) => error.fmt(f),
            Self::TaskFailed => f.write_str("a fetch task ended abnormally"),
        }
    }
}

impl std::error::Error for FetchError {}

/// A fetched document and the freshness its server declared.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) body: Vec<u8>,
    /// `Cache-Control: max-age`, or zero for `no-cache`/`no-store`.
    pub(crate) max_age: Option<Duration>,
    /// How long a cache in between had kept serving the response after its freshness
    /// lifetime ended (its `Age` beyond the lifetime, RFC 9111 sections 4.2 and 4.2.3: a
    /// stale copy served while the origin is down, RFC 5861's `stale-if-error`); `None`
    /// when the response states no lifetime (its `Age` is then in `age`).
    pub(crate) stale_for: Option<Duration>,
    /// The response's `Age`: the largest readable one, zero without one. (An unreadable
    /// one makes the response stale for `max_age`, but says nothing of how long a cache
    /// served it stale.)
    pub(crate) age: Duration,
}

/// The HTTP side of key fetching: one client, one set of limits.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    pub(crate) client: Client,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
}

/// The client used when the application injects none: no redirects, bounded connect time,
/// and the proxies of the environment for every host but loopback ones.
///
/// # Errors
///
/// When the TLS backend cannot be initialised.
pub(crate) fn default_client(timeout: Duration) -> Result<Client, reqwest::Error> {
    client_with_proxies(timeout, &|name| std::env::var(name).ok())
}

/// [`default_client`] with the environment read through `env`.
fn client_with_proxies(
    timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Client, reqwest::Error> {
    builder_with_proxies(timeout, env).build()
}

/// The builder of [`client_with_proxies`], for tests that pin a name's address.
fn builder_with_proxies(
    timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
) -> reqwest::ClientBuilder {
    let mut builder = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Half the whole request's time: a connection that cannot be made (an address
        // that drops what is sent to it) is told from an answer that does not come, which
        // the introspection check counts otherwise (a request never sent says nothing
        // about its token).
        .connect_timeout(timeout / 2)
        .timeout(timeout)
        // `localhost` is the loopback addresses, not whatever a resolver answers for it
        // (RFC 6761 section 6.3): plain `http` is allowed to it because such traffic
        // never leaves the machine, and a host file without the name would send it to
        // the DNS (the search domain's `localhost.example`, say). Port 0: the URL's.
        .resolve_to_addrs(
            "localhost",
            &[
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
            ],
        )
        // No automatic system proxy: the environment's proxies come back below, each
        // with loopback hosts exempt.
        .no_proxy();
    for proxy in environment_proxies(env) {
        builder = builder.proxy(proxy);
    }
    builder
}

/// The proxies `HTTPS_PROXY`, `HTTP_PROXY` and `ALL_PROXY` name (either letter case; not
/// `HTTP_PROXY` in a CGI environment, where a request header can set it), with `NO_PROXY`
/// and every loopback host exempt. Plain `http` is allowed only to loopback hosts because
/// such traffic never leaves the machine; through a proxy it would, in clear text, and the
/// proxy would resolve `localhost` on its own side: keys, tokens and credentials would
/// come from, or go to, whoever stands there.
fn environment_proxies(env: &dyn Fn(&str) -> Option<String>) -> Vec<reqwest::Proxy> {
    let read = |upper: &str, lower: &str| {
        env(upper)
            .or_else(|| env(lower))
            .filter(|value| !value.trim().is_empty())
    };
    let exempt = format!(
        "{},localhost,127.0.0.0/8,::1",
        read("NO_PROXY", "no_proxy").unwrap_or_default()
    );
    let no_proxy = reqwest::NoProxy::from_string(&exempt);
    let mut proxies = Vec::new();
    let mut add = |proxy: reqwest::Result<reqwest::Proxy>| match proxy {
        Ok(proxy) => proxies.push(proxy.no_proxy(no_proxy.clone())),
        Err(_) => tracing::warn!("ignoring a proxy variable that is not a URL"),
    };
    if let Some(url) = read("HTTPS_PROXY", "https_proxy") {
        add(reqwest::Proxy::https(url));
    }
    if env("REQUEST_METHOD").is_none()
        && let Some(url) = read("HTTP_PROXY", "http_proxy")
    {
        add(reqwest::Proxy::http(url));
    }
    if let Some(url) = read("ALL_PROXY", "all_proxy") {
        add(reqwest::Proxy::all(url));
    }
    proxies
}

/// Whether a URL a fetched document names (a `jwks_uri`, an `introspection_endpoint`) may
/// be fetched: as [`is_allowed_url`], and without a fragment or user info, which a
/// configured URL may not have either (credentials in it would be sent along as Basic
/// authentication). A query is allowed (some issuers serve a key set at `...?appid=`).
pub(crate) fn is_allowed_discovered_url(url: &Url) -> bool {
    is_allowed_url(url)
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
}

/// Whether a URL named by a document fetched from `source` may be fetched: as
/// [`is_allowed_discovered_url`], and plain `http` only when `source` is plain `http` too
/// (a loopback issuer in development). A document served over TLS never sends the crate
/// to plain HTTP, not even on this machine, where any local process that holds the port
/// would answer (a key set served there would let it sign tokens).
pub(crate) fn is_allowed_url_named_by(url: &Url, source: &Url) -> bool {
    is_allowed_discovered_url(url) && (url.scheme() == "https" || source.scheme() == "http")
}

/// Whether `byte` may appear in an RFC 3986 URI: unreserved, reserved or `%`.
pub(crate) fn is_uri_character(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&byte)
}

/// Whether a URL may be fetched: `https`, or `http` to a loopback host.
pub(crate) fn is_allowed_url(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => false,
        },
        _ => false,
    }
}

impl Fetcher {
    /// GETs `url` as JSON within the limits.
    pub(crate) async fn get(
        &self,
        url: &Url,
        accept: &'static str,
        no_cache: bool,
    ) -> Result<Fetched, FetchError> {
        let mut request = self.client.get(url.clone()).header(ACCEPT, accept);
        if no_cache {
            request = request.header(CACHE_CONTROL, "no-cache");
        }
        self.send(url, request).await
    }

    /// POSTs a form (`application/x-www-form-urlencoded`, already encoded) within the
    /// limits, with an optional `Authorization` header value.
    #[cfg(feature = "introspection")]
    pub(crate) async fn post_form(
        &self,
        url: &Url,
        body: String,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<Fetched, FetchError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            // Not replayable: a client that follows redirects (an injected one may) stops
            // at a 307/308 instead of sending the token and the credentials on to the
            // redirect target. The length is known, so it goes with Content-Length.
            .body(reqwest::Body::wrap(body));
        if let Some(authorization) = authorization {
            request = request.header(http::header::AUTHORIZATION, authorization.clone());
        }
        self.send(url, request).await
    }

    /// Sends `request` (for `url`) and reads the answer within the limits.
    async fn send(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Fetched, FetchError> {
        if !is_allowed_url(url) {
            return Err(FetchError::InsecureUrl);
        }
        let request = request.timeout(self.timeout);
        match tokio::time::timeout(self.timeout, self.send_unbounded_in_time(url, request)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::TimedOut),
        }
    }

    async fn send_unbounded_in_time(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Fetched, FetchError> {
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        // An injected client may follow redirects; a response from anywhere else is refused.
        if status.is_redirection() || response.url() != url {
            return Err(FetchError::Redirected);
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > self.max_body as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let max_age = freshness_left(response.headers());
        let age = readable_age(response.headers());
        let stale_for = lifetime(response.headers()).map(|lifetime| age.saturating_sub(lifetime));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        // Every fetched document is JSON.
        crate::json::strip_byte_order_mark(&mut body);
        Ok(Fetched {
            body,
            max_age,
            stale_for,
            age,
        })
    }
}

fn transport_error(error: reqwest::Error) -> FetchError {
    // A connection that timed out is a connection not made, before a timeout.
    if error.is_connect() {
        FetchError::NotSent(error.without_url().to_string())
    } else if error.is_timeout() {
        FetchError::TimedOut
    } else if error.is_redirect() {
        FetchError::Redirected
    } else {
        // reqwest's messages name the URL and the cause, never the body.
        FetchError::Transport(error.without_url().to_string())
    }
}

/// The freshness lifetime a `Cache-Control` value grants: `max-age`, or zero for
/// `no-cache` and `no-store` (the caller clamps it to its minimum). Where the value is
/// unclear the response counts as stale (RFC 9111 section 4.2.1): a `max-age` that is not
/// a number gives zero, and of several `max-age` directives the shortest counts.
pub(crate) fn parse_max_age(value: &str) -> Option<Duration> {
    let mut max_age: Option<Duration> = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            // Digits only (`+60` is no delta-seconds); too large to hold is the largest.
            let this = delta_seconds(argument.trim_matches('"'))
                .map_or(Duration::ZERO, Duration::from_secs);
            max_age = Some(max_age.map_or(this, |earlier| earlier.min(this)));
        }
    }
    max_age
}

/// How long a response stays fresh from now: the `max-age` of all its `Cache-Control`
/// lines together, or without one its `Expires` less its `Date` (RFC 9111 section 4.2.1),
/// less its `Age` (section 4.2.3: a cache in between may have held it for most of its
/// lifetime already). `None` without a lifetime.
fn freshness_left(headers: &http::HeaderMap) -> Option<Duration> {
    Some(lifetime(headers)?.saturating_sub(response_age(headers)))
}

/// A response's freshness lifetime: the `max-age` of all its `Cache-Control` lines
/// together, or without one its `Expires` less its `Date` (RFC 9111 section 4.2.1).
/// `None` without a lifetime.
fn lifetime(headers: &http::HeaderMap) -> Option<Duration> {
    let cache_control: Vec<&str> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .map(|value| value.to_str().unwrap_or("max-age=0"))
        .collect();
    parse_max_age(&cache_control.join(",")).or_else(|| expires_lifetime(headers))
}

/// The largest readable `Age` of every line and list item, zero without one.
fn readable_age(headers: &http::HeaderMap) -> Duration {
    ages(headers)
        .flatten()
        .max()
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// A response's `Age` (RFC 9111 section 5.1): the largest of every line and list item; one
/// that is not digits, or too large to hold, makes the response as old as can be (section
/// 1.2.2). Zero without one.
fn response_age(headers: &http::HeaderMap) -> Duration {
    ages(headers)
        .map(|age| age.unwrap_or(u64::MAX))
        .max()
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// Every `Age` line and list item in seconds, `None` for one that is no delta-seconds.
fn ages(headers: &http::HeaderMap) -> impl Iterator<Item = Option<u64>> + '_ {
    headers
        .get_all(http::header::AGE)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("x").split(','))
        .map(|item| delta_seconds(item.trim()))
}

/// The lifetime `Expires` gives: its time less the response's `Date`, or less now without
/// a readable `Date` (RFC 9111 section 4.2.1). An `Expires` that is no HTTP date (`0`
/// say), or given twice, means already stale (section 5.3), as does one in the past.
/// `None` without `Expires`.
fn expires_lifetime(headers: &http::HeaderMap) -> Option<Duration> {
    let mut values = headers.get_all(http::header::EXPIRES).iter();
    let expires = values.next()?;
    let date = |value: &http::HeaderValue| {
        value
            .to_str()
            .ok()
            .and_then(|text| httpdate::parse_http_date(text.trim()).ok())
    };
    let (Some(expires), None) = (date(expires), values.next()) else {
        return Some(Duration::ZERO);
    };
    let sent = headers
        .get(http::header::DATE)
        .and_then(date)
        .unwrap_or_else(std::time::SystemTime::now);
    Some(expires.duration_since(sent).unwrap_or(Duration::ZERO))
}

/// RFC 9111 `delta-seconds`: digits only; a value too large to hold is the largest.
fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u64>().unwrap_or(u64::MAX))
}

/// Whether two issuer identifiers differ only by one final `/` (`https://as.example` and
/// `https://as.example/`): different issuers to the exact comparison, and the most common
/// misconfiguration (Auth0 writes the `/`, most others do not).
pub(crate) fn differs_only_by_final_slash(one: &str, other: &str) -> bool {
    one.len().abs_diff(other.len()) == 1
        && one.strip_suffix('/').unwrap_or(one) == other.strip_suffix('/').unwrap_or(other)
}

/// Whether a metadata document names an endpoint in `member` as the specifications require:
/// a string holding an absolute URL (SMART App Launch 2.x, RFC 8414 section 2). A
/// relative one (`"/introspect"`), `null` or another JSON type says nowhere: the search
/// goes on to the next document.
pub(crate) fn names_absolute_url(document: &Map<String, Value>, member: &str) -> bool {
    document
        .get(member)
        .and_then(Value::as_str)
        .is_some_and(|url| Url::parse(url).is_ok())
}

/// Finds the issuer's metadata: SMART configuration, then OpenID Connect discovery, then
/// RFC 8414 authorization-server metadata, returning the first document that `wanted`
/// accepts.
///
/// A document that answers but fails the issuer check stops the search: it is a
/// misconfiguration or an attack, not a reason to look elsewhere. The check:
///
/// - OpenID Connect and RFC 8414 metadata must name the configured issuer, exactly, as a
///   string (OpenID Connect Discovery sections 3 and 4.3, RFC 8414 sections 2 and 3.3):
///   another value, `null` or a non-string is [`FetchError::IssuerMismatch`], no `issuer`
///   at all is [`FetchError::IssuerMissing`].
/// - The SMART configuration carries `issuer` only with the `sso-openid-connect`
///   capability (SMART App Launch 2.x), so it may leave it out; when present it must be
///   the configured issuer as a string, else [`FetchError::IssuerMismatch`].
///
/// A location without a document (an HTTP error status, a redirect, which is never
/// followed, a body that is no JSON object or is larger than the limit, a connection the
/// server drops) or with an unwanted one moves on to the next location. A timeout ends the
/// search: each location would take as long, and the request waits. Every location is
/// asked with `Cache-Control: no-cache`: discovery runs at the start and when the keys
/// may have moved, and a cache in between must not answer with where they were.
pub(crate) async fn discover_metadata(
    fetcher: &Fetcher,
    issuer: &str,
    wanted: impl Fn(&Map<String, Value>) -> bool,
) -> Result<Map<String, Value>, FetchError> {
    let mut last_error = FetchError::NoMetadata;
    for (kind, candidate) in discovery_urls(issuer)? {
        let fetched = match fetcher.get(&candidate, "application/json", true).await {
            Ok(fetched) => fetched,
            // A fallback page larger than any metadata, or a location some front end
            // drops the connection for (a firewall reset): nothing here.
            Err(
                error @ (FetchError::TooLarge | FetchError::NotSent(_) | FetchError::Transport(_)),
            ) => {
                tracing::debug!(url = %candidate, %error, "no discovery document here");
                last_error = error;
                continue;
            }
            Err(FetchError::Status(status)) => {
                tracing::debug!(url = %candidate, status, "no discovery document here");
                last_error = FetchError::Status(status);
                continue;
            }
            // Servers that do not serve a location often answer it with a redirect to a
            // login page (Spring Authorization Server does): not followed, and no document
            // here either.
            Err(FetchError::Redirected) => {
                tracing::debug!(url = %candidate, "redirected: no discovery document here");
                last_error = FetchError::Redirected;
                continue;
            }
            Err(error) => return Err(error),
        };
        let document = match strict_object(&fetched.body) {
            Ok(document) => document,
            // An HTML fallback page or other text that is no JSON object: nothing here.
            Err(FetchError::NotJsonObject) => {
                tracing::debug!(url = %candidate, "not a JSON object: no discovery document here");
                last_error = FetchError::NotJsonObject;
                continue;
            }
            Err(error) => return Err(error),
        };
        if let Err(error) = check_issuer(&document, issuer, kind) {
            let named = document.get("issuer").and_then(Value::as_str);
            // A document's own text: bounded, and written escaped.
            let shown = named.map(|named| named.chars().take(200).collect::<String>());
            if named.is_some_and(|named| differs_only_by_final_slash(named, issuer)) {
                tracing::warn!(
                    url = %candidate,
                    configured = issuer,
                    named = ?shown,
                    "the discovery document names the configured issuer with or without a final \
                     '/': configure the issuer exactly as the authorization server writes it"
                );
            } else {
                tracing::warn!(
                    url = %candidate,
                    configured = issuer,
                    named = ?shown,
                    "the discovery document does not name the configured issuer"
                );
            }
            return Err(error);
        }
        if wanted(&document) {
            tracing::debug!(url = %candidate, "using discovery document");
            return Ok(document);
        }
        tracing::debug!(url = %candidate, "discovery document lacks what is needed");
        last_error = FetchError::NoMetadata;
    }
    Err(last_error)
}

/// Which specification a discovery location belongs to; it decides whether the
/// document's `issuer` member is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataKind {
    /// `/.well-known/smart-configuration` (SMART App Launch): `issuer` optional.
    Smart,
    /// `/.well-known/openid-configuration` (OpenID Connect Discovery): `issuer` required.
    OpenId,
    /// `/.well-known/oauth-authorization-server` (RFC 8414): `issuer` required.
    OAuthServer,
}

/// The issuer rule of [`discover_metadata`] for one document.
fn check_issuer(
    document: &Map<String, Value>,
    issuer: &str,
    kind: MetadataKind,
) -> Result<(), FetchError> {
    match document.get("issuer") {
        Some(Value::String(named)) if named == issuer => Ok(()),
        None if kind == MetadataKind::Smart => Ok(()),
        None => Err(FetchError::IssuerMissing),
        Some(_) => Err(FetchError::IssuerMismatch),
    }
}

/// Parses a fetched document as a JSON object with unique member names: a document that
/// states a member twice may be read one way here and another way elsewhere, so it is
/// refused whole.
pub(crate) fn strict_object(body: &[u8]) -> Result<Map<String, Value>, FetchError> {
    object_with_unique_members(body).map_err(|error| match error {
        StrictJsonError::DuplicateMember => FetchError::DuplicateMember,
        StrictJsonError::NotAnObject => FetchError::NotJsonObject,
    })
}

/// Finds the issuer's `jwks_uri` (see [`discover_metadata`]); it must be `https`, or
/// loopback `http` for a loopback `http` issuer. A document whose `jwks_uri` is no absolute URL (a legacy SMART
/// configuration's relative `/jwks`) does not say where the keys are: discovery moves on
/// to the next location, as for a document without one.
pub(crate) async fn discover_jwks_uri(fetcher: &Fetcher, issuer: &str) -> Result<Url, FetchError> {
    let document =
        discover_metadata(fetcher, issuer, |doc| names_absolute_url(doc, "jwks_uri")).await?;
    let uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or(FetchError::InvalidJwksUri)?;
    let uri = Url::parse(uri).map_err(|_| FetchError::InvalidJwksUri)?;
    let issuer_url = Url::parse(issuer).map_err(|_| FetchError::InsecureUrl)?;
    if !is_allowed_url_named_by(&uri, &issuer_url) {
        return Err(FetchError::InvalidJwksUri);
    }
    Ok(uri)
}

/// The three discovery locations for an issuer, in the order they are tried, each with
/// the specification it belongs to.
pub(crate) fn discovery_urls(issuer: &str) -> Result<[(MetadataKind, Url); 3], FetchError> {
    let trimmed = issuer.trim_end_matches('/');
    let parse = |s: String| Url::parse(&s).map_err(|_| FetchError::InsecureUrl);
    let issuer_url = parse(trimmed.to_owned())?;
    let path = issuer_url.path().trim_end_matches('/');
    let origin = issuer_url.origin().ascii_serialization();
    Ok([
        (
            MetadataKind::Smart,
            parse(format!("{trimmed}/.well-known/smart-configuration"))?,
        ),
        (
            MetadataKind::OpenId,
            parse(format!("{trimmed}/.well-known/openid-configuration"))?,
        ),
        (
            MetadataKind::OAuthServer,
            parse(format!(
                "{origin}/.well-known/oauth-authorization-server{path}"
            ))?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn final_slash_differences() {
        assert!(differs_only_by_final_slash(
            "https://as.example",
            "https://as.example/"
        ));
        assert!(differs_only_by_final_slash(
            "https://as.example/",
            "https://as.example"
        ));
        for (one, other) in [
            ("https://as.example", "https://as.example"),
            ("https://as.example/", "https://as.example/"),
            ("https://as.example", "https://as.example//"),
            ("https://as.example/a", "https://as.example/b/"),
            ("https://as.example", "https://as.examplex"),
            ("", "/"),
        ] {
            assert_eq!(
                differs_only_by_final_slash(one, other),
                one.is_empty(),
                "{one} {other}"
            );
        }
    }
    /// A TCP server on 127.0.0.1 that answers every connection with `answer` and counts
    /// the connections; its address.
    async fn canned_server(answer: &'static [u8]) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let _ = stream.write_all(answer).await;
                });
            }
        });
        (address, connections)
    }

    /// How a failed exchange is named: a connection never made is `NotSent` (the query,
    /// with its token, never left), one closed after the query was read is `Transport`,
    /// and no answer in time is `TimedOut`.
    #[tokio::test]
    async fn failures_before_and_after_the_query_are_told_apart() {
        let fetcher = |timeout| Fetcher {
            client: client_with_proxies(timeout, &|_| None).unwrap(),
            timeout,
            max_body: 1024,
        };
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let url = |address: &str| Url::parse(&format!("http://{address}/introspect")).unwrap();
        let five = fetcher(Duration::from_secs(5));
        let refused = five
            .get(&url(&closed.to_string()), "application/json", false)
            .await;
        assert!(
            matches!(refused, Err(FetchError::NotSent(_))),
            "{refused:?}"
        );
        // Read, then closed without an answer.
        let (hung_up, _) = canned_server(b"").await;
        let dropped = five.get(&url(&hung_up), "application/json", false).await;
        assert!(
            matches!(dropped, Err(FetchError::Transport(_))),
            "{dropped:?}"
        );
        // Accepted, read, never answered.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut streams = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                streams.push(stream);
            }
        });
        let slow = fetcher(Duration::from_millis(300));
        let unanswered = slow.get(&url(&address), "application/json", false).await;
        assert_eq!(unanswered.unwrap_err(), FetchError::TimedOut);
        held.abort();
    }

    /// With proxies in the environment, loopback hosts are reached directly (plain `http`
    /// must not leave the machine), every other host through the proxy.
    #[tokio::test]
    async fn loopback_never_goes_through_a_proxy() {
        use std::sync::atomic::Ordering;
        let (proxy, proxied) =
            canned_server(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await;
        let (origin, direct) =
            canned_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        let proxy_url = format!("http://{proxy}");
        let env = |name: &str| {
            matches!(name, "HTTP_PROXY" | "https_proxy" | "ALL_PROXY").then(|| proxy_url.clone())
        };
        let port = origin.rsplit(':').next().unwrap();
        // `localhost` by name is the point (it is exempt from the proxy by name); the
        // builder resolves it to the loopback addresses itself, with the URL's port.
        let client = builder_with_proxies(Duration::from_secs(5), &env)
            .build()
            .unwrap();
        for url in [
            format!("http://{origin}/jwks"),
            format!("http://localhost:{port}/jwks"),
            format!("http://127.0.0.1:{port}/.well-known/smart-configuration"),
        ] {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
        }
        assert_eq!(direct.load(Ordering::SeqCst), 3);
        assert_eq!(proxied.load(Ordering::SeqCst), 0);
        // Another host goes to the proxy, which answers itself (no name is resolved here).
        let response = client
            .get("http://fhir.example.org/x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502);
        assert_eq!(proxied.load(Ordering::SeqCst), 1);
    }

    /// Which variables make proxies: both letter cases, `HTTP_PROXY` not under CGI, empty
    /// values and non-URLs ignored.
    #[test]
    fn proxies_from_the_environment() {
        let count = |pairs: &[(&str, &str)]| {
            let env = |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, value)| (*value).to_owned())
            };
            environment_proxies(&env).len()
        };
        assert_eq!(count(&[]), 0);
        assert_eq!(count(&[("HTTPS_PROXY", "http://p:1")]), 1);
        assert_eq!(count(&[("https_proxy", "http://p:1")]), 1);
        assert_eq!(
            count(&[("http_proxy", "http://p:1"), ("ALL_PROXY", "http://p:2")]),
            2
        );
        assert_eq!(
            count(&[("HTTP_PROXY", "http://p:1"), ("REQUEST_METHOD", "GET")]),
            0
        );
        assert_eq!(count(&[("HTTPS_PROXY", " ")]), 0);
        assert_eq!(count(&[("HTTPS_PROXY", "not a url")]), 0);
    }

    #[test]
    fn loopback_http_only() {
        let allowed = [
            "https://as.example/x",
            "http://127.0.0.1:8080/",
            "http://127.5.0.1/",
            "http://[::1]:9/",
            "http://LOCALHOST/",
        ];
        let refused = [
            "http://as.example/",
            "http://10.0.0.1/",
            "http://[::2]/",
            "ftp://as.example/",
            "file:///etc/passwd",
            "http://localhost.evil.example/",
        ];
        for url in allowed {
            assert!(is_allowed_url(&Url::parse(url).unwrap()), "{url}");
        }
        for url in refused {
            assert!(!is_allowed_url(&Url::parse(url).unwrap()), "{url}");
        }
    }

    /// A document served over TLS never names a plain-HTTP URL, loopback included: any
    /// local process holding the port would answer. A loopback development issuer may.
    #[test]
    fn urls_named_by_a_document_keep_its_transport() {
        let rows = [
            // (document's URL, named URL, allowed)
            ("https://as.example/", "https://keys.example/jwks", true),
            ("https://as.example/", "http://127.0.0.1:8080/jwks", false),
            ("https://as.example/", "http://localhost/jwks", false),
            ("https://as.example/", "http://LOCALHOST:1/jwks", false),
            ("https://as.example/", "http://[::1]/jwks", false),
            (
                "https://127.0.0.1:8443/",
                "http://127.0.0.1:8080/jwks",
                false,
            ),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/jwks", true),
            ("http://localhost:8080/", "http://[::1]:9/jwks", true),
            ("http://127.0.0.1:8080/", "https://keys.example/jwks", true),
            // The discovered-URL rules still hold.
            ("http://127.0.0.1:8080/", "http://as.example/jwks", false),
            (
                "https://as.example/",
                "https://user@keys.example/jwks",
                false,
            ),
            ("https://as.example/", "https://keys.example/jwks#k", false),
        ];
        for (source, named, allowed) in rows {
            let (source, named_url) = (Url::parse(source).unwrap(), Url::parse(named).unwrap());
            assert_eq!(
                is_allowed_url_named_by(&named_url, &source),
                allowed,
                "{named} named by {source}"
            );
        }
    }

    #[test]
    fn max_age_parsing() {
        let rows = [
            ("max-age=300", Some(300)),
            ("public, max-age=60, must-revalidate", Some(60)),
            ("MAX-AGE=\"5\"", Some(5)),
            ("no-cache", Some(0)),
            ("max-age=100, no-store", Some(0)),
            // Unclear lifetimes count as stale; the shortest of several counts.
            ("max-age=abc", Some(0)),
            ("max-age=-1", Some(0)),
            ("max-age=", Some(0)),
            ("max-age=5, max-age=3600", Some(5)),
            ("max-age=3600, max-age=5", Some(5)),
            ("max-age=99999999999999999999999", Some(u64::MAX)),
            ("max-age=+60", Some(0)),
            ("public", None),
            ("", None),
        ];
        for (value, expected) in rows {
            assert_eq!(
                parse_max_age(value),
                expected.map(Duration::from_secs),
                "{value}"
            );
        }
    }

    /// All `Cache-Control` lines count together, and the `Age` a cache in between reports is
    /// taken off the lifetime.
    #[test]
    fn freshness_reads_every_line_and_the_age() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(value).unwrap(),
                );
            }
            map
        };
        type Row<'a> = (&'a [(&'a str, &'a str)], Option<u64>);
        const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
        let rows: [Row<'_>; 24] = [
            // Without `max-age`, `Expires` less `Date` (RFC 9111 section 4.2.1), in each
            // of the three HTTP date formats, less the `Age`.
            (
                &[("date", DATE), ("expires", "Sun, 06 Nov 1994 08:59:37 GMT")],
                Some(600),
            ),
            (
                &[
                    ("date", DATE),
                    ("expires", "Sunday, 06-Nov-94 08:59:37 GMT"),
                ],
                Some(600),
            ),
            (
                &[("date", DATE), ("expires", "Sun Nov  6 08:59:37 1994")],
                Some(600),
            ),
            (
                &[
                    ("date", DATE),
                    ("expires", "Sun, 06 Nov 1994 08:59:37 GMT"),
                    ("age", "100"),
                ],
                Some(500),
            ),
            // `max-age` wins over `Expires`; `no-cache` too.
            (
                &[
                    ("date", DATE),
                    ("expires", "Sun, 06 Nov 1994 08:59:37 GMT"),
                    ("cache-control", "max-age=60"),
                ],
                Some(60),
            ),
            (
                &[
                    ("date", DATE),
                    ("expires", "Sun, 06 Nov 1994 08:59:37 GMT"),
                    ("cache-control", "no-cache"),
                ],
                Some(0),
            ),
            // Stale: `0`, any other invalid date, one in the past, two `Expires`.
            (&[("date", DATE), ("expires", "0")], Some(0)),
            (&[("expires", "-1")], Some(0)),
            (&[("expires", "tomorrow")], Some(0)),
            (
                &[("date", DATE), ("expires", "Sun, 06 Nov 1994 08:39:37 GMT")],
                Some(0),
            ),
            (
                &[
                    ("date", DATE),
                    ("expires", "Sun, 06 Nov 1994 08:59:37 GMT"),
                    ("expires", "Sun, 06 Nov 1994 08:59:37 GMT"),
                ],
                Some(0),
            ),
            // An `Expires` in the past without `Date` is stale against now.
            (&[("expires", DATE)], Some(0)),
            (&[], None),
            (&[("cache-control", "max-age=600")], Some(600)),
            (
                &[("cache-control", "max-age=600"), ("age", "100")],
                Some(500),
            ),
            (
                &[("cache-control", "max-age=21600"), ("age", "21000")],
                Some(600),
            ),
            (
                &[("cache-control", "max-age=600"), ("age", "9999")],
                Some(0),
            ),
            // An unreadable or huge `Age` makes it stale; the largest of several counts.
            (&[("cache-control", "max-age=600"), ("age", "x")], Some(0)),
            (&[("cache-control", "max-age=600"), ("age", "+5")], Some(0)),
            (
                &[
                    ("cache-control", "max-age=86400"),
                    ("age", "99999999999999999999"),
                ],
                Some(0),
            ),
            (
                &[
                    ("cache-control", "max-age=600"),
                    ("age", "0"),
                    ("age", "500"),
                ],
                Some(100),
            ),
            (
                &[("cache-control", "max-age=600"), ("age", "10, 300")],
                Some(300),
            ),
            (
                &[("cache-control", "public"), ("cache-control", "max-age=60")],
                Some(60),
            ),
            (
                &[
                    ("cache-control", "max-age=3600"),
                    ("cache-control", "no-cache"),
                ],
                Some(0),
            ),
        ];
        for (pairs, expected) in rows {
            assert_eq!(
                freshness_left(&headers(pairs)),
                expected.map(Duration::from_secs),
                "{pairs:?}"
            );
        }
    }

    /// How long a cache in between had served a response stale: its `Age` beyond its
    /// lifetime, when it states one (the `Age` alone is kept for when it does not).
    #[test]
    fn served_stale_is_the_age_beyond_the_lifetime() {
        /// Response headers, how long served stale (`None`: no lifetime), the `Age`.
        type Row = (&'static [(&'static str, &'static str)], Option<u64>, u64);
        let rows: [Row; 5] = [
            (
                &[("cache-control", "max-age=600"), ("age", "100")],
                Some(0),
                100,
            ),
            (
                &[("cache-control", "max-age=600"), ("age", "5000")],
                Some(4400),
                5000,
            ),
            (
                &[("cache-control", "max-age=600, stale-if-error=604800")],
                Some(0),
                0,
            ),
            (&[("age", "259200")], None, 259_200),
            // An unreadable `Age` tells nothing of how long a copy was served stale.
            (
                &[("cache-control", "max-age=600"), ("age", "x, 5")],
                Some(0),
                5,
            ),
        ];
        for (pairs, stale_for, age) in rows {
            let mut headers = http::HeaderMap::new();
            for (name, value) in pairs {
                headers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(value).unwrap(),
                );
            }
            let age = Duration::from_secs(age);
            assert_eq!(readable_age(&headers), age, "{pairs:?}");
            assert_eq!(
                lifetime(&headers).map(|lifetime| age.saturating_sub(lifetime)),
                stale_for.map(Duration::from_secs),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn issuer_rule_by_document_kind() {
        let issuer = "https://as.example/tenant";
        let document = |text: &str| strict_object(text.as_bytes()).unwrap();
        let mismatch = || {
            [
                Err(FetchError::IssuerMismatch),
                Err(FetchError::IssuerMismatch),
                Err(FetchError::IssuerMismatch),
            ]
        };
        let rows = [
            (
                r#"{"issuer":"https://as.example/tenant"}"#,
                [Ok(()), Ok(()), Ok(())],
            ),
            (
                r#"{}"#,
                [
                    Ok(()),
                    Err(FetchError::IssuerMissing),
                    Err(FetchError::IssuerMissing),
                ],
            ),
            (r#"{"issuer":null}"#, mismatch()),
            (r#"{"issuer":7}"#, mismatch()),
            (r#"{"issuer":["https://as.example/tenant"]}"#, mismatch()),
            (r#"{"issuer":""}"#, mismatch()),
            (r#"{"issuer":"https://as.example/tenant/"}"#, mismatch()),
            (r#"{"issuer":"https://AS.example/tenant"}"#, mismatch()),
        ];
        let kinds = [
            MetadataKind::Smart,
            MetadataKind::OpenId,
            MetadataKind::OAuthServer,
        ];
        for (text, expected) in rows {
            for (kind, expected) in kinds.into_iter().zip(expected) {
                assert_eq!(
                    check_issuer(&document(text), issuer, kind),
                    expected,
                    "{text} {kind:?}"
                );
            }
        }
    }

    #[test]
    fn discovery_locations() {
        let located = discovery_urls("https://as.example/tenant/1/").unwrap();
        let kinds = located.clone().map(|(kind, _)| kind);
        assert_eq!(
            kinds,
            [
                MetadataKind::Smart,
                MetadataKind::OpenId,
                MetadataKind::OAuthServer
            ]
        );
        let urls = located.map(|(_, url)| url);
        assert_eq!(
            urls[0].as_str(),
            "https://as.example/tenant/1/.well-known/smart-configuration"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://as.example/tenant/1/.well-known/openid-configuration"
        );
        assert_eq!(
            urls[2].as_str(),
            "https://as.example/.well-known/oauth-authorization-server/tenant/1"
        );
        let urls = discovery_urls("https://as.example").unwrap();
        assert_eq!(
            urls[2].1.as_str(),
            "https://as.example/.well-known/oauth-authorization-server"
        );
    }
}
