//! The root context's side of remote key sets: start the fetches the
//! [`KeyStore`] asks for, and hand it the answers.

use std::time::Duration;

use crate::host::{Callout, CalloutResponse, Host, LogLevel};
use crate::keys::{FetchError, KeyStore};

/// Key set fetches in flight, by callout token.
#[derive(Debug, Default)]
pub struct KeyFetches {
    /// (callout token, provider); at most one per provider, so a list.
    in_flight: Vec<(u32, usize)>,
}

impl KeyFetches {
    /// Picks up key sets other workers fetched and starts due fetches.
    /// Returns the providers whose waiting requests should be decided again:
    /// keys changed, or a fetch failed and is being backed off.
    pub fn poll(&mut self, keys: &mut KeyStore, host: &dyn Host, user_agent: &str) -> Vec<usize> {
        let now = host.now_unix_secs();
        let mut news = Vec::new();
        for provider in 0..keys.len() {
            if !keys.is_remote(provider) {
                continue;
            }
            if keys.sync(provider, host) {
                news.push(provider);
            }
            if let Some(request) = keys.start_fetch(provider, host) {
                let callout = Callout {
                    cluster: &request.cluster,
                    method: "GET",
                    path: &request.path,
                    authority: &request.authority,
                    headers: vec![("accept", "application/json"), ("user-agent", user_agent)],
                    body: None,
                    timeout: Duration::from_millis(request.timeout_ms),
                };
                match host.dispatch(&callout) {
                    Ok(token) => {
                        self.in_flight.push((token, provider));
                    }
                    Err(_) => {
                        host.log(
                            LogLevel::Warn,
                            &format!("jwks cluster={} dispatch failed", request.cluster),
                        );
                        keys.finish_fetch(provider, host, Err(FetchError::Dispatch));
                    }
                }
            }
            // A fetch failed (here or in another worker) after requests began
            // to wait: there is nothing more to wait for.
            if keys.backing_off(provider, host, now) && !news.contains(&provider) {
                news.push(provider);
            }
        }
        news
    }

    /// Whether `token` is a key set fetch.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.iter().any(|(id, _)| *id == token)
    }

    /// Takes the answer to fetch `token`; returns its provider.
    pub fn complete(
        &mut self,
        token: u32,
        response: &CalloutResponse,
        keys: &mut KeyStore,
        host: &dyn Host,
    ) -> Option<usize> {
        let at = self.in_flight.iter().position(|(id, _)| *id == token)?;
        let (_, provider) = self.in_flight.swap_remove(at);
        let result = match response.status {
            None => Err(FetchError::NoResponse),
            Some(200) if response.body_too_large => Err(FetchError::TooLarge),
            Some(200) => Ok(response.body.as_slice()),
            Some(status) => Err(FetchError::Status(status)),
        };
        keys.finish_fetch(provider, host, result.map_err(|e| e.clone()));
        Some(provider)
    }

    /// Whether any fetch is in flight.
    pub fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }
}
