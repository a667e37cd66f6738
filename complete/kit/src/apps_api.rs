//! The status API of steps 12 on, guarded by a token: what an operator
//! (or a script) asks the proxy about its apps. Kit, not lesson:
//!
//! - `GET /_proxy/apps`: every app as JSON (name, state, since, last
//!   request, requests, linked apps, pid, last error);
//! - `POST /_proxy/apps/NAME/start` and `/stop`: [`read`] says which app
//!   to start or stop, the lesson does it (step 12 wakes it as a request
//!   would), [`describe`] says how it went.
//!
//! Only with a token configured, only on hosts outside the apps' domain
//! (an app must not reach the proxy's controls through its name), and only
//! with `Authorization: Bearer TOKEN`, compared in constant time: how long
//! a wrong guess takes says nothing of how close it was.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use workshop::body::{Body, full, text};

use crate::apps::{App, Apps, State};

/// The paths this API answers under.
pub const PREFIX: &str = "/_proxy/";

/// What a request to the API asks.
pub enum Asked {
    /// Answered already (the list, a 401, a 404…).
    Answer(Response<Body>),
    Start(Arc<App>),
    Stop(Arc<App>),
}

/// Reads a request under [`PREFIX`].
pub fn read<B>(apps: &Apps, token: &str, request: &Request<B>) -> Asked {
    if !authorized(request, token) {
        let mut response = text(
            StatusCode::UNAUTHORIZED,
            "401 Unauthorized: this API needs `Authorization: Bearer TOKEN` (the proxy's --admin-token)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Asked::Answer(response);
    }
    let path = request.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let answer = match (request.method(), segments.as_slice()) {
        (&Method::GET, ["_proxy", "apps"]) => json_response(StatusCode::OK, list(apps)),
        (&Method::POST, ["_proxy", "apps", name, action @ ("start" | "stop")]) => {
            return match (apps.named(name), *action) {
                (Some(app), "start") => Asked::Start(app),
                (Some(app), _) => Asked::Stop(app),
                (None, _) => Asked::Answer(text(
                    StatusCode::NOT_FOUND,
                    format!("404 Not Found: no app named {name}"),
                )),
            };
        }
        (_, ["_proxy", "apps", ..]) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 Method Not Allowed: GET /_proxy/apps, POST /_proxy/apps/NAME/start or /stop",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("404 Not Found: {path}: the API has /_proxy/apps"),
        ),
    };
    Asked::Answer(answer)
}

/// The answer to a start or a stop: the app as it is now, or why it could
/// not start (503).
pub fn after(app: &App, outcome: Result<(), String>) -> Response<Body> {
    match outcome {
        Ok(()) => json_response(StatusCode::OK, describe(app)),
        Err(why) => {
            let body = json!({ "app": describe(app), "error": why });
            json_response(StatusCode::SERVICE_UNAVAILABLE, body)
        }
    }
}

/// `Authorization: Bearer TOKEN`, the token compared in constant time.
pub fn authorized<B>(request: &Request<B>, token: &str) -> bool {
    // The scheme's name is case-insensitive (RFC 9110 §11.1).
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    // Lengths differ: not equal (and the length is no secret worth keeping).
    !token.is_empty() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

fn list(apps: &Apps) -> Value {
    let registry = apps.registry();
    json!({
        "domain": registry.domain,
        "apps": registry.apps.values().map(|app| describe(app)).collect::<Vec<_>>(),
    })
}

/// One app, as the API shows it.
pub fn describe(app: &App) -> Value {
    let status = app.status();
    let spec = app.spec();
    json!({
        "name": app.name,
        "state": status.state.to_string(),
        "since": rfc3339(status.since_wall),
        "last_request": app.last_request().map(rfc3339),
        "requests": app.requests(),
        "in_flight": app.in_flight(),
        "linked": spec.linked,
        "group": app.group().as_slice(),
        "pid": status.pid,
        "upstream": status.upstream.map(|uri| uri.to_string()),
        "idle_after_s": spec.idle.as_secs_f64(),
        "last_error": status.last_error,
        "awake": status.state == State::Awake,
    })
}

fn rfc3339(time: SystemTime) -> String {
    // Whole seconds: the API is for people and scripts, not benchmarks.
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs()))
        .unwrap_or(time);
    humantime::format_rfc3339(seconds).to_string()
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(full(format!("{body:#}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
