//! Fault injection (not Binance), for tests of exactly-once transfers under faults.
//!
//! The active faults are set with the admin endpoints `POST`/`GET`/`DELETE /sim/faults` (see
//! [`crate::admin`]) and applied by [`inject`], a middleware layered around the Binance routes
//! only: `/sim/*` admin paths never see a fault. A fault kind applies to the next `count`
//! requests it matches, then clears itself; counts are taken under one lock, so concurrent
//! requests consume exactly `count` of them between them.
//!
//! A request meets the kinds in this order:
//!
//! 1. `slow` `{count, delayMs, paths?}`: waits `delayMs`, then goes on normally. (A client
//!    that gives up during the wait closes the connection, and hyper then drops the request
//!    before the handler runs.)
//! 2. `http5xx` `{count, status?, paths?}`: answered at once, without reaching the handler (no
//!    side effect at all, not even in the replay cache), with HTTP 503 `{"code": -1001, "msg":
//!    "Internal error; unable to process your request. Please try again."}` (the default) or
//!    HTTP 500 `{"code": -1000, "msg": "An unknown error occurred while processing the
//!    request."}`.
//! 3. The handler runs.
//! 4. `withdrawTimeoutAfterAccept` `{count, delayMs}`: only for `POST
//!    /sapi/v1/capital/withdraw/apply` answered 2XX, i.e. accepted (the withdrawal is in the
//!    ledger and queued for the chain as usual). The answer is withheld: after `delayMs` the
//!    client gets HTTP 504 `{"code": -1007, "msg": "Timeout waiting for response from backend
//!    server. Send status unknown; execution status unknown."}`, what Binance's gateway answers
//!    when the backend does not reply in time. A client whose own timeout is shorter than
//!    `delayMs` sees a timeout instead. Refused withdrawals (4XX) pass through and do not use
//!    up the fault. Kraken's `POST /0/private/Withdraw` takes the same fault when it executed
//!    (a `result`, no `error`): after `delayMs` the client gets HTTP 504 with no Kraken
//!    envelope, what a gateway in front of Kraken answers when the backend is late.
//!
//! `paths` lists Binance paths exactly as routed (e.g. `/api/v3/ping`); absent, every Binance
//! path matches. `delayMs` is at most [`MAX_DELAY_MS`]; `count` at least 1. A delayed request
//! holds its connection: a graceful shutdown waits for it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::Shared;
use crate::api;
use crate::api_error::ApiError;

/// The longest delay a fault may ask for, in milliseconds (one minute).
pub const MAX_DELAY_MS: u64 = 60_000;

/// The active faults: the body of `POST /sim/faults` and the answer of `GET /sim/faults`.
/// A kind that is `null` (or absent) is not active.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSet {
    /// Accept the next withdrawals, then withhold the answer.
    #[serde(default)]
    pub withdraw_timeout_after_accept: Option<WithdrawTimeout>,
    /// Answer the next requests with a 5XX, doing nothing.
    #[serde(default, rename = "http5xx")]
    pub http_5xx: Option<Http5xx>,
    /// Delay the next requests.
    #[serde(default)]
    pub slow: Option<Slow>,
}

/// `withdrawTimeoutAfterAccept`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WithdrawTimeout {
    /// Accepted withdrawals still to answer with a timeout.
    pub count: Count,
    /// How long the answer is withheld before the 504.
    pub delay_ms: DelayMs,
}

/// `http5xx`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http5xx {
    /// Requests still to answer with a 5XX.
    pub count: Count,
    /// 503 (default) or 500.
    #[serde(default)]
    pub status: ErrorStatus,
    /// The Binance paths it applies to; absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Paths>,
}

/// `slow`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Slow {
    /// Requests still to delay.
    pub count: Count,
    /// The delay before the request is handled.
    pub delay_ms: DelayMs,
    /// The Binance paths it applies to; absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Paths>,
}

/// A number of requests, at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Count(u32);

impl Count {
    /// Uses up one; true when none is left.
    fn consume(&mut self) -> bool {
        self.0 = self.0.saturating_sub(1);
        self.0 == 0
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let count = u32::deserialize(deserializer)?;
        if count == 0 {
            return Err(de::Error::custom(
                "count must be at least 1 (DELETE /sim/faults clears a fault)",
            ));
        }
        Ok(Self(count))
    }
}

/// A delay in milliseconds, at most [`MAX_DELAY_MS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DelayMs(u64);

impl DelayMs {
    fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl<'de> Deserialize<'de> for DelayMs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let delay = u64::deserialize(deserializer)?;
        if delay > MAX_DELAY_MS {
            return Err(de::Error::custom(format!(
                "delayMs must be at most {MAX_DELAY_MS}, got {delay}"
            )));
        }
        Ok(Self(delay))
    }
}

/// The HTTP status of an `http5xx` answer: 503 or 500.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ErrorStatus(u16);

impl Default for ErrorStatus {
    fn default() -> Self {
        Self(503)
    }
}

impl ErrorStatus {
    /// The Binance error answered with this status.
    fn error(self) -> ApiError {
        if self.0 == 500 {
            ApiError::unknown()
        } else {
            ApiError::disconnected()
        }
    }
}

impl<'de> Deserialize<'de> for ErrorStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match u16::deserialize(deserializer)? {
            status @ (500 | 503) => Ok(Self(status)),
            other => Err(de::Error::custom(format!(
                "status must be 503 or 500, got {other}"
            ))),
        }
    }
}

/// A non-empty list of Binance paths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Paths(Vec<FaultPath>);

impl Paths {
    fn contains(&self, path: &str) -> bool {
        self.0.iter().any(|p| p.0 == path)
    }
}

impl<'de> Deserialize<'de> for Paths {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let paths = Vec::<FaultPath>::deserialize(deserializer)?;
        if paths.is_empty() {
            return Err(de::Error::custom(
                "paths is empty; leave it out to match every Binance path",
            ));
        }
        Ok(Self(paths))
    }
}

/// One of [`api::PATHS`] (Binance) or [`crate::kraken::PATHS`] (Kraken's private calls).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FaultPath(String);

impl<'de> Deserialize<'de> for FaultPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let path = String::deserialize(deserializer)?;
        if api::PATHS.contains(&path.as_str()) || crate::kraken::PATHS.contains(&path.as_str()) {
            return Ok(Self(path));
        }
        if path.starts_with("/sim/") || path == "/sim" {
            return Err(de::Error::custom(format!(
                "{path:?} is an admin path; faults never apply to /sim/ paths"
            )));
        }
        Err(de::Error::custom(format!(
            "{path:?} is not a Binance or Kraken path of the simulator; one of {}, {}",
            api::PATHS.join(", "),
            crate::kraken::PATHS.join(", ")
        )))
    }
}

/// Whether an optional path list matches `path` (absent: every Binance path).
fn matches(paths: Option<&Paths>, path: &str) -> bool {
    paths.is_none_or(|p| p.contains(path))
}

/// The active faults, shared by the admin endpoints and [`inject`].
#[derive(Default)]
pub(crate) struct Faults(Mutex<FaultSet>);

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultSet> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the active faults; returns them.
    pub fn replace(&self, set: FaultSet) -> FaultSet {
        let mut active = self.lock();
        *active = set;
        active.clone()
    }

    /// The active faults, with their remaining counts.
    pub fn current(&self) -> FaultSet {
        self.lock().clone()
    }

    /// Uses up one `slow` fault if it matches `path`; the delay.
    fn take_slow(&self, path: &str) -> Option<Duration> {
        let mut active = self.lock();
        let slow = active.slow.as_mut()?;
        if !matches(slow.paths.as_ref(), path) {
            return None;
        }
        let delay = slow.delay_ms.duration();
        if slow.count.consume() {
            active.slow = None;
        }
        Some(delay)
    }

    /// Uses up one `http5xx` fault if it matches `path`; the answer.
    fn take_5xx(&self, path: &str) -> Option<ApiError> {
        let mut active = self.lock();
        let fault = active.http_5xx.as_mut()?;
        if !matches(fault.paths.as_ref(), path) {
            return None;
        }
        let error = fault.status.error();
        if fault.count.consume() {
            active.http_5xx = None;
        }
        Some(error)
    }

    /// Uses up one `withdrawTimeoutAfterAccept` fault; the delay.
    pub(crate) fn take_withdraw_timeout(&self) -> Option<Duration> {
        let mut active = self.lock();
        let fault = active.withdraw_timeout_after_accept.as_mut()?;
        let delay = fault.delay_ms.duration();
        if fault.count.consume() {
            active.withdraw_timeout_after_accept = None;
        }
        Some(delay)
    }
}

/// The fault middleware around the Binance routes (see the module docs for the order).
pub(crate) async fn inject(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if let Some(delay) = shared.faults.take_slow(&path) {
        tracing::info!(%path, delay_ms = delay.as_millis(), "fault: slow answer");
        tokio::time::sleep(delay).await;
    }
    if let Some(error) = shared.faults.take_5xx(&path) {
        tracing::info!(%path, status = %error.status, "fault: 5XX answer without side effect");
        return error.into_response();
    }
    let response = next.run(request).await;
    if path == api::WITHDRAW_APPLY
        && response.status().is_success()
        && let Some(delay) = shared.faults.take_withdraw_timeout()
    {
        tracing::info!(
            delay_ms = delay.as_millis(),
            "fault: withdrawal accepted, answer withheld, then 504"
        );
        drop(response);
        tokio::time::sleep(delay).await;
        return ApiError::backend_timeout().into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(text: &str) -> Result<FaultSet, String> {
        axum::Json::<FaultSet>::from_bytes(text.as_bytes())
            .map(|j| j.0)
            .map_err(|e| e.body_text())
    }

    #[test]
    fn a_full_body_round_trips() {
        let text = r#"{"withdrawTimeoutAfterAccept": {"count": 1, "delayMs": 3000},
            "http5xx": {"count": 2, "paths": ["/sapi/v1/capital/withdraw/apply"]},
            "slow": {"delayMs": 800, "count": 5}}"#;
        let set = parse(text).unwrap();
        assert_eq!(set.http_5xx.as_ref().unwrap().status, ErrorStatus(503));
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json["http5xx"]["status"], 503);
        assert!(json["slow"].get("paths").is_none());
        assert_eq!(parse(&json.to_string()).unwrap(), set);
        assert_eq!(
            serde_json::to_value(FaultSet::default()).unwrap(),
            serde_json::json!({"withdrawTimeoutAfterAccept": null, "http5xx": null, "slow": null})
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"slow": {"count": 0, "delayMs": 1}}"#, "slow.count"),
            (r#"{"slow": {"count": 1}}"#, "missing field `delayMs`"),
            (
                r#"{"http5xx": {"count": 1, "paths": ["/api/v3/ping", "/sim/credit"]}}"#,
                "http5xx.paths[1]",
            ),
            (
                r#"{"http5xx": {"count": 1, "status": 404}}"#,
                "http5xx.status",
            ),
            (r#"{"http5xx": {"count": 1, "paths": []}}"#, "http5xx.paths"),
            (
                r#"{"withdrawTimeoutAfterAccept": {"count": 1, "delayMs": 60001}}"#,
                "withdrawTimeoutAfterAccept.delayMs",
            ),
            (
                r#"{"withdrawTimeoutAfterAccept": {"count": 1, "delayMs": 1, "paths": []}}"#,
                "unknown field `paths`",
            ),
            (r#"{"http_5xx": {"count": 1}}"#, "unknown field `http_5xx`"),
        ];
        for (body, expected) in cases {
            let error = parse(body).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn counts_run_out() {
        let faults = Faults::default();
        faults.replace(
            parse(r#"{"slow": {"count": 2, "delayMs": 5, "paths": ["/api/v3/time"]}, "http5xx": {"count": 1, "status": 500}}"#)
                .unwrap(),
        );
        assert_eq!(faults.take_slow("/api/v3/ping"), None);
        assert_eq!(
            faults.take_slow("/api/v3/time"),
            Some(Duration::from_millis(5))
        );
        assert_eq!(faults.current().slow.unwrap().count, Count(1));
        assert_eq!(
            faults.take_slow("/api/v3/time"),
            Some(Duration::from_millis(5))
        );
        assert_eq!(faults.take_slow("/api/v3/time"), None);
        assert!(faults.current().slow.is_none());
        assert_eq!(faults.take_5xx("/api/v3/ping"), Some(ApiError::unknown()));
        assert_eq!(faults.take_5xx("/api/v3/ping"), None);
        assert_eq!(faults.take_withdraw_timeout(), None);
        assert_eq!(faults.current(), FaultSet::default());
    }
}
